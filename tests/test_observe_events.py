"""Events for run outcomes, created on the real test cluster and read back."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from dr.backup.resources import ResourceBackupResult
from dr.backup.run import BackupOutcome, BackupRequest, VolumePhase
from dr.backup.scope import BackupScope
from dr.config import Config
from dr.errors import DrError
from dr.kube.client import KubeClient
from dr.observe.events import MAX_MESSAGE, NamespaceNotFound, Reason, event_body, event_type, record_event
from dr.observe.run_hooks import Emitter, backup_finished
from dr.repo.snapshots import Snapshot
from tests.conftest import Kube


def _events(kube: Kube, namespace: str) -> dict[str, Any]:
    from kubernetes import client

    return {e.metadata.name: e for e in client.CoreV1Api(kube.api).list_namespaced_event(namespace).items}


def test_outcome_event_on_the_namespace(kube: Kube, namespace: str) -> None:
    name = record_event(kube.api, namespace, Reason.BACKUP_COMPLETED, "backup 3f2a: 120 items, 1.0 MiB")
    ev = _events(kube, namespace)[name]
    assert ev.involved_object.kind == "Namespace" and ev.involved_object.name == namespace
    assert ev.involved_object.api_version == "v1"
    # kube-apiserver (legacyValidateEvent, an Event without eventTime): involvedObject.namespace must
    # equal the event's namespace, or be empty with the event in "default". The test cluster does not
    # validate built-in types, so the rule is checked here.
    assert ev.event_time is None and ev.involved_object.namespace == ev.metadata.namespace == namespace
    assert (ev.reason, ev.type) == ("BackupCompleted", "Normal")
    assert ev.message == "backup 3f2a: 120 items, 1.0 MiB"
    assert ev.source.component == "dr" and ev.reporting_component == "dr"
    assert ev.count == 1 and ev.first_timestamp is not None


def test_failures_are_warnings(kube: Kube, namespace: str) -> None:
    failed = record_event(kube.api, namespace, Reason.DRILL_FAILED, "step http-home: status 502")
    partial = record_event(kube.api, namespace, Reason.BACKUP_PARTIALLY_FAILED, "2 items failed")
    passed = record_event(kube.api, namespace, Reason.DRILL_PASSED, "all 5 steps passed")
    events = _events(kube, namespace)
    assert events[failed].type == "Warning" and events[failed].reason == "DrillFailed"
    assert events[partial].type == "Warning"
    assert events[passed].type == "Normal"
    assert len({failed, partial, passed}) == 3


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_a_type(reason: Reason) -> None:
    warning = "Fail" in reason.value or reason.value.endswith("WithWarnings")
    assert event_type(reason) == ("Warning" if warning else "Normal")


def test_long_messages_are_cut() -> None:
    body = event_body("ns", Reason.RESTORE_COMPLETED, "x" * 5000, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert len(body["message"].encode("utf-8")) == MAX_MESSAGE and body["message"].endswith("…")
    assert body["firstTimestamp"] == "2026-01-02T03:04:05Z"
    assert body["metadata"]["namespace"] == "ns" and body["metadata"]["name"].startswith("ns.dr.")


def test_long_messages_are_cut_to_1_kib_on_a_character_boundary(kube: Kube, namespace: str) -> None:
    # 1 KiB like the events.k8s.io note limit: bytes, not characters (an "é" is two of them).
    body = event_body("ns", Reason.DRILL_FAILED, "é" * 1000, datetime(2026, 1, 2, tzinfo=UTC))
    assert body["message"].endswith("…") and body["message"].startswith("é" * 500)
    assert len(body["message"].encode("utf-8")) <= MAX_MESSAGE
    short = "é" * 100
    assert event_body("ns", Reason.DRILL_FAILED, short)["message"] == short
    name = record_event(kube.api, namespace, Reason.DRILL_FAILED, "drill: " + "ü" * 3000)
    message = _events(kube, namespace)[name].message
    assert len(message.encode("utf-8")) <= MAX_MESSAGE and message.startswith("drill: üü")


def test_missing_namespace_is_a_clear_error(kube: Kube, unique: str) -> None:
    with pytest.raises(
        DrError, match=f"cannot record event RestoreCompleted in namespace gone-{unique}: 404"
    ):
        record_event(kube.api, f"gone-{unique}", Reason.RESTORE_COMPLETED, "done")


def test_forbidden_is_a_clear_error(kube: Kube, namespace: str) -> None:
    from kubernetes import config as kconfig

    if kube.cluster.external:
        pytest.skip("identities are only known for the local test cluster")
    bob = kconfig.new_client_from_config(config_file=kube.cluster.kubeconfig_for("bob"))
    try:
        with pytest.raises(DrError, match=f"in namespace {namespace}: 403"):
            record_event(bob, namespace, Reason.BACKUP_FAILED, "x")
    finally:
        bob.close()


def test_an_event_for_a_namespace_that_does_not_exist_is_skipped_quietly(
    kube: Kube, kube_client: KubeClient, namespace: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A restore that failed before creating its target namespace: a "cannot record event … 404"
    # warning was noise in an incident. Another problem (403) still warns; the others are recorded.
    gone = f"gone-{unique}"
    with pytest.raises(NamespaceNotFound):
        record_event(kube.api, gone, Reason.RESTORE_FAILED, "x")
    out = Emitter(Config(), kube_client, [])
    with caplog.at_level(logging.DEBUG, logger="dr.observe.run_hooks"):
        out.events([gone, namespace], Reason.RESTORE_FAILED, "restore of backup 1a2b3c4d failed: x")
    assert out.warnings == []
    # dr's own records: a test before this one in the worker may have left the root logger at
    # DEBUG (a CLI run with -vv), and the client library's request logs are captured too.
    ours = [r for r in caplog.records if r.name == "dr.observe.run_hooks"]
    assert [r.levelname for r in ours] == ["DEBUG"]
    assert ours[0].getMessage() == (
        f"cannot record event RestoreFailed in namespace {gone}: 404 Not Found: the namespace does not exist, "
        "no event"
    )
    assert [e.reason for e in _events(kube, namespace).values()] == ["RestoreFailed"]


def test_a_backup_with_warnings_names_the_first_redacted_within_the_size_limit(
    kube: Kube, kube_client: KubeClient, namespace: str
) -> None:
    # A warning may quote a hook's stderr: what looks like a secret is masked, as in the other
    # messages, and a long one is cut to the 1 KiB of an event, keeping the count and the size.
    first = "pre hook 'freeze' in db-0: exit code 1: mysql -u root --password=hunter2 " + "ü" * 2000
    snap = Snapshot(kind="backup", id="3f2a" * 16, name="shop", namespaces=[namespace], phase="Completed",
                    app={"warnings": [first, "namespace 'gone' does not exist"], "errors": []})  # fmt: skip
    outcome = BackupOutcome(snap, ResourceBackupResult(total=4), VolumePhase())
    request = BackupRequest(BackupScope(namespaces=[namespace]), "shop")
    assert backup_finished(Config(), kube_client, request, outcome, 2.0) == []
    (ev,) = _events(kube, namespace).values()
    assert (ev.reason, ev.type) == ("BackupCompletedWithWarnings", "Warning")
    assert ev.message.startswith(
        "backup 3f2a3f2a (shop) completed with 2 warning(s): 4 objects, 0 volume(s), 0 bytes in 2s; "
        "first: pre hook 'freeze' in db-0: exit code 1: mysql -u root --password=[REDACTED] üü"
    )
    assert "hunter2" not in ev.message
    assert ev.message.endswith("…") and len(ev.message.encode("utf-8")) <= MAX_MESSAGE


def test_a_first_warning_quoting_a_file_name_reaches_the_event_escaped(
    kube: Kube, kube_client: KubeClient, namespace: str
) -> None:
    # A mover's warning quotes a path from the volume, which anyone writing there names: an
    # escape sequence or a bidi override reached the Event as it was, and `kubectl get events`
    # printed it to the terminal (dr status escapes the same warning, dr.printable).
    first = "volume shop/data: mover: cannot read /data/a\x1b[2Jb/invoice_\u202etxt.exe: permission denied"
    snap = Snapshot(kind="backup", id="4e5f" * 16, name="shop", namespaces=[namespace], phase="Completed",
                    app={"warnings": [first], "errors": []})  # fmt: skip
    outcome = BackupOutcome(snap, ResourceBackupResult(total=1), VolumePhase())
    request = BackupRequest(BackupScope(namespaces=[namespace]), "shop")
    assert backup_finished(Config(), kube_client, request, outcome, 1.0) == []
    (ev,) = _events(kube, namespace).values()
    assert ev.reason == "BackupCompletedWithWarnings"
    assert "\x1b" not in ev.message and "\u202e" not in ev.message, ascii(ev.message)
    assert ev.message.endswith(
        "first: volume shop/data: mover: cannot read /data/a\\x1b[2Jb/invoice_\\u202etxt.exe: permission denied"
    )
