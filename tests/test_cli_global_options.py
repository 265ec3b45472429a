"""dr's global options after the command (``dr backup -n shop -v``) mean what they mean before it.

kubectl and velero take their global flags anywhere on the command line;
``dr`` took them only before the command (``dr backup … -v`` was "No such
option"). ``dr.cli.global_options`` gives every command a copy of each. Here:
each command's help lists them, no command's own option clashes with one,
a few commands give the same result with the options on either side (a file://
repository, and the test cluster for backup and restore), the later of two
wins, ``-v`` counts add up, usage errors stay one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml

from dr.cli.global_options import GlobalOption
from dr.cli.main import cli
from dr.kube.client import KubeClient
from tests import servers
from tests.cli_support import two_repository_config
from tests.helpers import run_dr
from tests.kube_helpers import configmap, create, delete_namespace, make_namespace
from tests.test_cli import ALL_COMMANDS

Capsys = pytest.CaptureFixture[str]
GLOBAL = ["--config", "--repo", "--kubeconfig", "--context", "--verbose", "--quiet"]
# A command's own option with a global's name, meaning the same for that command: it keeps its own.
OWN = {
    ("deploy", "render"): {"--config"},
    ("mover", "backup"): {"--repo"},
    ("mover", "restore"): {"--repo"},
    ("mover", "ls"): {"--repo"},
}


def command(path: list[str]) -> click.Command:
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group)
        sub = cmd.get_command(click.Context(cmd), name)
        assert sub is not None, path
        cmd = sub
    return cmd


@pytest.mark.parametrize("path", [*ALL_COMMANDS, ["mover", "ls"], ["repo"], ["backups"]], ids=" ".join)
def test_every_command_takes_the_global_options_and_lists_them_in_its_help(
    capsys: Capsys, path: list[str]
) -> None:
    cmd = command(path)
    own = {o for p in cmd.params if not isinstance(p, GlobalOption) for o in (*p.opts, *p.secondary_opts)}
    copies = {o for p in cmd.params if isinstance(p, GlobalOption) for o in p.opts}
    # No clash: a copy is added only where the command has no option of that name (nor -v).
    assert own & copies == set()
    assert own & set(GLOBAL) == OWN.get(tuple(path), set())
    assert copies == (set(GLOBAL) | {"-v"}) - own
    r = run_dr(capsys, *path, "--help")
    assert r.code == 0, r.err
    options, _, shared = r.out.partition("\nGlobal options:\n")

    def lists(text: str, opt: str) -> bool:
        return re.search(rf"(?<![\w-]){opt}(?![\w-])", text) is not None

    for opt in copies:
        assert lists(shared, opt) and not lists(options.partition("\nOptions:\n")[2], opt), opt
    for opt in own & set(GLOBAL):
        assert lists(options, opt)  # the command's own, with its own help


def test_repository_options_after_the_command(
    capsys: Capsys, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = two_repository_config(isolated_home, capsys)
    other = f"file://{isolated_home}/other"

    def repo_id(*args: str) -> str:
        r = run_dr(capsys, *args)
        assert r.code == 0, r.err
        return str(r.json()["id"])

    main_id = repo_id("--config", str(config), "repo", "info", "-o", "json")
    assert repo_id("repo", "info", "-o", "json", "--config", str(config)) == main_id
    other_id = repo_id("--config", str(config), "--repo", other, "repo", "info", "-o", "json")
    assert other_id != main_id
    assert repo_id("repo", "info", "--config", str(config), "--repo", other, "-o", "json") == other_id
    # Given on both sides, the later one wins.
    assert repo_id("--config", str(config), "--repo", other, "repo", "info", "--repo", f"file://{isolated_home}/main",
                   "-o", "json") == main_id  # fmt: skip
    # $DR_CONFIG is the root option's default; an option given after the command still wins over it.
    monkeypatch.setenv("DR_CONFIG", str(isolated_home / "nosuch.yaml"))
    assert repo_id("repo", "info", "-o", "json", "--config", str(config)) == main_id
    monkeypatch.delenv("DR_CONFIG")

    before = run_dr(capsys, "--config", str(config), "backups", "list", "-o", "json")
    after = run_dr(capsys, "backups", "list", "-o", "json", "--config", str(config))
    assert (after.code, after.out) == (before.code, before.out) == (0, "[]\n")

    # --quiet after the command: the log line of a new repository is left out, as before it.
    loud = run_dr(capsys, "--config", str(config), "--repo", f"file://{isolated_home}/r1", "repo", "init")
    assert loud.code == 0 and "created repository" in loud.err
    quiet = run_dr(
        capsys, "repo", "init", "--config", str(config), "--repo", f"file://{isolated_home}/r2", "--quiet"
    )
    assert (quiet.code, quiet.err) == (0, "")
    assert run_dr(capsys, "--quiet", "repo", "init", "--config", str(config), "--repo",
                  f"file://{isolated_home}/r3").err == ""  # fmt: skip


def test_verbose_after_the_command_shows_the_traceback_and_its_counts_add_up(
    capsys: Capsys, isolated_home: Path
) -> None:
    config = two_repository_config(isolated_home, capsys)
    plain = run_dr(capsys, "--config", str(config), "backups", "describe", "nosuch")
    assert (plain.code, plain.err) == (2, "error: no backup with id 'nosuch'\n")
    for args in (["-v", "backups", "describe", "nosuch"], ["backups", "describe", "nosuch", "-v"]):
        r = run_dr(capsys, "--config", str(config), *args)
        assert r.code == 2 and r.err.startswith("Traceback") and r.err.endswith(plain.err), args
    # -vv shows debug logs; -v once before and once after the command is -vv.
    debug = "unlocked with key slot"
    assert debug not in run_dr(capsys, "--config", str(config), "-v", "repo", "info").err
    assert debug in run_dr(capsys, "--config", str(config), "-vv", "repo", "info").err
    assert debug in run_dr(capsys, "--config", str(config), "-v", "repo", "info", "-v").err
    assert debug in run_dr(capsys, "repo", "info", "--config", str(config), "--verbose", "-v").err


def test_config_commands_take_config_after_the_command(capsys: Capsys, isolated_home: Path) -> None:
    bad = isolated_home / "bad.yaml"
    bad.write_text("apiVersion: dr.dev/v1\nkind: Config\nrepositories: 3\n")
    before = run_dr(capsys, "--config", str(bad), "config", "validate")
    after = run_dr(capsys, "config", "validate", "--config", str(bad))
    assert before.code == 2 and str(bad) in before.err
    assert (after.code, after.out, after.err) == (before.code, before.out, before.err)
    good = two_repository_config(isolated_home, capsys)
    before = run_dr(capsys, "--config", str(good), "config", "show", "-o", "json")
    after = run_dr(capsys, "config", "show", "-o", "json", "--config", str(good))
    assert before.code == 0 and before.out == after.out


@pytest.mark.parametrize(
    "args",
    [
        ["repo", "info", "--config"],
        ["backup", "--kubeconfig"],
        ["backups", "list", "--context"],
        ["restore", "-v", "--nosuch"],
    ],
)
def test_usage_errors_with_global_options_after_the_command_are_one_line(
    capsys: Capsys, isolated_home: Path, args: list[str]
) -> None:
    r = run_dr(capsys, *args)
    assert r.code == 2 and r.out == ""
    assert len(r.err.splitlines()) == 1 and r.err.startswith("error: "), r.err


@pytest.mark.parametrize(
    "args",
    [
        ["--repo", "", "key", "list"],
        ["key", "list", "--repo", ""],
        ["--config", "", "key", "list"],
        ["key", "list", "--config", ""],
        ["--kubeconfig", "", "status"],
        ["--context", "", "status"],
        ["mover", "backup", "--repo", "", "."],
        ["deploy", "render", "--config", ""],
        ["drill", "run", "rb.yaml", "--backup", ""],  # fell back to the latest backup
        ["mover", "backup", "--parent", "", "."],  # fell back to no parent
        ["drill", "run", "rb.yaml", "--report-dir", ""],  # wrote no report files, said nothing
        ["report", "drills", "--out", ""],  # printed to stdout
        ["report", "drills", "--from-dir", ""],  # read the reports of the current directory
        ["runbook", "render", "rb.yaml", "--out", ""],  # printed to stdout
        # --policy "$POLICY" with $POLICY unset: as if no policy had been named
        ["forget", "--policy", "", "--keep-last", "1"],  # every policy's backups, by this retention
        ["restore", "latest", "--policy", "", "--dry-run"],  # the newest backup of any policy
        ["backup", "--policy", ""],  # every namespace, as 'manual'
        ["backups", "list", "--policy", ""],
        ["drill", "run", "rb.yaml", "--policy", ""],
        ["backups", "list", "--namespace", ""],  # every namespace's backups
        ["repo", "init", "--key", ""],  # the default key provider
    ],
    ids=" ".join,
)
def test_an_empty_option_value_is_refused_not_taken_for_the_default(
    capsys: Capsys, isolated_home: Path, args: list[str]
) -> None:
    # `dr --repo "$REPO" forget --prune` with $REPO unset must not act on the default
    # repository (nor "$CONFIG" read ./dr.yaml): an empty value is a usage error.
    r = run_dr(capsys, "repo", "init")  # the default repository, which an empty --repo fell back to
    assert r.code == 0, r.err
    r = run_dr(capsys, *args)
    option = next(a for a in args if a.startswith("--"))
    assert r.code == 2 and r.out == "", r.err
    # "Invalid value for '--policy'", or "'-n' / '--namespace'" for an option with a short name
    assert r.err.startswith("error: Invalid value for ") and "empty" in r.err, r.err
    assert f"'{option}'" in r.err.split(": ")[1], r.err
    assert len(r.err.splitlines()) == 1, r.err


def test_an_empty_optional_argument_is_refused_not_taken_for_the_default(
    capsys: Capsys, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As for the options: `dr verify "$ID"` with $ID unset verified the latest backup and
    # `dr config validate "$F"` the active config, each saying all was well.
    config = isolated_home / "dr.yaml"
    config.write_text("repositories: []\n")
    monkeypatch.setenv("DR_CONFIG", str(config))
    assert run_dr(capsys, "--config", str(config), "config", "validate").code == 0
    monkeypatch.delenv("DR_CONFIG")
    assert run_dr(capsys, "repo", "init").code == 0
    (isolated_home / "src").mkdir()
    assert run_dr(capsys, "mover", "backup", str(isolated_home / "src")).code == 0
    assert run_dr(capsys, "verify").code == 0
    monkeypatch.setenv("DR_CONFIG", str(config))
    for args in (["config", "validate", ""], ["--config", str(config), "config", "validate", "  "]):
        r = run_dr(capsys, *args)
        assert (r.code, r.out) == (2, ""), (args, r.err)
        assert (
            r.err.startswith("error: Invalid value for '[FILE]': empty") and len(r.err.splitlines()) == 1
        ), r.err
    monkeypatch.delenv("DR_CONFIG")
    r = run_dr(capsys, "verify", "")
    assert (r.code, r.out) == (2, ""), r.err
    assert (
        r.err.startswith("error: Invalid value for '[ID|latest]': empty") and len(r.err.splitlines()) == 1
    ), r.err


@pytest.mark.parametrize(
    "args",
    [
        ["mover", "restore", "latest", ""],  # restored into the current directory
        ["drill", "run", ""],
        ["runbook", "render", ""],
        ["runbook", "verify", ""],
        ["runbook", "validate", "rb.yaml", ""],
    ],
    ids=" ".join,
)
def test_an_empty_required_argument_is_refused_not_taken_for_the_current_directory(
    capsys: Capsys, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    # `dr mover restore "$ID" "$TARGET"` with $TARGET unset restored into the current
    # directory, over what was there; a runbook given as "" was read as "." ("cannot read:
    # Is a directory"). An empty value is a usage error naming the argument.
    r = run_dr(capsys, "repo", "init")
    assert r.code == 0, r.err
    (isolated_home / "src").mkdir()
    (isolated_home / "src" / "f").write_text("from the snapshot")
    assert run_dr(capsys, "mover", "backup", str(isolated_home / "src")).code == 0
    work = isolated_home / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    r = run_dr(capsys, *args)
    assert (r.code, r.out) == (2, ""), r.err
    assert (
        r.err.startswith("error: Invalid value for '") and "empty" in r.err and len(r.err.splitlines()) == 1
    )
    assert "leave the option out" not in r.err, r.err  # a required argument has no default
    assert list(work.iterdir()) == []


@pytest.fixture
def namespace(kube_client: KubeClient, unique: str) -> Iterator[str]:
    ns = f"glob-{unique}"
    make_namespace(kube_client, ns)
    create(kube_client, "configmaps", configmap("settings", {"k": "v"}), ns)
    yield ns
    delete_namespace(kube_client, ns)


def test_backup_and_restore_take_kube_options_after_the_command(
    capsys: Capsys, k8s: servers.TestCluster, isolated_home: Path, namespace: str
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    kc = k8s.kubeconfig
    context = yaml.safe_load(Path(kc).read_text())["current-context"]
    missing = str(isolated_home / "nosuch.kubeconfig")

    before = run_dr(capsys, "--kubeconfig", kc, "backup", "-n", namespace, "--no-data", "-o", "json")
    assert before.code == 0, before.err
    after = run_dr(capsys, "backup", "-n", namespace, "--no-data", "-o", "json", "--kubeconfig", kc,
                   "--context", context)  # fmt: skip
    assert after.code == 0, after.err
    assert after.json()["namespaces"] == before.json()["namespaces"] == [namespace]
    assert after.json()["counts"] == before.json()["counts"]
    # The later --kubeconfig wins, either way round.
    later = run_dr(
        capsys, "--kubeconfig", missing, "backup", "-n", namespace, "--no-data", "--kubeconfig", kc
    )
    assert later.code == 0, later.err
    wrong = run_dr(
        capsys, "--kubeconfig", kc, "backup", "-n", namespace, "--no-data", "--kubeconfig", missing
    )
    assert wrong.code == 2 and missing in wrong.err and len(wrong.err.splitlines()) == 1, wrong.err
    # A context the kubeconfig does not have, given after the command: the same error as before it.
    ctx_before = run_dr(capsys, "--kubeconfig", kc, "--context", "nosuch", "restore", "latest", "--dry-run")
    ctx_after = run_dr(capsys, "restore", "latest", "--dry-run", "--kubeconfig", kc, "--context", "nosuch")
    assert ctx_before.code == 2 and len(ctx_before.err.splitlines()) == 1, ctx_before.err
    assert f"kubeconfig {kc}: no context 'nosuch' (contexts: {context})" in ctx_before.err
    assert (ctx_after.code, ctx_after.err) == (ctx_before.code, ctx_before.err)

    plan_before = run_dr(capsys, "--kubeconfig", kc, "restore", "latest", "--dry-run", "-o", "json")
    plan_after = run_dr(
        capsys, "restore", "latest", "--dry-run", "-o", "json", "--kubeconfig", kc, "--context", context
    )
    assert plan_before.code == plan_after.code == 0, plan_after.err
    assert plan_after.json()["snapshotId"] == plan_before.json()["snapshotId"]
    assert plan_after.json()["items"] == plan_before.json()["items"]

    listed = run_dr(capsys, "backups", "list", "-n", namespace, "-o", "json", "--kubeconfig", kc)
    assert listed.code == 0 and len(listed.json()) == 3
