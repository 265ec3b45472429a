"""The user documentation against the code: the README's synopsis, every ``dr`` command line and YAML example.

Documents drift when commands gain options or configs gain checks. These
tests read the Markdown files and YAML examples a user reads and hold them to
what ``dr`` accepts: the README's Usage block lists exactly the options each
command has; every ``dr …`` line of a code block, and every ``dr`` command of
a runbook's procedure, parses with dr's own click commands (nothing runs);
every YAML example — and every ``kind: Config`` or ``kind: Runbook`` block in
the Markdown — validates; the README's ``dr config validate`` example shows
what dr prints.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from dr.cli.global_options import GlobalOption
from dr.cli.main import cli
from dr.cli.params import attach_optional_values
from dr.config import Config as ConfigModel
from dr.config import load_config_file, load_yaml, validate
from dr.errors import InvalidInput
from dr.runbook.model import load_runbook, parse_runbook
from tests.helpers import run_dr
from tests.test_config import BAD

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted(
    {README, *ROOT.glob("docs/**/*.md"), *ROOT.glob("runbooks/**/*.md"), *ROOT.glob("examples/**/*.md"),
     *ROOT.glob("deploy/**/*.md")}
)  # fmt: skip
CONFIG_EXAMPLES = [ROOT / "examples" / "dr.yaml", ROOT / "deploy" / "dr.yaml"]
RUNBOOK_EXAMPLES = sorted([*ROOT.glob("runbooks/*.yaml"), *ROOT.glob("deploy/runbooks/*.yaml")])
# Options every command has, or that are the same everywhere: not repeated in the synopsis.
COMMON_OPTIONS = {"--output", "--help"}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def code_blocks(path: Path) -> list[tuple[str, str, str]]:
    """(info string, the heading it is under, text) of each fenced or indented code block."""
    blocks: list[tuple[str, str, str]] = []
    lines = path.read_text().splitlines()
    heading, i = "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        fence = re.match(r"^(```+)(.*)$", line)
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group(1)))
            blocks.append((fence.group(2).strip(), heading, "\n".join(lines[i + 1 : end])))
            i = end + 1
            continue
        if (
            line.startswith("    ")
            and (i == 0 or not lines[i - 1].strip())
            and not line.lstrip().startswith("-")
        ):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            blocks.append(("", heading, "\n".join(ln[4:] for ln in lines[i:end])))
            i = end
            continue
        i += 1
    return blocks


def parse_dr(args: list[str]) -> click.Context:
    """Parse ``dr ARGS`` down to the command that would run, as ``dr.cli.main`` does; run nothing."""
    ctx = cli.make_context("dr", attach_optional_values(list(args)))
    cmd: click.Command = cli
    while isinstance(cmd, click.Group):
        name, sub, rest = cmd.resolve_command(ctx, [*getattr(ctx, "_protected_args", []), *ctx.args])
        assert name is not None and sub is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return ctx


def command(path: list[str]) -> click.Command:
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group), f"dr {' '.join(path)}: {cmd.name} has no subcommands"
        sub = cmd.get_command(click.Context(cmd), name)
        assert sub is not None, f"dr {' '.join(path)}: no command {name!r}"
        cmd = sub
    return cmd


def long_options(cmd: click.Command) -> set[str]:
    """The command's own long options: the global options it also takes after its name
    (``GlobalOption``) are documented once, as the global options."""
    return {
        o
        for p in cmd.params
        if isinstance(p, click.Option) and not isinstance(p, GlobalOption)
        for o in p.opts
        if o.startswith("--")
    }


# --------------------------------------------------------------------------- the README's synopsis


def synopsis() -> list[tuple[list[str], str]]:
    """(command path, its synopsis text) for each command of the README's Usage block."""
    block = next(text for info, heading, text in code_blocks(README) if heading == "Usage")
    joined: list[str] = []
    for line in block.splitlines():
        if line.startswith(" ") and joined:
            joined[-1] += " " + line.strip()
        else:
            joined.append(line)
    out: list[tuple[list[str], str]] = []
    for line in joined:
        text = re.split(r"\s{2,}|\s#", line)[0]  # drop the trailing explanation
        words = text.split()
        assert words[0] == "dr", line
        parts = text.split(" | ")
        head = parts[0].split()
        top = command([head[1]])
        if isinstance(top, click.Group):
            out.append(([head[1], head[2]], parts[0]))
            out += [([head[1], p.split()[0]], p) for p in parts[1:]]
        else:
            assert len(parts) == 1, line
            out.append(([head[1]], parts[0]))
    return out


def test_the_usage_block_lists_every_command() -> None:
    listed = {" ".join(path) for path, _ in synopsis()}
    every = set()
    for name in cli.list_commands(click.Context(cli)):
        cmd = command([name])
        if isinstance(cmd, click.Group):
            every |= {f"{name} {sub}" for sub in cmd.list_commands(click.Context(cmd))}
        else:
            every.add(name)
    assert listed == every


