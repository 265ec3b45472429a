"""What a restore asks the API server to learn what exists: a paged LIST per type and namespace.

Counts requests (as tests/test_scale.py counts store requests): a restore of a
namespace of 3,001 objects in place made 3,001 GETs, one per object (figures in
bench/RESULTS.md, "Scale (helper pass, 2026-11-30)"). Against the test cluster.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from dr.backup.resources import backup_resources
from dr.backup.scope import BackupScope
from dr.kube.client import KubeClient, connect
from dr.kube.discovery import discover
from dr.kube.objects import ResourceItem
from dr.restore import existing
from dr.restore.existing import _slim
from dr.restore.plan import RestoreOptions
from dr.restore.resources import REPLACED_DELETED, restore_resources
from dr.restore.transforms import DATA_PENDING_ANNOTATION
from tests import servers
from tests.kube_helpers import ListSink, configmap, create, make_namespace

RBAC = "rbac.authorization.k8s.io/v1"
PAGE = 10
OBJECT_PATH = re.compile(r"/namespaces/[^/]+/(configmaps|secrets)/[^/]+$")
LIST_PATH = re.compile(r"/namespaces/[^/]+/(configmaps|secrets)$")


@pytest.fixture
def app(kube_client: KubeClient, unique: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A namespace of 25 ConfigMaps and 25 Secrets; listings in pages of ``PAGE``."""
    monkeypatch.setattr(existing, "LIST_PAGE_SIZE", PAGE)
    ns = f"app-{unique}"
    make_namespace(kube_client, ns)
    for i in range(25):
        create(kube_client, "configmaps", configmap(f"cm-{i:02d}", {"i": str(i)}), ns)
        create(kube_client, "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"s-{i:02d}"},
                                        "data": {"k": "dg=="}}, ns)  # fmt: skip
    try:
        yield ns
    finally:
        kube_client.request("DELETE", f"/api/v1/namespaces/{ns}")


def backup(
    kc: KubeClient, ns: str, resources: tuple[str, ...] = ("configmaps", "secrets")
) -> list[tuple[ResourceItem, dict[str, Any]]]:
    sink = ListSink()
    assert backup_resources(kc, BackupScope(namespaces=[ns]), sink).phase == "Completed"
    return [(i, o) for i, o in sink.items if i.resource in resources]


