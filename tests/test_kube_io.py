"""Reading, writing and waiting against the test cluster: pagination, create/apply/delete, waits."""

from __future__ import annotations

from pathlib import Path

import pytest

from dr.errors import DrError
from dr.kube import apply as kapply
from dr.kube.client import ApiError, KubeClient, connect
from dr.kube.collect import get_object, iter_pages, list_objects
from dr.kube.discovery import ApiResource
from dr.kube.wait import wait_for_deletion, wait_for_served
from tests import servers
from tests.kube_helpers import configmap, create
from tests.kube_stub_server import stub_api

CM = ApiResource("", "v1", "configmaps", "ConfigMap", True, frozenset({"get", "list", "create"}))


def test_lists_are_paginated_and_items_self_describing(kube_client: KubeClient, namespace: str) -> None:
    for i in range(5):
        create(kube_client, "configmaps", configmap(f"c{i}", {"i": str(i)}, {"odd": str(i % 2)}), namespace)
    pages = list(iter_pages(kube_client, CM, namespace=namespace, limit=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [p.last for p in pages] == [False, False, True]  # what a caller that stops early needs
    objs = [o for p in pages for o in p]
    assert [o["metadata"]["name"] for o in objs] == ["c0", "c1", "c2", "c3", "c4"]
    assert {(o["apiVersion"], o["kind"]) for o in objs} == {("v1", "ConfigMap")}
    odd = list_objects(kube_client, CM, namespace=namespace, label_selector="odd=1", limit=1)
    assert [o["metadata"]["name"] for o in odd] == ["c1", "c3"]


def test_get_object(kube_client: KubeClient, namespace: str) -> None:
    create(kube_client, "configmaps", configmap("one", {"a": "b"}), namespace)
    got = get_object(kube_client, CM, namespace, "one")
    assert got is not None and got["data"] == {"a": "b"}
    assert get_object(kube_client, CM, namespace, "two") is None


def test_forbidden_list_raises(k8s: servers.TestCluster, namespace: str) -> None:
    with connect(k8s.kubeconfig_for("bob")) as bob, pytest.raises(ApiError) as e:
        list(iter_pages(bob, CM, namespace=namespace))
    assert e.value.status == 403


def test_create_apply_delete(kube_client: KubeClient, namespace: str) -> None:
    cm = {**configmap("cfg", {"a": "1"}), "metadata": {"name": "cfg", "namespace": namespace}}
    dry = kapply.create(kube_client, CM, cm, dry_run=True)
    assert dry["metadata"]["name"] == "cfg"
    assert get_object(kube_client, CM, namespace, "cfg") is None  # a dry run stores nothing

    created = kapply.create(kube_client, CM, cm)
    with pytest.raises(ApiError) as e:
        kapply.create(kube_client, CM, cm)
    assert e.value.already_exists

    applied = kapply.apply(kube_client, CM, {**cm, "data": {"a": "2", "b": "3"}})
    assert applied["data"] == {"a": "2", "b": "3"}
    assert applied["metadata"]["uid"] == created["metadata"]["uid"]
    assert any(
        m["manager"] == "dr" and m["operation"] == "Apply" for m in applied["metadata"]["managedFields"]
    )

    with pytest.raises(ApiError) as e:
        kapply.delete(kube_client, CM, namespace, "cfg", uid="not-its-uid")
    assert e.value.status == 409  # the uid precondition protects a replaced object
    assert kapply.delete(kube_client, CM, namespace, "cfg", uid=created["metadata"]["uid"]) is True
    assert kapply.delete(kube_client, CM, namespace, "cfg") is False


def test_wait_for_deletion_names_the_finalizer_that_blocks_it(
    kube_client: KubeClient, namespace: str
) -> None:
    stuck = {**configmap("stuck", {}), "metadata": {"name": "stuck", "finalizers": ["example.com/hold"]}}
    create(kube_client, "configmaps", stuck, namespace)
    assert kapply.delete(kube_client, CM, namespace, "stuck")
    with pytest.raises(DrError) as e:
        wait_for_deletion(kube_client, CM, namespace, "stuck", timeout=0.3)
    assert str(e.value) == (
        f"timed out after 0 s waiting for configmaps {namespace}/stuck to be deleted (finalizers: example.com/hold)"
    )
    kube_client.call(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/configmaps/stuck",
        body={"metadata": {"finalizers": None}},
        content_type="application/merge-patch+json",
    )
    wait_for_deletion(kube_client, CM, namespace, "stuck", timeout=10)
    assert get_object(kube_client, CM, namespace, "stuck") is None


def test_wait_for_a_type_that_is_never_served(kube_client: KubeClient) -> None:
    with pytest.raises(
        DrError, match=r"^timed out after 0 s waiting for gadgets.nope.example.com/v1 to be served$"
    ):
        wait_for_served(kube_client, "nope.example.com", "v1", "gadgets", timeout=0.2)


def test_an_expired_continue_token_is_replaced_with_a_warning(tmp_path: Path) -> None:
    """The test cluster never expires a list snapshot; a stand-in server answers 410 like etcd compaction does."""
    page = {"kind": "ConfigMapList", "metadata": {"continue": "t1"}, "items": [{"metadata": {"name": "a"}}]}
    expired = {"kind": "Status", "reason": "Expired", "code": 410, "metadata": {"continue": "t2"},
               "message": "The provided continue parameter is too old"}  # fmt: skip
    last = {"kind": "ConfigMapList", "metadata": {}, "items": [{"metadata": {"name": "b"}}]}
    with stub_api() as api:
        api.script("/api/v1/namespaces/x/configmaps", (200, page, {}), (410, expired, {}), (200, last, {}))
        kc = connect(api.kubeconfig(tmp_path))
        warnings: list[str] = []
        pages = list(iter_pages(kc, CM, namespace="x", limit=1, on_warning=warnings.append))
    assert [[o["metadata"]["name"] for o in p] for p in pages] == [["a"], ["b"]]
    queries = [path.split("?", 1)[1] for _, path, _ in api.requests]
    assert queries == ["limit=1", "limit=1&continue=t1", "limit=1&continue=t2"]
    assert warnings == ["configmaps: list snapshot expired while paging; continued on current data"]