@pytest.mark.parametrize("path, text", [pytest.param(p, t, id=" ".join(p)) for p, t in synopsis()])
def test_the_usage_block_names_exactly_the_options_of_each_command(path: list[str], text: str) -> None:
    documented = set(re.findall(r"(?<![\w-])--[a-z][-a-z]*", text))
    actual = long_options(command(path)) - COMMON_OPTIONS
    assert documented - actual == set(), f"README documents options dr {' '.join(path)} does not have"
    assert actual - documented == set(), f"README's Usage omits options of dr {' '.join(path)}"


def test_the_global_options_are_documented() -> None:
    text = README.read_text()
    for opt in long_options(cli) - COMMON_OPTIONS:
        assert re.search(rf"(?<![\w-]){opt}\b", text), opt


# --------------------------------------------------------------------------- dr command lines


def documented_command_lines() -> list[tuple[str, list[str]]]:
    """(where, argv after ``dr``) for each ``dr`` line of a code block (the Usage synopsis aside)."""
    found: list[tuple[str, list[str]]] = []
    for doc in DOCS:
        for info, heading, text in code_blocks(doc):
            if doc == README and heading == "Usage":
                continue
            if info and info not in ("sh", "bash", "console", "shell"):
                continue
            for line in text.splitlines():
                line = line.strip().removeprefix("$ ")
                if not line.startswith("dr "):
                    continue
                words = shlex.split(line, comments=True)
                if "|" in words:  # dr … | kubectl apply -f -
                    words = words[: words.index("|")]
                found.append((f"{rel(doc)}: {shlex.join(words)}", words[1:]))
    for rb in RUNBOOK_EXAMPLES:
        for step in load_runbook(rb).spec.procedure:
            if step.dr:
                found.append((f"{rel(rb)}: {step.title}", list(step.dr)))
    return found


COMMAND_LINES = documented_command_lines()


def test_the_documents_have_command_lines() -> None:
    where = {w.split(":")[0] for w, _ in COMMAND_LINES}
    assert {"README.md", "runbooks/README.md", "runbooks/webapp-postgres.yaml"} <= where


@pytest.mark.parametrize("args", [a for _, a in COMMAND_LINES], ids=[w for w, _ in COMMAND_LINES])
def test_every_documented_command_line_parses(args: list[str]) -> None:
    try:
        parse_dr(args)
    except click.UsageError as e:
        pytest.fail(f"dr {shlex.join(args)}: {e.format_message()}")


# --------------------------------------------------------------------------- YAML examples


def yaml_blocks(docs: list[Path] = DOCS) -> list[tuple[str, str]]:
    return [
        (f"{rel(doc) if ROOT in doc.parents else doc} ({heading})", text)
        for doc in docs
        for info, heading, text in code_blocks(doc)
        if info in ("yaml", "yml") or re.search(r"^kind: (Config|Runbook)$", text, re.M)
    ]


def validate_yaml_blocks(docs: list[Path] = DOCS) -> list[str]:
    """Validate each Config and Runbook of the YAML blocks of ``docs``; the kinds validated."""
    validated = []
    for where, text in yaml_blocks(docs):
        for doc in yaml.safe_load_all(text):
            kind = doc.get("kind") if isinstance(doc, dict) else None
            if kind == "Config":
                validate(ConfigModel, *load_yaml(yaml.safe_dump(doc), where))
            elif kind == "Runbook":
                parse_runbook(yaml.safe_dump(doc), where)
            else:
                continue
            validated.append(kind)
    return validated


@pytest.mark.parametrize("path", CONFIG_EXAMPLES, ids=rel)
def test_config_examples_validate(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_config_file(path)
    r = run_dr(capsys, "config", "validate", str(path))
    assert r.code == 0, r.err


@pytest.mark.parametrize("path", RUNBOOK_EXAMPLES, ids=rel)
def test_runbook_examples_validate(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = run_dr(capsys, "runbook", "validate", str(path))
    assert r.code == 0, r.err


def test_yaml_blocks_in_the_documents_validate() -> None:
    # No document holds such a block today, so this guards the ones added later.
    validate_yaml_blocks()


def test_yaml_blocks_are_found_and_validated(tmp_path: Path) -> None:
    """The extraction the test above relies on: a vacuous pass there must mean no blocks, not no reading."""
    runbook = RUNBOOK_EXAMPLES[0].read_text()
    doc = tmp_path / "guide.md"
    doc.write_text(
        "# Config\n\n```yaml\n" + CONFIG_EXAMPLES[0].read_text() + "```\n\n"
        "## Runbook\n\nIndented:\n\n" + "".join(f"    {ln}\n" for ln in runbook.splitlines())
        + "\n```yaml\nnot: dr\n```\n"
    )  # fmt: skip
    assert validate_yaml_blocks([doc]) == ["Config", "Runbook"]
    bad = tmp_path / "bad.md"
    bad.write_text("```yaml\nkind: Config\n" + BAD + "```\n")
    with pytest.raises(InvalidInput, match=f"^{re.escape(str(bad))} \\(\\): 3 problems"):
        validate_yaml_blocks([bad])


def test_the_readme_config_validate_example_is_what_dr_prints(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    block = next(
        text for _, _, text in code_blocks(README) if text.startswith("$ dr config validate bad.yaml")
    )
    Path("bad.yaml").write_text(BAD)
    r = run_dr(capsys, "config", "validate", "bad.yaml")
    assert r.code == 2
    assert r.err.splitlines() == block.splitlines()[1:]
