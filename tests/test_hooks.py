"""Hooks: declaration (annotations, policies), pre/post semantics, dumps and restores, the exec seam.

Hook logic talks only to the ``Exec`` protocol; ``ScriptedExec`` (``tests.exec_fakes``) is an
explicit implementation of it whose commands do what each test scripts
(exit code, output, a simulated duration compared with the hook's timeout —
no real sleeping). The order of hooks against the volume copy is checked
end to end with ``backup_volumes``, the node agent and the real mover. The
real ``KubernetesExec`` is tested against the test cluster (which does not
serve ``pods/exec``: the error must say so) and, with ``DR_TEST_KUBECONFIG``,
against a real cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dr.backup.hooks import (
    DumpRecord,
    HookError,
    RestoreHook,
    annotation_hook,
    dump_hook_of,
    hooks_for_pod,
    parse_command,
    restore_dump,
    restore_dumps,
    run_dump_hooks,
    run_post,
    run_pre,
)
from dr.backup.volumes import backup_volumes
from dr.config import Hook, PodHooks
from dr.kube.client import KubeClient
from dr.kube.exec import ExecError, ExecResult, ExecTimeout, KubernetesExec, stdin_chunks
from dr.repo.repository import Repository
from dr.storage.registry import open_store
from dr.testkit.agent import NodeAgent
from tests.conftest import Kube
from tests.exec_fakes import Script, ScriptedExec
from tests.repo_helpers import init_repo
from tests.volume_helpers import (
    MoverEnv,
    create_namespace,
    create_pod,
    create_pvc,
    create_storage,
    delete_storage,
    get_pvc,
)
from tests.ws_peer import OUTPUT, ws_peer


def pod(
    name: str,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    ns: str = "app",
    running: bool = True,
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "annotations": annotations or {}, "labels": labels or {}},
        "spec": {"containers": [{"name": "db"}, {"name": "sidecar"}]},
        "status": {"phase": "Running" if running else "Pending"},
    }


# --------------------------------------------------------------------------- declaring hooks


def test_commands_from_annotations() -> None:
    assert parse_command('["fsfreeze", "--freeze", "/data"]', "a") == ["fsfreeze", "--freeze", "/data"]
    assert parse_command("sync && psql -c 'CHECKPOINT'", "a") == [
        "/bin/sh",
        "-c",
        "sync && psql -c 'CHECKPOINT'",
    ]
    for bad, reason in (
        ("", "empty command"),
        ("[1, 2]", "must be a non-empty JSON array of strings"),
        ("[]", "must be a non-empty JSON array of strings"),
        ('["unterminated', "not a JSON array"),
    ):
        with pytest.raises(HookError, match=reason) as e:
            parse_command(bad, "pre.hook.backup.dr.dev/command")
        assert e.value.message.startswith("annotation pre.hook.backup.dr.dev/command: ")


def test_annotation_hooks_with_defaults_and_errors() -> None:
    p = pod(
        "db-0",
        {
            "pre.hook.backup.dr.dev/command": '["freeze"]',
            "pre.hook.backup.dr.dev/container": "sidecar",
            "pre.hook.backup.dr.dev/on-error": "Continue",
            "pre.hook.backup.dr.dev/timeout": "2m",
            "post.hook.backup.dr.dev/command": "thaw",
        },
    )
    pre = annotation_hook(p, "pre.hook.backup.dr.dev")
    assert pre == Hook(
        name="annotation",
        container="sidecar",
        command=["freeze"],
        timeout=timedelta(minutes=2),
        on_error="continue",
    )
    post = annotation_hook(p, "post.hook.backup.dr.dev")
    assert post is not None and post.command == ["/bin/sh", "-c", "thaw"]
    assert (post.container, post.on_error, post.timeout) == (None, "fail", timedelta(seconds=30))
    assert annotation_hook(p, "dump.hook.backup.dr.dev") is None
    with pytest.raises(HookError, match=r"on-error: 'sometimes' is not fail or continue"):
        annotation_hook(
            pod("x", {"pre.hook.backup.dr.dev/command": "a", "pre.hook.backup.dr.dev/on-error": "sometimes"}),
            "pre.hook.backup.dr.dev",
        )
    with pytest.raises(HookError, match=r"timeout: invalid duration 'soon'"):
        annotation_hook(
            pod("x", {"pre.hook.backup.dr.dev/command": "a", "pre.hook.backup.dr.dev/timeout": "soon"}),
            "pre.hook.backup.dr.dev",
        )


def test_policy_hooks_follow_annotations_and_match_by_selector() -> None:
    policy = [
        PodHooks(
            selector="app=db",
            pre=[Hook(name="checkpoint", command=["checkpoint"])],
            post=[Hook(name="resume", command=["resume"])],
        ),
        PodHooks(selector="app=web", pre=[Hook(name="never", command=["x"])]),
        PodHooks(pre=[Hook(name="everyone", command=["sync"])]),
    ]
    hs = hooks_for_pod(pod("db-0", {"pre.hook.backup.dr.dev/command": "freeze"}, {"app": "db"}), policy)
    assert [h.name for h in hs.pre] == ["annotation", "checkpoint", "everyone"]
    assert [h.name for h in hs.post] == ["resume"]
    assert hs.default_container == "db" and hs.running and hs.problem is None
    broken = hooks_for_pod(pod("db-1", {"post.hook.backup.dr.dev/command": "[1]"}), [])
    assert broken.problem == (
        "pod app/db-1: annotation post.hook.backup.dr.dev/command: must be a non-empty JSON array of strings"
    )
    assert hooks_for_pod(pod("idle"), []).empty


# --------------------------------------------------------------------------- pre/post semantics


def hookset(pre: list[Hook], post: list[Hook], running: bool = True) -> Any:
    hs = hooks_for_pod(pod("db-0", running=running), [PodHooks(pre=pre, post=post)])
    return hs


def test_pre_hooks_stop_at_a_failing_fail_hook_and_post_hooks_all_run() -> None:
    ex = ScriptedExec(
        {
            "freeze": Script(),
            "optional": Script(exit_code=3, stderr=b"not supported here\n"),
            "lock": Script(exit_code=1, stderr=b"cannot lock: busy\n"),
            "thaw": Script(exit_code=1, stderr=b"thaw failed\n"),
            "unlock": Script(),
        }
    )
    hs = hookset(
        pre=[
            Hook(name="freeze", command=["freeze"]),
            Hook(name="optional", command=["optional"], on_error="continue"),
            Hook(name="lock", command=["lock"]),
            Hook(name="never", command=["never"]),
        ],
        post=[Hook(name="thaw", command=["thaw"]), Hook(name="unlock", command=["unlock"])],
    )
    pre = run_pre(ex, [hs])
    assert [r.name for r in pre.results] == ["freeze", "optional", "lock"]  # "never" did not run
    assert (
        pre.ran
        and pre.fatal == "pre hook 'lock' in pod app/db-0 container db: exit code 1: cannot lock: busy"
    )
    assert pre.warnings == [
        "pre hook 'optional' in pod app/db-0 container db: exit code 3: not supported here"
    ]
    post = run_post(ex, [hs])
    assert [r.name for r in post.results] == ["thaw", "unlock"]  # a failed thaw does not stop the next
    assert post.fatal == "post hook 'thaw' in pod app/db-0 container db: exit code 1: thaw failed"
    assert [c[3] for c in ex.calls] == [["freeze"], ["optional"], ["lock"], ["thaw"], ["unlock"]]
    assert all(c[:3] == ("app", "db-0", "db") for c in ex.calls)


def test_hook_timeouts_exec_errors_and_pods_not_running() -> None:
    ex = ScriptedExec({"slow": Script(seconds=45), "quick": Script(seconds=1)})
    hs = hookset(
        pre=[
            Hook(command=["quick"], timeout=timedelta(seconds=2)),
            Hook(name="slow", command=["slow"], timeout=timedelta(seconds=30)),
        ],
        post=[],
    )
    pre = run_pre(ex, [hs])
    assert pre.results[0].ok and pre.results[1].error == "timed out after 30s"
    assert [c[4] for c in ex.calls] == [2.0, 30.0]  # each hook's own timeout reaches the exec
    missing = run_pre(ex, [hookset(pre=[Hook(name="gone", command=["nope"])], post=[])])
    assert missing.fatal == (
        "pre hook 'gone' in pod app/db-0 container db: "
        'command did not run: exec: "nope": executable file not found in $PATH'
    )
    idle = hookset(pre=[Hook(command=["quick"])], post=[Hook(command=["quick"])], running=False)
    calls = len(ex.calls)
    pre, post = run_pre(ex, [idle]), run_post(ex, [idle])
    assert not pre.ran and pre.fatal is None and post.results[0].skipped
    assert (
        post.results[0].describe() == "post hook in pod app/db-0 container db: skipped (pod is not running)"
    )
    assert len(ex.calls) == calls


# --------------------------------------------------------------------------- dumps and restores


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    r, _ = init_repo(open_store(f"file://{tmp_path}/repo"), tmp_path)
    return r


def dump_bytes(n: int, seed: int = 3) -> list[bytes]:
    rng = random.Random(seed)
    data = rng.randbytes(n)
    return [data[i : i + 100_000] for i in range(0, n, 100_000)]


def test_dump_streams_into_the_repository_and_restores_byte_for_byte(repo: Repository) -> None:
    chunks = dump_bytes(5_000_000)
    whole = b"".join(chunks)
    ex = ScriptedExec({"pg_dump -Fc app": Script(stdout=chunks), "pg_restore -d app": Script()})
    pods = [
        pod(
            "db-0",
            {
                "dump.hook.backup.dr.dev/command": '["pg_dump", "-Fc", "app"]',
                "dump.hook.backup.dr.dev/name": "pg",
                "dump.hook.backup.dr.dev/container": "sidecar",
            },
        ),
        pod("web-0"),
    ]
    with repo.saver() as saver:
        outcome = run_dump_hooks(ex, repo, saver, pods)
        saver.flush()
    assert outcome.errors == []
    (rec,) = outcome.records
    assert (rec.namespace, rec.pod, rec.container, rec.name) == ("app", "db-0", "sidecar", "pg")
    assert rec.size == len(whole) and rec.sha256 == hashlib.sha256(whole).hexdigest()
    assert rec.stream.size == len(whole) and len(rec.stream.blobs) > 1  # chunked, not one blob
    assert rec.key == "app/db-0/pg"
    # The record is what the backup keeps: it survives JSON.
    doc = json.loads(rec.model_dump_json(by_alias=True))
    assert doc["durationSeconds"] >= 0 and doc["stream"]["size"] == len(whole)
    rec = DumpRecord.model_validate(doc)

    restored = [
        pod(
            "db-0",
            {"restore.hook.dr.dev/command": '["pg_restore", "-d", "app"]', "restore.hook.dr.dev/name": "pg"},
            ns="app-copy",
        ),
        pod("other", {"restore.hook.dr.dev/command": '["pg_restore", "-d", "app"]'}, ns="app-copy"),
    ]
    results = restore_dumps(ex, repo, [rec], restored, {"app": "app-copy"})
    assert [(r.pod, r.ok, r.error) for r in results] == [("db-0", True, None)]
    assert ex.stdin["app-copy/db-0"] == whole


def test_restore_dump_checks_what_the_command_consumed(repo: Repository) -> None:
    # Several blobs: a command that stops reading early leaves whole blobs unsent.
    chunks = dump_bytes(5_000_000)
    ex = ScriptedExec(
        {
            "dump": Script(stdout=chunks),
            "load-part": Script(reads=300_000),
            "load-fails": Script(exit_code=1, stderr=b"ERROR: relation exists\n"),
            "load-slow": Script(seconds=7200),
        }
    )
    with repo.saver() as saver:
        (rec,) = run_dump_hooks(
            ex, repo, saver, [pod("db-0", {"dump.hook.backup.dr.dev/command": '["dump"]'})]
        ).records
        saver.flush()
    assert rec.name == "dump"

    def hook(cmd: str) -> RestoreHook:
        return RestoreHook("app", "db-0", "db", [cmd])

    part = restore_dump(ex, repo, rec, hook("load-part"))
    assert not part.ok and part.error is not None
    assert (
        part.error.startswith("the command ended after reading ")
        and "of 5000000 bytes of dump app/db-0/dump" in part.error
    )
    fails = restore_dump(ex, repo, rec, hook("load-fails"))
    assert fails.error == "exit code 1: ERROR: relation exists"
    slow = restore_dump(ex, repo, rec, hook("load-slow"))
    assert slow.error == "timed out after 3600s"
    nobody = restore_dumps(ex, repo, [rec], [pod("db-0", ns="app")])
    assert nobody[0].skipped and nobody[0].note == "no running pod in app has a restore hook for dump 'dump'"
    bad = restore_dumps(ex, repo, [], [pod("db-0", {"restore.hook.dr.dev/command": "[]"})])
    assert not bad[0].ok and "must be a non-empty JSON array" in str(bad[0].error)


def test_failed_dumps_are_errors_and_the_others_go_on(repo: Repository) -> None:
    ex = ScriptedExec(
        {
            "bad": Script(exit_code=2, stdout=[b"partial"], stderr=b"pg_dump: connection refused\n"),
            "slow": Script(seconds=10, stdout=[b"x"]),
            "good": Script(stdout=[b"fine"]),
        }
    )
    pods = [
        pod("a", {"dump.hook.backup.dr.dev/command": '["bad"]'}),
        pod("b", {"dump.hook.backup.dr.dev/command": '["slow"]', "dump.hook.backup.dr.dev/timeout": "5s"}),
        pod("c", {"dump.hook.backup.dr.dev/command": '["good"]'}, running=False),
        pod("d", {"dump.hook.backup.dr.dev/command": '["good"]'}),
        pod("e", {"dump.hook.backup.dr.dev/command": "[oops"}),
    ]
    with repo.saver() as saver:
        outcome = run_dump_hooks(ex, repo, saver, pods)
        saver.flush()
    assert [r.pod for r in outcome.records] == ["d"]
    assert outcome.errors == [
        "dump hook 'dump' in pod app/a container db: exit code 2: pg_dump: connection refused",
        "dump hook 'dump' in pod app/b container db: timed out after 5s",
        "dump hook 'dump' in pod app/c: pod is not running",
        "pod app/e: annotation dump.hook.backup.dr.dev/command: not a JSON array: "
        "Expecting value: line 1 column 2 (char 1)",
    ]
    assert dump_hook_of(pod("z")) is None


# A hook's stderr as a failing pg_dump, mysql or a chatty script might print it.
LEAKY_STDERR = (
    b"psql: error: connection to server failed for user app (password=hunter2)\n"
    b"curl: 401 with Authorization: Bearer abc.def.ghi\n"
    b"env: PGPASSWORD=s3cr3t-pg MYSQL_PWD=s3cr3t-my\n"
    b"Authorization: Basic dXNlcjpzM2NyM3QtYmFzaWM=\n"
)
LEAKS = ("hunter2", "abc.def.ghi", "s3cr3t-pg", "s3cr3t-my", "dXNlcjpzM2NyM3QtYmFzaWM")


def test_a_hooks_stderr_is_redacted_before_it_is_quoted(repo: Repository) -> None:
    # The stderr tail goes into the hook's error, the backup's or restore's record,
    # warnings, the run's message and the Kubernetes Event: secrets are masked first.
    # A secret just before where the tail starts is masked too (masked, then cut).
    cut = b"A" * 1000 + b" password=hunter2 " + b"B" * 390
    ex = ScriptedExec(
        {
            "lock": Script(exit_code=1, stderr=LEAKY_STDERR),
            "optional": Script(exit_code=3, stderr=cut),
            "dump": Script(exit_code=2, stdout=[b"partial"], stderr=LEAKY_STDERR),
            "good-dump": Script(stdout=[b"rows"]),
            "load": Script(exit_code=1, stderr=LEAKY_STDERR),
        }
    )
    hs = hookset(
        pre=[
            Hook(name="optional", command=["optional"], on_error="continue"),
            Hook(name="lock", command=["lock"]),
        ],
        post=[],
    )
    pre = run_pre(ex, [hs])
    with repo.saver() as saver:
        dumps = run_dump_hooks(
            ex,
            repo,
            saver,
            [
                pod("a", {"dump.hook.backup.dr.dev/command": '["dump"]'}),
                pod("b", {"dump.hook.backup.dr.dev/command": '["good-dump"]'}),
            ],
        )
        saver.flush()
    (rec,) = dumps.records
    loaded = restore_dump(ex, repo, rec, RestoreHook("app", "b", "db", ["load"]))

    assert pre.fatal is not None and loaded.error is not None
    texts = [pre.fatal, *pre.warnings, *dumps.errors, loaded.error, loaded.describe()]
    texts += [json.dumps(r.model_dump(by_alias=True)) for r in [*pre.results, loaded]]
    for text in texts:
        for secret in LEAKS:
            assert secret not in text, text
    # The rest of the message stays, to say what went wrong.
    assert pre.fatal.startswith("pre hook 'lock' in pod app/db-0 container db: exit code 1: psql: error: ")
    for text in (pre.fatal, dumps.errors[0], loaded.error):
        assert "connection to server failed for user app (password=[REDACTED]" in text, text
        assert "curl: 401 with Authorization: Bearer [REDACTED]" in text, text
        assert "PGPASSWORD=[REDACTED]" in text and "Authorization: Basic [REDACTED]" in text, text
    assert dumps.errors[0].startswith("dump hook 'dump' in pod app/a container db: exit code 2: psql: ")
    assert pre.warnings == [
        "pre hook 'optional' in pod app/db-0 container db: exit code 3: …REDACTED] " + "B" * 390
    ]


def test_a_hooks_command_is_recorded_with_its_secrets_masked(repo: Repository) -> None:
    # A hook's command went as written into its result and its dump record (kept in the
    # repository, shown by `dr backups describe`): `PGPASSWORD=… pg_dump` in an
    # annotation put the password there. It runs as written and is recorded masked.
    command = ["sh", "-c", "PGPASSWORD=hunter2 pg_dump --password=s3cret --dbname app"]
    ex = ScriptedExec({" ".join(command): Script(stdout=[b"rows"])})
    hs = hookset(pre=[Hook(name="freeze", command=command)], post=[])
    pre = run_pre(ex, [hs])
    with repo.saver() as saver:
        dumps = run_dump_hooks(
            ex, repo, saver, [pod("a", {"dump.hook.backup.dr.dev/command": json.dumps(command)})]
        )
        saver.flush()
    masked = ["sh", "-c", "PGPASSWORD=[REDACTED] pg_dump --password=[REDACTED] --dbname app"]
    assert dumps.errors == [] and len(dumps.records) == 1, dumps.errors
    assert pre.results[0].command == masked and dumps.records[0].command == masked
    assert [c[3] for c in ex.calls] == [command, command]  # what ran: as written


def test_a_large_stderr_is_redacted_in_bounded_time() -> None:
    # Up to 1 MiB of stderr is kept; what the patterns take on text made to be slow
    # for them (headers of keys that never end, long dotted runs) must not hold up
    # the backup. A private key printed at the very end is masked although its
    # header is far before the tail.
    key = (
        b"-----BEGIN PRIVATE KEY-----\n"
        + b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n" * 100
        + b"-----END PRIVATE KEY-----\n"
    )
    slow = b"-----BEGIN RSA PRIVATE KEY-----\n" * 30_000 + b"a." * 100_000
    ex = ScriptedExec(
        {
            "chatty": Script(exit_code=1, stderr=slow + b" password=hunter2"),
            "key": Script(exit_code=1, stderr=slow + key),
        }
    )
    hs = hookset(pre=[Hook(name="chatty", command=["chatty"])], post=[Hook(name="key", command=["key"])])
    start = time.monotonic()
    pre, post = run_pre(ex, [hs]), run_post(ex, [hs])
    assert time.monotonic() - start < 10
    assert pre.fatal is not None and pre.fatal.endswith("a.a. password=[REDACTED]")
    assert post.fatal is not None and post.fatal.endswith("a.a.[REDACTED]") and "MIIEv" not in post.fatal


# --------------------------------------------------------------------------- hooks around the volume copy


@pytest.fixture
def app(kube_client: KubeClient, node_agent: NodeAgent, mover_env: MoverEnv, unique: str) -> Iterator[str]:
    ns = f"hooks-{unique}"
    create_namespace(kube_client, ns)
    mover_env.prepare(ns)
    node_agent.manage(ns, mover_env.mover_namespace)
    yield ns
    kube_client.request("DELETE", f"/api/v1/namespaces/{ns}")


MakeStorage = Callable[[bool], str]


@pytest.fixture
def make_storage(kube_client: KubeClient, unique: str) -> Iterator[MakeStorage]:
    """Creates a StorageClass (with a VolumeSnapshotClass when asked), deleted after the test; returns its name."""
    made: list[tuple[str, str | None]] = []

    def make(snapshot_class: bool) -> str:
        made.append(create_storage(kube_client, unique, snapshot_class=snapshot_class))
        return made[-1][0]

    yield make
    for sc, vsc in made:
        delete_storage(kube_client, sc, vsc)


def small_volume(kc: KubeClient, agent: NodeAgent, ns: str, name: str, sc: str) -> dict[str, Any]:
    create_pvc(kc, ns, name, sc)
    deadline = time.monotonic() + 30
    while get_pvc(kc, ns, name).get("status", {}).get("phase") != "Bound":
        assert time.monotonic() < deadline, f"{name} not bound"
        time.sleep(0.05)
    d = agent.volume_dir(ns, name)
    (d / "data.txt").write_text(f"contents of {name}\n")
    return get_pvc(kc, ns, name)


FREEZE = {"pre.hook.backup.dr.dev/command": '["freeze"]', "post.hook.backup.dr.dev/command": '["thaw"]'}


@pytest.mark.parametrize("snapshots", [True, False], ids=["snapshot", "filesystem"])
def test_hooks_bracket_the_point_in_time(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    app: str,
    snapshots: bool,
    make_storage: MakeStorage,
) -> None:
    kc, agent = kube_client, node_agent
    sc = make_storage(snapshots)
    pvc = small_volume(kc, agent, app, "data-0", sc)
    create_pod(kc, app, "db-0", ["data-0"], annotations=FREEZE)
    ex = ScriptedExec({"freeze": Script(), "thaw": Script()}, events=agent.events)
    (res,) = backup_volumes(kc, [pvc], mover_env.backup_ctx("b-hooks"), mover_env.finder(), exec_=ex)
    assert res.error is None and res.snapshot_id
    assert [(h.phase, h.ok) for h in res.hooks] == [("pre", True), ("post", True)]
    kinds = [k for k, _ in agent.events]
    names = [name for _, name in agent.events]
    if snapshots:
        # The application is frozen only until the snapshot is cut; the copy runs after the thaw.
        assert kinds == ["exec", "snapshot-cut", "exec", "job-start", "job-end"]
        assert names[0] == "freeze" and names[2] == "thaw"
    else:
        assert kinds == ["exec", "job-start", "job-end", "exec"]
        assert names[0] == "freeze" and names[3] == "thaw"


def test_a_failing_pre_hook_skips_that_pods_volumes_only(
    kube_client: KubeClient, node_agent: NodeAgent, mover_env: MoverEnv, app: str, make_storage: MakeStorage
) -> None:
    kc, agent = kube_client, node_agent
    sc = make_storage(True)
    a = small_volume(kc, agent, app, "data-a", sc)
    b = small_volume(kc, agent, app, "data-b", sc)
    c = small_volume(kc, agent, app, "data-c", sc)
    create_pod(
        kc, app, "db-a", ["data-a"], annotations={**FREEZE, "pre.hook.backup.dr.dev/command": '["lock"]'}
    )
    create_pod(
        kc,
        app,
        "db-b",
        ["data-b"],
        annotations={
            "pre.hook.backup.dr.dev/command": '["optional"]',
            "pre.hook.backup.dr.dev/on-error": "continue",
        },
    )
    create_pod(kc, app, "db-c", ["data-c"], annotations={"post.hook.backup.dr.dev/command": "[1]"})
    ex = ScriptedExec(
        {"lock": Script(exit_code=1, stderr=b"busy\n"), "thaw": Script(), "optional": Script(exit_code=5)}
    )

    ra, rb, rc = backup_volumes(kc, [a, b, c], mover_env.backup_ctx("b-fail"), mover_env.finder(), exec_=ex)

    assert ra.error == (
        "not backed up: pre hook failed: pre hook 'annotation' in pod "
        f"{app}/db-a container app: exit code 1: busy"
    )
    assert ra.snapshot_id is None and ra.job is None
    assert [(h.phase, h.ok) for h in ra.hooks] == [("pre", False), ("post", True)]  # thawed all the same
    assert rb.error is None and rb.snapshot_id  # "continue": a warning
    assert rb.warnings == [f"pre hook 'annotation' in pod {app}/db-b container app: exit code 5"]
    assert rc.error == (
        "not backed up: pre hook failed: pod "
        f"{app}/db-c: annotation post.hook.backup.dr.dev/command: must be a non-empty JSON array of strings"
    )
    assert [c[3] for c in ex.calls].count(["thaw"]) == 1
    assert len(agent.runs) == 1


def test_a_pre_hook_whose_exec_breaks_is_a_failure_and_the_post_hook_thaws(
    kube_client: KubeClient, node_agent: NodeAgent, mover_env: MoverEnv, app: str, make_storage: MakeStorage
) -> None:
    # The freeze ran (the application is frozen), then something other than an
    # ExecError escaped the exec: it was a crash of the backup that skipped the thaw.
    kc, agent = kube_client, node_agent
    sc = make_storage(True)
    pvc = small_volume(kc, agent, app, "data-0", sc)
    create_pod(kc, app, "db-0", ["data-0"], annotations=FREEZE)
    secret = "Authorization: Bearer s3cr3t-token"
    ex = ScriptedExec({"freeze": Script(raises=RuntimeError(secret)), "thaw": Script()})
    (res,) = backup_volumes(kc, [pvc], mover_env.backup_ctx("b-drop"), mover_env.finder(), exec_=ex)
    assert [c[3] for c in ex.calls] == [["freeze"], ["thaw"]]
    assert res.error == (
        f"not backed up: pre hook failed: pre hook 'annotation' in pod {app}/db-0 container app: "
        "exec failed: RuntimeError (run with -vv for details)"
    )
    assert secret not in str(res.error)
    assert [(h.phase, h.ok) for h in res.hooks] == [("pre", False), ("post", True)]


def test_post_hooks_run_when_the_pre_hooks_are_interrupted() -> None:
    class Interrupting(ScriptedExec):
        def run(self, *args: Any, **kw: Any) -> ExecResult:
            res = super().run(*args, **kw)
            if args[3] == ["freeze"]:
                raise KeyboardInterrupt
            return res

    from dr.backup.hooks import HookRun

    ex = Interrupting({"freeze": Script(), "thaw": Script()})
    hs = hookset(pre=[Hook(command=["freeze"])], post=[Hook(command=["thaw"])])
    pre = HookRun()
    with pytest.raises(KeyboardInterrupt):
        run_pre(ex, [hs], pre)
    assert pre.ran  # the caller knows the freeze started: the thaw is due


def test_dumps_and_loads_whose_exec_breaks_are_failures(repo: Repository) -> None:
    ex = ScriptedExec(
        {
            "lost": Script(stdout=[b"partial"], raises=ConnectionResetError("peer reset")),
            "good": Script(stdout=[b"fine"]),
            "load": Script(raises=ValueError("Bearer s3cr3t")),
        }
    )
    pods = [
        pod("a", {"dump.hook.backup.dr.dev/command": '["lost"]'}),
        pod("b", {"dump.hook.backup.dr.dev/command": '["good"]'}),
    ]
    with repo.saver() as saver:
        outcome = run_dump_hooks(ex, repo, saver, pods)
        saver.flush()
    assert [r.pod for r in outcome.records] == ["b"]
    assert outcome.errors == [
        "dump hook 'dump' in pod app/a container db: exec failed: ConnectionResetError (run with -vv for details)"
    ]
    loaded = restore_dump(ex, repo, outcome.records[0], RestoreHook("app", "b", "db", ["load"]))
    assert not loaded.ok and loaded.error == "exec failed: ValueError (run with -vv for details)"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_while_the_app_is_frozen_thaws_it_and_cleans_up(
    kube_client: KubeClient,
    k8s: Any,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    app: str,
    tmp_path: Path,
    sig: str,
    make_storage: MakeStorage,
) -> None:
    # A CronJob's activeDeadlineSeconds, an eviction or a drain sends SIGTERM (a closed
    # terminal SIGHUP) while the file-system copy runs, i.e. while the application is frozen.
    import signal
    import subprocess
    import sys

    kc, agent = kube_client, node_agent
    sc = make_storage(False)
    pvc = small_volume(kc, agent, app, "data-0", sc)
    create_pod(kc, app, "db-0", ["data-0"], annotations=FREEZE)
    agent.hang.add(f"{app}/data-0")  # the mover's pod never starts: the copy would take ~forever
    ctx, pvc_file, log = tmp_path / "ctx.json", tmp_path / "pvc.json", tmp_path / "exec.log"
    ctx.write_text(mover_env.backup_ctx("b-sig", mode="filesystem").model_dump_json())
    pvc_file.write_text(json.dumps(pvc))
    root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.signal_child", k8s.kubeconfig, str(ctx), str(pvc_file), str(log)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        jobs = f"/apis/batch/v1/namespaces/{app}/jobs"
        deadline = time.monotonic() + 60
        while not kc.call("GET", jobs).get("items"):  # frozen, and the copy's Job is running
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the backup did not start its Job"
            time.sleep(0.1)
        assert log.read_text().split() == ["freeze"]
        child.send_signal(getattr(signal, sig))
        _, err = child.communicate(timeout=30)  # not the mover's 300 s stuck grace
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == {"SIGTERM": 143, "SIGHUP": 129, "SIGINT": 130}[sig], err.decode()[-2000:]
    assert log.read_text().split() == ["freeze", "thaw"]
    assert kc.call("GET", jobs)["items"] == []  # the temporary Job was deleted


# --------------------------------------------------------------------------- the real exec


def test_stdin_chunks() -> None:
    assert list(stdin_chunks(None)) == []
    assert list(stdin_chunks(b"abcdefg", frame=3)) == [b"abc", b"def", b"g"]
    assert list(stdin_chunks(iter([b"ab", b"", b"cdef"]), frame=3)) == [b"ab", b"cde", b"f"]


def test_kubernetes_exec_says_the_test_cluster_does_not_serve_exec(
    kube: Kube, kube_client: KubeClient, namespace: str
) -> None:
    from kubernetes import client as kclient

    kclient.CoreV1Api(kube.api).create_namespaced_pod(
        namespace, {"metadata": {"name": "db-0"}, "spec": {"containers": [{"name": "main", "image": "x"}]}}
    )
    # Built from the kubernetes client's ApiClient or from dr's KubeClient alike.
    for ex in (KubernetesExec(kube.api), KubernetesExec(kube_client)):
        with pytest.raises(ExecError) as e:
            ex.run(namespace, "db-0", "main", ["true"], 10, stdin=b"x", stdout_sink=lambda b: None)
        assert e.value.message == (
            f"cannot exec into pod {namespace}/db-0 container main: "
            "the API server does not serve pods/exec for it (404: pod or exec endpoint not found)"
        )


def test_kubernetes_exec_reports_a_lost_connection() -> None:
    # The API server accepts the exec, then the connection drops before the
    # command's status arrives (API server restart, node gone, proxy timeout).
    with ws_peer("drop") as peer, pytest.raises(ExecError) as e:
        KubernetesExec(peer.api).run("shop", "db-0", "db", ["freeze"], 10)
    assert not isinstance(e.value, ExecTimeout)
    assert e.value.message.startswith("connection to pod shop/db-0 container db lost: ")


def test_kubernetes_exec_passes_a_failure_of_its_stdin_through() -> None:
    # The stdin (a dump read from the repository) fails: that error, as it is, not "connection lost".
    def stdin() -> Iterator[bytes]:
        yield b"x" * 1024
        raise OSError("the repository's disk is gone")

    with ws_peer("noread") as peer, pytest.raises(OSError, match="disk is gone") as e:
        KubernetesExec(peer.api).run("shop", "db-0", "db", ["pg_restore"], 5.0, stdin=stdin())
    assert not isinstance(e.value, ExecError)


def test_kubernetes_exec_passes_a_failure_of_its_output_sink_through() -> None:
    # The sink (a dump written to the repository) fails: that error, as it is, not "connection lost".
    got: list[bytes] = []

    def sink(data: bytes) -> None:
        got.append(data)
        raise OSError("the repository's disk is full")

    with ws_peer("output") as peer, pytest.raises(OSError, match="disk is full") as e:
        KubernetesExec(peer.api).run("shop", "db-0", "db", ["pg_dump"], 5.0, stdout_sink=sink)
    assert not isinstance(e.value, ExecError)
    assert got == [OUTPUT]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        # The command does not read its stdin: the socket buffers fill, the write blocks.
        ("noread", "command in pod shop/db-0 container db did not finish within 1s"),
        # The API server (or a proxy) accepts the connection and never answers the upgrade.
        ("nohandshake", "cannot exec into pod shop/db-0 container db: no answer within 1s"),
    ],
)
def test_kubernetes_exec_keeps_its_timeout_when_the_peer_stops(mode: Any, message: str) -> None:
    stdin = iter([b"x" * (1 << 20)] * 256)  # far more than any socket buffer
    with ws_peer(mode) as peer:
        start = time.monotonic()
        with pytest.raises(ExecTimeout) as e:
            KubernetesExec(peer.api).run("shop", "db-0", "db", ["pg_restore"], 1.0, stdin=stdin)
        took = time.monotonic() - start
    assert e.value.message == message
    assert took < 5  # the budget, plus at most a second to send the close frame


REAL_CLUSTER = os.environ.get("DR_TEST_KUBECONFIG")


@pytest.mark.skipif(
    not REAL_CLUSTER, reason="KubernetesExec's happy path needs kubelets: set DR_TEST_KUBECONFIG"
)
def test_kubernetes_exec_streams_on_a_real_cluster(unique: str) -> None:
    from kubernetes import client as kclient
    from kubernetes import config as kconfig

    api = kconfig.new_client_from_config(config_file=REAL_CLUSTER)
    core = kclient.CoreV1Api(api)
    ns = f"dr-exec-{unique}"
    core.create_namespace({"metadata": {"name": ns}})
    try:
        spec = {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "600"]}]}
        core.create_namespaced_pod(ns, {"metadata": {"name": "box"}, "spec": spec})
        deadline = time.monotonic() + 180
        while core.read_namespaced_pod_status("box", ns).status.phase != "Running":
            assert time.monotonic() < deadline, "pod did not start"
            time.sleep(1)
        ex = KubernetesExec(api)
        res = ex.run(ns, "box", "main", ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30)
        assert res == ExecResult(3, b"out\n", b"err\n")
        data = b"".join(dump_bytes(3_000_000))
        got = bytearray()
        res = ex.run(
            ns, "box", "main", ["cat"], 60, stdin=iter(dump_bytes(3_000_000)), stdout_sink=got.extend
        )
        assert res.exit_code == 0 and bytes(got) == data and res.stdout == b""
        with pytest.raises(ExecTimeout):
            ex.run(ns, "box", "main", ["sleep", "30"], timeout=2)
    finally:
        core.delete_namespace(ns)
