"""The Dockerfile, read as text (no container engine here): the image it builds runs dr as a
numeric non-root user, on a runtime image without compilers, shell or package manager."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

import pytest

from tests.deploy_support import PROJECT

DOCKERFILE = PROJECT / "Dockerfile"
TOOLCHAINS = re.compile(r"\b(gcc|g\+\+|cc|clang|build-essential|make|python3-dev|libc6-dev|rustc|cargo)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with line continuations joined and comments dropped."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1].rstrip() + " "
            continue
        logical.append(buf + line)
        buf = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert op == "ARG", f"only ARG may come before FROM, not {op}"
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append((op, rest.strip()))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


def test_multi_stage(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    assert builder.name == "builder"
    assert final.name is None or final.name != "builder"
    # The final stage copies the built venv from the builder, nothing else.
    assert final.all("COPY") == ["--from=builder /opt/venv /opt/venv"]


def test_builder_builds_a_wheel_into_a_venv(stages: list[Stage]) -> None:
    run = " ".join(stages[0].all("RUN"))
    assert "build-essential" in run and "python3 -m venv /opt/venv" in run
    assert "build --wheel" in run and "pip install /wheels/dr-" in run


def test_python_versions_match(stages: list[Stage]) -> None:
    """Both stages are Debian 12 with Debian's python3.11 (distroless python3-debian12 is built from it)."""
    builder, final = stages[0], stages[-1]
    assert builder.base.startswith("debian:12")
    assert final.base.startswith("gcr.io/distroless/python3-debian12")
    assert "version_info[:2] == (3, 11)" in " ".join(builder.all("RUN"))


def test_final_user_is_numeric_non_root(stages: list[Stage]) -> None:
    users = stages[-1].all("USER")
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) == 65532
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_entrypoint_runs_dr(stages: list[Stage]) -> None:
    (entrypoint,) = stages[-1].all("ENTRYPOINT")
    argv = json.loads(entrypoint)  # exec form: no shell involved (there is none)
    assert argv == ["/opt/venv/bin/dr"] or argv[-2:] == ["-m", "dr.cli.main"]


def test_final_stage_has_no_toolchain(stages: list[Stage]) -> None:
    final = stages[-1]
    base = final.base.lower()
    assert not any(word in base for word in ("-dev", ":dev", "builder", "debug", "sdk"))
    assert base.endswith(":nonroot"), "the distroless nonroot variant"
    # No RUN at all: distroless has no shell to run one, and nothing is installed there.
    assert final.all("RUN") == []
    for op, arg in final.instructions:
        assert not TOOLCHAINS.search(arg), f"{op} {arg}"
        assert "apt-get" not in arg and "apk " not in arg


def test_read_only_root_file_system_friendly(stages: list[Stage]) -> None:
    env = " ".join(stages[-1].all("ENV"))
    for var in ("HOME=/tmp", "TMPDIR=/tmp", "XDG_CACHE_HOME=/tmp/", "XDG_CONFIG_HOME=/tmp/", "XDG_DATA_HOME=/tmp/",
                "PYTHONDONTWRITEBYTECODE=1"):  # fmt: skip
        assert var in env, var


def test_oci_labels(stages: list[Stage]) -> None:
    labels = " ".join(stages[-1].all("LABEL"))
    found = dict(
        (k, v)
        for k, v in (item.split("=", 1) for item in shlex.split(labels))
        if k.startswith("org.opencontainers")
    )
    for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
        assert f"org.opencontainers.image.{key}" in found, key
    assert found["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_build_context_is_an_allow_list() -> None:
    lines = [ln.strip() for ln in (PROJECT / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*"
    assert {"!dr/", "!pyproject.toml", "!README.md"} <= set(rules)
    assert not [r for r in rules if r.startswith("!") and r not in ("!dr/", "!pyproject.toml", "!README.md")]


def test_parser_sees_continuations_and_stages() -> None:
    args, stages = parse("ARG B=debian:12\nFROM ${B} AS b\nRUN a \\\n  # note\n  && b\nFROM x\nUSER 1\n")
    assert args == {"B": "debian:12"}
    assert [s.base for s in stages] == ["debian:12", "x"]
    assert stages[0].all("RUN") == ["a && b"]
    assert stages[1].all("USER") == ["1"]