def count_requests(kc: KubeClient, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The requests ``kc`` sends from now on to ConfigMaps and Secrets: "GET one", "LIST", "POST", …"""
    counts: Counter[str] = Counter()
    real = kc.request

    def request(method: str, path: str, **kw: Any) -> tuple[int, bytes]:
        if OBJECT_PATH.search(path):
            counts[f"{method} one"] += 1
        elif LIST_PATH.search(path):
            counts["LIST" if method == "GET" else method] += 1
        return real(method, path, **kw)

    monkeypatch.setattr(kc, "request", request)
    return counts


def test_an_in_place_dry_run_lists_each_type_once_not_each_object(
    kube_client: KubeClient, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = backup(kube_client, app)
    assert len(items) == 50
    kube_client.request("DELETE", f"/api/v1/namespaces/{app}/secrets/s-07")
    create(kube_client, "configmaps", configmap("cm-99", {"not": "restored"}), app)  # listed, not kept
    kube_client.call("PATCH", f"/api/v1/namespaces/{app}/configmaps/cm-03", body=b'{"data": {"i": "x"}}',
                     content_type="application/merge-patch+json")  # fmt: skip
    requests = count_requests(kube_client, monkeypatch)
    result = restore_resources(
        kube_client, items, RestoreOptions(dry_run=True, existing="update"), "bk", "rs"
    )
    assert result.counts == {"unchanged": 48, "would-create": 1, "would-update": 1}
    by_name = {r.item.name: r for r in result.items}
    assert by_name["s-07"].outcome == "would-create"
    assert by_name["cm-03"].diff == ['data.i: "x" → "3"']
    # 27 ConfigMaps (with kube-root-ca.crt and cm-99) and 24 Secrets, 10 a page: 3 + 3 LISTs.
    assert requests == {"LIST": 6}


def test_an_in_place_restore_writes_only_what_differs(
    kube_client: KubeClient, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = backup(kube_client, app)
    kube_client.request("DELETE", f"/api/v1/namespaces/{app}/secrets/s-07")
    kube_client.call("PATCH", f"/api/v1/namespaces/{app}/configmaps/cm-03", body=b'{"data": {"i": "x"}}',
                     content_type="application/merge-patch+json")  # fmt: skip
    kube_client.call("PATCH", f"/api/v1/namespaces/{app}/configmaps/cm-04", body=b'{"data": {"i": "y"}}',
                     content_type="application/merge-patch+json")  # fmt: skip
    requests = count_requests(kube_client, monkeypatch)
    options = RestoreOptions(existing="recreate", workers=4)
    result = restore_resources(kube_client, items, options, "bk", "rs")
    assert result.counts == {"unchanged": 47, "created": 1, "recreated": 2}
    # Listed, then: the missing Secret created, each changed ConfigMap deleted (uid from the
    # listing), waited for (GET until 404) and created; no create-then-GET for the 47 unchanged,
    # whose listed copies are checked by listing both types again at the end of the stage.
    assert requests["LIST"] == 6 + 6
    assert requests["POST"] == 3 and requests["DELETE one"] == 2
    assert requests["GET one"] <= 4, requests
    assert kube_client.get(f"/api/v1/namespaces/{app}/configmaps/cm-03")["data"] == {"i": "3"}
    assert kube_client.get(f"/api/v1/namespaces/{app}/secrets/s-07")["data"] == {"k": "dg=="}

    again = restore_resources(kube_client, items, options, "bk", "rs-2")
    assert again.counts == {"unchanged": 50}


def test_a_few_objects_in_a_big_namespace_stop_the_listing_early(
    kube_client: KubeClient, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three ConfigMaps restored into a namespace of 27: at most 2 pages listed, the rest read by name."""
    items = [(i, o) for i, o in backup(kube_client, app) if i.name in ("cm-00", "cm-20", "cm-24")]
    kube_client.request("DELETE", f"/api/v1/namespaces/{app}/configmaps/cm-24")
    requests = count_requests(kube_client, monkeypatch)
    result = restore_resources(kube_client, items, RestoreOptions(dry_run=True), "bk", "rs")
    assert {r.item.name: r.outcome for r in result.items} == {
        "cm-00": "unchanged",  # in the first page
        "cm-20": "unchanged",  # past the pages listed: read by name
        "cm-24": "would-create",
    }
    assert requests == {"LIST": 2, "GET one": 2}


def test_one_object_of_a_type_is_read_by_name(
    kube_client: KubeClient, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [(i, o) for i, o in backup(kube_client, app) if i.name in ("cm-00", "s-00")]
    requests = count_requests(kube_client, monkeypatch)
    result = restore_resources(kube_client, items, RestoreOptions(dry_run=True), "bk", "rs")
    assert result.counts == {"unchanged": 2}
    assert requests == {"GET one": 2}


def test_without_the_right_to_list_objects_are_read_by_name_with_the_same_messages(
    kube_client: KubeClient, k8s: servers.TestCluster, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alice may get ConfigMaps in the namespace (not list them), nothing else."""
    items = backup(kube_client, app)
    kube_client.request("DELETE", f"/api/v1/namespaces/{app}/configmaps/cm-05")
    create(kube_client, "roles", {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "cm-reader"},
                                  "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}, app)  # fmt: skip
    create(kube_client, "rolebindings", {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": "alice"},
                                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
                                         "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]}, app)  # fmt: skip
    with connect(k8s.kubeconfig_for("alice")) as alice:
        requests = count_requests(alice, monkeypatch)
        result = restore_resources(alice, items, RestoreOptions(dry_run=True), "bk", "rs")
    assert result.counts == {"unchanged": 24, "would-create": 1, "failed": 25}
    assert {r.item.name for r in result.items if r.outcome == "would-create"} == {"cm-05"}
    failure = next(r for r in result.failures if r.item.name == "s-00")
    assert failure.reason == (
        f'403 Forbidden: secrets "s-00" is forbidden: User "alice" cannot get resource "secrets" in API group "" '
        f'in the namespace "{app}"'
    )
    # One refused LIST per type, then every object by name, as without listings.
    assert requests == {"LIST": 2, "GET one": 50}


def test_a_kept_object_drops_only_its_status_and_managed_fields() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "uid": "u1", "labels": {"a": "b"}, "managedFields": [{"manager": "x"}]},
        "spec": {"volumeName": "pv-1"},
        "status": {"phase": "Bound"},
    }
    assert _slim(obj) == (
        b'{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data","uid":"u1",'
        b'"labels":{"a":"b"}},"spec":{"volumeName":"pv-1"}}'
    )


def test_an_object_deleted_or_changed_after_the_listing_is_restored_as_without_listings(
    kube_client: KubeClient, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing is read when the first ConfigMap is restored; then cm-24 is deleted and cm-23
    changed. A create (409) and GET per object would create the one and update the other: the
    listing's copy says both are as backed up."""
    items = [(i, o) for i, o in backup(kube_client, app) if i.resource == "configmaps"]
    changed: list[str] = []

    def progress(result: Any, done: int, total: int) -> None:
        if not changed:  # after the first object: the listing has been read
            kube_client.request("DELETE", f"/api/v1/namespaces/{app}/configmaps/cm-24")
            kube_client.call("PATCH", f"/api/v1/namespaces/{app}/configmaps/cm-23", body=b'{"data": {"i": "x"}}',
                             content_type="application/merge-patch+json")  # fmt: skip
            changed.append(result.item.name)

    requests = count_requests(kube_client, monkeypatch)
    result = restore_resources(
        kube_client, items, RestoreOptions(existing="update", workers=1), "bk", "rs", progress
    )
    assert changed and changed[0] not in ("cm-23", "cm-24")
    outcomes = {r.item.name: r.outcome for r in result.items}
    assert (outcomes["cm-24"], outcomes["cm-23"]) == ("created", "updated")
    assert result.counts == {"unchanged": 23, "created": 1, "updated": 1}
    assert kube_client.get(f"/api/v1/namespaces/{app}/configmaps/cm-24")["data"] == {"i": "24"}
    assert kube_client.get(f"/api/v1/namespaces/{app}/configmaps/cm-23")["data"] == {"i": "23"}
    # One listing, one to confirm what it said, and the two objects again by create (409) and GET.
    assert requests["LIST"] == 6, requests


def test_listed_copies_are_checked_by_name_when_the_collection_can_no_longer_be_listed(
    kube_client: KubeClient, k8s: servers.TestCluster, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alice may list ConfigMaps when the restore starts, not when it checks what it left alone."""
    items = [(i, o) for i, o in backup(kube_client, app) if i.resource == "configmaps"]
    role = {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "cm-restorer"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]}]}  # fmt: skip
    create(kube_client, "roles", role, app)
    create(kube_client, "rolebindings", {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": "alice"},
                                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-restorer"},
                                         "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]}, app)  # fmt: skip
    changed: list[str] = []

    def progress(result: Any, done: int, total: int) -> None:
        if not changed:  # the listing has been read: no more listing, and cm-24 is gone
            kube_client.call("PATCH", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{app}/roles/cm-restorer",
                             body=b'{"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create"]}]}',
                             content_type="application/merge-patch+json")  # fmt: skip
            kube_client.request("DELETE", f"/api/v1/namespaces/{app}/configmaps/cm-24")
            changed.append(result.item.name)

    with connect(k8s.kubeconfig_for("alice")) as alice:
        requests = count_requests(alice, monkeypatch)
        result = restore_resources(alice, items, RestoreOptions(workers=1), "bk", "rs", progress)
    assert result.counts == {"unchanged": 24, "created": 1}
    assert {r.item.name for r in result.items if r.outcome == "created"} == {"cm-24"}
    assert kube_client.get(f"/api/v1/namespaces/{app}/configmaps/cm-24")["data"] == {"i": "24"}
    # 3 pages listed; the check's LIST refused, then each object left alone read by name (25),
    # and cm-24 created.
    assert requests["LIST"] == 4 and requests["GET one"] == 25 and requests["POST"] == 1, requests


def test_listings_keep_at_most_their_budget_and_let_go_of_what_was_looked_up(
    kube_client: KubeClient, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A namespace of 50,000 objects of 2 KB was 115 MiB of listed copies, held to the stage's end.
    With room for about 5 copies: those answer from the listing, the others are read by name."""
    items = backup(kube_client, app)
    one = len(_slim(next(o for i, o in items if i.name == "cm-00"))) + existing.KEPT_OVERHEAD + 20
    monkeypatch.setattr(existing, "MAX_KEPT_BYTES", 5 * one)
    kube_client.request("DELETE", f"/api/v1/namespaces/{app}/secrets/s-07")
    requests = count_requests(kube_client, monkeypatch)
    result = restore_resources(kube_client, items, RestoreOptions(dry_run=True, workers=1), "bk", "rs")
    assert result.counts == {"unchanged": 49, "would-create": 1}
    # Each type: one page, its first (at most) 5 objects from it, the other 20 by name.
    assert requests["LIST"] == 2 and requests["GET one"] == 40, requests

    restores = {("", "configmaps", app, f"cm-{i:02d}") for i in range(25)}
    objects = existing.ExistingObjects(kube_client, {("", "configmaps", app): 25},
                                       lambda *key: key in restores)  # fmt: skip
    monkeypatch.setattr(existing, "MAX_KEPT_BYTES", 10**9)
    cms = next(i for i, _ in items if i.resource == "configmaps")
    res = discover(kube_client).lookup("", cms.version, "configmaps")
    assert res is not None
    assert objects.lookup(res, app, "cm-00")[1] is not None
    assert 0 < objects.kept_bytes < 24 * 4 * one
    for i in range(1, 25):
        assert objects.lookup(res, app, f"cm-{i:02d}")[1] is not None
    assert objects.kept_bytes == 0  # each object is looked up once: let go once it was


def test_an_object_replaced_after_the_listing_is_recreated_not_failed(
    kube_client: KubeClient, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cm-23 differs when listed, then is replaced (a new uid): the delete with the listed uid is
    refused (409); read by name, as without listings, it is recreated."""
    items = [(i, o) for i, o in backup(kube_client, app) if i.resource == "configmaps"]
    path = f"/api/v1/namespaces/{app}/configmaps/cm-23"
    kube_client.call("PATCH", path, body=b'{"data": {"i": "x"}}', content_type="application/merge-patch+json")
    replaced: list[str] = []

    def progress(result: Any, done: int, total: int) -> None:
        if not replaced:  # after the first object: the listing has been read
            kube_client.request("DELETE", path)
            create(kube_client, "configmaps", configmap("cm-23", {"i": "y"}), app)
            replaced.append(result.item.name)

    result = restore_resources(
        kube_client, items, RestoreOptions(existing="recreate", workers=1), "bk", "rs", progress
    )
    assert replaced and replaced[0] != "cm-23"
    assert [(r.item.name, r.outcome, r.reason) for r in result.failures] == []
    assert {r.item.name: r.outcome for r in result.items}["cm-23"] == "recreated"
    assert kube_client.get(path)["data"] == {"i": "23"}


def test_an_object_whose_deletion_began_after_the_listing_is_replaced_once_gone(
    kube_client: KubeClient, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cm-23 differs when listed, then is deleted but held by a finalizer (a claim still in use);
    read by name it is being deleted: the restore waits until it is gone and creates it. Updating
    it would leave nothing once the finalizer goes."""
    items = [(i, o) for i, o in backup(kube_client, app) if i.resource == "configmaps"]
    path = f"/api/v1/namespaces/{app}/configmaps/cm-23"
    kube_client.call("PATCH", path, body=b'{"data": {"i": "x"}}', content_type="application/merge-patch+json")
    held: list[threading.Timer] = []

    def release() -> None:
        kube_client.call("PATCH", path, body=b'{"metadata": {"finalizers": null}}',
                         content_type="application/merge-patch+json")  # fmt: skip

    def progress(result: Any, done: int, total: int) -> None:
        if not held:  # after the first object: the listing has been read
            kube_client.call("PATCH", path, body=b'{"metadata": {"finalizers": ["dr.test/hold"]}}',
                             content_type="application/merge-patch+json")  # fmt: skip
            kube_client.request("DELETE", path)
            held.append(threading.Timer(1.0, release))
            held[0].start()

    try:
        result = restore_resources(
            kube_client, items, RestoreOptions(existing="update", workers=1), "bk", "rs", progress
        )
    finally:
        for timer in held:
            timer.join()
    cm23 = next(r for r in result.items if r.item.name == "cm-23")
    assert (cm23.outcome, cm23.reason) == ("created", REPLACED_DELETED)
    assert kube_client.get(path)["data"] == {"i": "23"}
    assert not kube_client.get(path)["metadata"].get("deletionTimestamp")


def test_a_data_claim_deleted_after_the_listing_is_created_marked_for_its_data(
    kube_client: KubeClient, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two claims whose data the restore brings back; data-1 differs when listed, then is deleted.
    Updated from the listed copy (no mark), the apply created an empty claim the data step skips;
    created, as read by name, it carries the data-pending mark."""
    ns = f"pvcs-{unique}"
    make_namespace(kube_client, ns)
    try:
        for name in ("data-0", "data-1"):
            create(kube_client, "persistentvolumeclaims", {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": name, "labels": {"app": "db"}},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}, ns)  # fmt: skip
        items = [(i, o) for i, o in backup(kube_client, ns, ("persistentvolumeclaims",))]
        path = f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data-1"
        kube_client.call("PATCH", path, body=b'{"metadata": {"labels": {"app": "x"}}}',
                         content_type="application/merge-patch+json")  # fmt: skip
        deleted: list[str] = []

        def progress(result: Any, done: int, total: int) -> None:
            if result.item.name == "data-0" and not deleted:  # the listing has been read
                kube_client.request("DELETE", path)
                deleted.append(path)

        data = {f"{ns}/data-0": "snap-0", f"{ns}/data-1": "snap-1"}
        result = restore_resources(kube_client, items, RestoreOptions(existing="update", workers=1), "bk", "rs",
                                   progress, data_volumes=data)  # fmt: skip
        assert deleted
        assert {r.item.name: r.outcome for r in result.items}["data-1"] == "created"
        annotations = kube_client.get(path)["metadata"].get("annotations") or {}
        assert annotations.get(DATA_PENDING_ANNOTATION) == "snap-1"
    finally:
        kube_client.request("DELETE", f"/api/v1/namespaces/{ns}")
