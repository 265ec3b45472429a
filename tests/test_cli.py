"""The CLI contract: every command exists with its options, exit codes, output formats."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from dr import __version__
from dr.cli.main import SUBCOMMANDS, cli
from tests.helpers import run_dr, run_dr_process

ALL_COMMANDS = [
    ["config", "validate"], ["repo", "init"], ["repo", "info"], ["repo", "check"], ["key", "list"],
    ["key", "add"], ["key", "remove"], ["key", "rotate"], ["backup"], ["backups", "list"],
    ["backups", "describe"], ["restore"], ["verify"], ["forget"], ["prune"], ["drill", "run"], ["drill", "gc"],
    ["report", "drills"], ["runbook", "validate"], ["runbook", "render"], ["runbook", "verify"], ["deploy", "render"], ["status"],
    ["mover", "backup"], ["mover", "restore"],
]  # fmt: skip


def test_top_level_help_lists_all_commands(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_dr(capsys, "--help")
    assert r.code == 0
    for top in {c[0] for c in ALL_COMMANDS}:
        assert f"  {top} " in r.out, top


def test_help_lists_each_command_with_its_own_summary() -> None:
    # `dr --help` lists the commands from the summaries in SUBCOMMANDS without
    # importing them: each must be the first paragraph of its command's help, and
    # the listing must read exactly as click makes it from the commands themselves.
    ctx = click.Context(cli)
    real = {}
    for name, (_, summary) in SUBCOMMANDS.items():
        cmd = cli.get_command(ctx, name)
        assert cmd is not None and not cmd.short_help and cmd.help, name
        assert summary == " ".join(inspect.cleandoc(cmd.help).split("\n\n")[0].split()), name
        real[name] = cmd
    for width in (40, 60, 80, 100):
        ours, clicks = click.HelpFormatter(width=width), click.HelpFormatter(width=width)
        cli.format_commands(ctx, ours)
        click.Group(commands=real).format_commands(ctx, clicks)
        assert ours.getvalue() == clicks.getvalue(), width


@pytest.mark.parametrize("cmd", ALL_COMMANDS, ids=" ".join)
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], cmd: list[str]) -> None:
    r = run_dr(capsys, *cmd, "--help")
    assert r.code == 0, r.err
    assert "Usage: dr " + " ".join(cmd) in r.out


@pytest.mark.parametrize(
    ("cmd", "options"),
    [
        (["backup"], ["--namespace", "--selector", "--include-resources", "--exclude-resources",
                      "--include-cluster-resources", "--name", "--tag", "-o, --output"]),
        (["restore"], ["--namespace-mapping", "--include-resources", "--selector", "--existing",
                       "--storage-class-mapping", "--dry-run", "--no-data", "-o, --output"]),
        (["drill", "run"], ["--backup", "--keep", "--report-dir"]),
        (["forget"], ["--keep-last", "--keep-daily", "--keep-weekly", "--keep-monthly", "--prune", "--dry-run"]),
        (["verify"], ["--all", "--read-data"]),
        (["repo", "check"], ["--read-data"]),
        (["repo", "init"], ["--key"]),
        (["report", "drills"], ["--month", "--format", "--out"]),
        (["mover", "backup"], ["--parent", "--tag", "-o, --output"]),
        (["mover", "restore"], ["--path"]),
        (["deploy", "render"], ["--config"]),
        (["backups", "list"], ["--namespace"]),
    ],
)  # fmt: skip
def test_options_documented(capsys: pytest.CaptureFixture[str], cmd: list[str], options: list[str]) -> None:
    r = run_dr(capsys, *cmd, "--help")
    for opt in options:
        assert opt in r.out, f"{' '.join(cmd)}: {opt} missing"


def test_global_options(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_dr(capsys, "--help")
    for opt in ("--config", "--repo", "--kubeconfig", "--context", "-v, --verbose", "--quiet", "--version"):
        assert opt in r.out


def test_global_options_name_the_environment_variables_they_read(capsys: pytest.CaptureFixture[str]) -> None:
    # --repo reads $DR_REPO as --config reads $DR_CONFIG, but only --config's help said so: a
    # DR_REPO left in the environment overrode the config unannounced.
    from dr.cli.global_options import GLOBAL_OPTIONS

    text = " ".join(run_dr(capsys, "--help").out.split())
    envvars = [kwargs["envvar"] for _, kwargs in GLOBAL_OPTIONS if "envvar" in kwargs]
    assert envvars == ["DR_CONFIG", "DR_REPO"]
    for var in envvars:
        assert f"${var}" in text, var


def test_version() -> None:
    r = run_dr_process("--version")
    assert r.code == 0
    assert r.out.strip() == f"dr, version {__version__}"


def test_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_dr(capsys, "restore", "latest", "--existing", "maybe").code == 2
    assert run_dr(capsys, "restore", "latest", "--namespace-mapping", "novalue").code == 2
    assert run_dr(capsys, "no-such-command").code == 2
    r = run_dr(capsys, "verify", "--read-data=150")
    assert r.code == 2 and "(0, 100]" in r.err


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["backup", "--tag", "bad"],
            "error: Invalid value for '--tag': 'bad' is not K=V (see 'dr backup --help')",
        ),
        # Tags: the key a Kubernetes label key (dr.tags), the value one line; the tag named.
        (
            ["mover", "backup", ".", "--tag", "bad key!=v"],
            "error: Invalid value for '--tag': 'bad key!=v': key 'bad key!' is not a label key: "
            "[PREFIX/]NAME, NAME up to 63 of A-Z a-z 0-9 - _ . alphanumeric at both ends "
            "(see 'dr mover backup --help')",
        ),
        (
            ["mover", "backup", ".", "--tag", "=v"],
            "error: Invalid value for '--tag': '=v': empty key (see 'dr mover backup --help')",
        ),
        (
            ["mover", "backup", ".", "--tag", "Example.com/app=v"],
            "error: Invalid value for '--tag': 'Example.com/app=v': key 'Example.com/app' is not a label key: "
            "[PREFIX/]NAME, NAME up to 63 of A-Z a-z 0-9 - _ . alphanumeric at both ends, PREFIX a DNS name "
            "(see 'dr mover backup --help')",
        ),
        (
            ["mover", "backup", ".", "--tag", "note=a\nb"],
            "error: Invalid value for '--tag': 'note=a\\x0ab': key 'note': a control character in the value "
            "'a\\x0ab' (see 'dr mover backup --help')",
        ),
        (
            ["backup", "--tag", f"{'x' * 64}=v"],
            f"error: Invalid value for '--tag': '{'x' * 64}=v': key '{'x' * 64}' is not a label key: "
            "[PREFIX/]NAME, NAME up to 63 of A-Z a-z 0-9 - _ . alphanumeric at both ends (see 'dr backup --help')",
        ),
        (["restore"], "error: Missing argument 'ID|latest'. (see 'dr restore --help')"),
        (
            # (not "--bogus": click suggests the nearest option, and that is "--verbose")
            ["drill", "run", "rb.yaml", "--frobnicate"],
            "error: No such option '--frobnicate'. (see 'dr drill run --help')",
        ),
        (["no-such-command"], "error: No such command 'no-such-command'. (see 'dr --help')"),
        # Not "No such option '-5'": click took an attached value that starts with '-' for an option.
        (
            ["verify", "--read-data=-5"],
            "error: Invalid value for '--read-data': '-5' must be in (0, 100] (see 'dr verify --help')",
        ),
        (
            ["repo", "check", "--read-data=-x"],
            "error: Invalid value for '--read-data': '-x' is not a percentage (see 'dr repo check --help')",
        ),
    ],
)
def test_usage_error_is_one_error_line(
    capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    # It was click's block: "Usage: …", "Try 'dr … --help' for help.", a blank line, "Error: …".
    r = run_dr(capsys, *args)
    assert (r.code, r.out, r.err) == (2, "", line + "\n")


def test_a_group_alone_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_dr(capsys, "drill")
    assert r.code == 2 and "Usage: dr drill [OPTIONS] COMMAND" in r.out + r.err and "gc" in r.out + r.err


def _modules_loaded(tmp_path: Path, *args: str) -> set[str]:
    """The modules a real ``dr ARGS`` process has imported when it exits."""
    probe = (
        "import atexit, sys\n"
        f"atexit.register(lambda: open({str(tmp_path / 'mods')!r}, 'w').write('\\n'.join(sys.modules)))\n"
        "from dr.cli.main import main\n"
        f"main({list(args)!r})\n"
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("DR_CONFIG", None)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr  # the command did its work, not stopped early
    return set((tmp_path / "mods").read_text().split())


def test_start_up_imports_only_what_the_command_uses(tmp_path: Path) -> None:
    # --version and --help answer from click alone: no config models, no tables.
    heavy = {"pydantic", "yaml", "rich", "dr.config", "boto3", "kubernetes", "cryptography"}
    assert not _modules_loaded(tmp_path, "--version") & heavy
    # The list of commands in --help comes from SUBCOMMANDS' summaries: no command's module.
    loaded = _modules_loaded(tmp_path, "--help")
    assert not loaded & heavy
    assert not {f"dr.cli.{module}" for module, _ in SUBCOMMANDS.values()} & loaded
    # A mover command printing JSON off a terminal (a Job) needs the config and the
    # repository, but no progress bars or tables, and no Kubernetes client.
    repo = f"file://{tmp_path / 'repo'}"
    assert run_dr_process("--repo", repo, "--quiet", "repo", "init", env={
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path / "data")}).code == 0  # fmt: skip
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x")
    loaded = _modules_loaded(
        tmp_path, "--repo", repo, "--quiet", "mover", "backup", str(tmp_path / "src"), "-o", "json"
    )
    assert {"dr.config", "cryptography", "pyfastcdc", "dr.repo.archiver"} <= loaded
    # The configuration is plain dataclasses (no pydantic); with no file, no YAML parser.
    assert not loaded & {"rich", "kubernetes", "boto3", "dr.repo.restorer", "pydantic", "yaml"}
    # A restore Job loads neither the chunker nor the archiver.
    loaded = _modules_loaded(
        tmp_path, "--repo", repo, "--quiet", "mover", "restore", "latest", str(tmp_path / "dst")
    )
    assert {"dr.config", "cryptography", "dr.repo.restorer"} <= loaded
    assert not loaded & {"rich", "kubernetes", "boto3", "pyfastcdc", "dr.repo.archiver", "pydantic", "yaml"}
    # In a cluster the Job reads the mounted dr.yaml: still no pydantic.
    cfg = tmp_path / "dr.yaml"
    cfg.write_text(f"repositories:\n  - name: r\n    url: {repo}\n")
    loaded = _modules_loaded(
        tmp_path, "--config", str(cfg), "--quiet", "mover", "restore", "latest", str(tmp_path / "dst2")
    )
    assert {"yaml", "dr.repo.restorer"} <= loaded and "pydantic" not in loaded


def test_optional_option_values_are_only_ever_attached() -> None:
    from dr.cli.params import attach_optional_values

    assert attach_optional_values(["verify", "--read-data", "4f40"]) == ["verify", "--read-data=100", "4f40"]
    assert attach_optional_values(["verify", "--read-data=5%"]) == ["verify", "--read-data=5%"]
    assert attach_optional_values(["x", "--", "--read-data"]) == ["x", "--", "--read-data"]


def test_python_m_dr_is_the_dr_command(tmp_path: Path) -> None:
    # For an environment without the console script on PATH (a venv not activated).
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "dr", "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, f"dr, version {__version__}\n"), done.stderr
    done = subprocess.run([sys.executable, "-m", "dr", "config", "validate", str(tmp_path / "none.yaml")],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (2, f"error: {tmp_path / 'none.yaml'}: no such file\n")
