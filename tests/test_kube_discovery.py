"""Discovery: the test cluster's types, CRDs, type names as users write them, and a group that fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from dr.kube.client import ApiError, KubeClient, RetryPolicy, connect
from dr.kube.discovery import ApiResource, discover, match_specs
from tests.kube_helpers import create_crd
from tests.kube_stub_server import stub_api


def test_preferred_versions_and_resources(kube_client: KubeClient) -> None:
    disc = discover(kube_client)
    assert disc.warnings == []
    assert disc.preferred["autoscaling"] == "v2" and disc.preferred[""] == "v1"
    deploy = disc.lookup("apps", "v1", "deployments")
    assert deploy is not None
    assert (deploy.kind, deploy.namespaced, deploy.short_names) == ("Deployment", True, ("deploy",))
    assert deploy.supports("list", "get", "create")
    assert deploy.collection_path("a") == "/apis/apps/v1/namespaces/a/deployments"
    assert deploy.object_path("a", "web") == "/apis/apps/v1/namespaces/a/deployments/web"
    ns = disc.lookup("", "v1", "namespaces")
    assert ns is not None and ns.object_path("ignored", "x") == "/api/v1/namespaces/x"
    # Subresources are not types.
    assert not any("/" in r.plural for r in disc.resources)
    # Create-only review types are discovered but cannot be listed.
    sar = disc.lookup("authorization.k8s.io", "v1", "subjectaccessreviews")
    assert sar is not None and not sar.supports("list")


@pytest.mark.parametrize(
    "spec", ["deployments", "deployment", "Deployment", "DEPLOY", "deployments.apps", "Deployment.apps"]
)
def test_type_names_as_users_write_them(kube_client: KubeClient, spec: str) -> None:
    found = discover(kube_client).find(spec)
    assert [(r.group, r.plural) for r in found] == [("apps", "deployments")]


def test_type_name_matching() -> None:
    events = ApiResource("", "v1", "events", "Event", True, singular="event", short_names=("ev",))
    new_events = ApiResource("events.k8s.io", "v1", "events", "Event", True, singular="event")
    matched, unknown = match_specs(["events", "ev,nope", "events.events.k8s.io"], [events, new_events])
    assert matched == {("", "events"), ("events.k8s.io", "events")}
    assert unknown == ["nope"]
    assert not events.matches("events.apps")


def test_crds_are_discovered(kube_client: KubeClient, unique: str) -> None:
    group = f"d{unique}.example.com"
    create_crd(kube_client, group)
    try:
        disc = discover(kube_client)
        widgets = disc.lookup(group, "v1", "widgets")
        assert widgets is not None and widgets.kind == "Widget" and widgets.namespaced
        assert disc.find(f"widget.{group}") == [widgets]
    finally:
        kube_client.request(
            "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}"
        )


APIS = {
    "kind": "APIGroupList",
    "groups": [
        {"name": "apps", "versions": [{"version": "v1"}], "preferredVersion": {"version": "v1"}},
        {
            "name": "metrics.k8s.io",
            "versions": [{"version": "v1beta1"}],
            "preferredVersion": {"version": "v1beta1"},
        },
        {
            "name": "example.com",
            "versions": [{"version": "v2"}, {"version": "v1"}],
            "preferredVersion": {"version": "v2"},
        },
    ],
}


def resource_list(*names: str) -> dict[str, object]:
    return {
        "resources": [
            {"name": n, "kind": n.title(), "namespaced": True, "verbs": ["get", "list"]} for n in names
        ]
    }


def test_a_group_whose_discovery_fails_is_a_warning(tmp_path: Path) -> None:
    """An aggregated API with its backend down (503) must not fail discovery: a stand-in server answers."""
    with stub_api() as api:
        api.script("/api", (200, {"versions": ["v1"]}, {}))
        api.script("/api/v1", (200, resource_list("pods", "pods/log"), {}))
        api.script("/apis", (200, APIS, {}))
        api.script("/apis/apps/v1", (200, resource_list("deployments"), {}))
        api.script(
            "/apis/metrics.k8s.io/v1beta1",
            (503, {"reason": "ServiceUnavailable", "message": "no endpoints"}, {}),
        )
        api.script("/apis/example.com/v2", (200, resource_list("things"), {}))
        api.script("/apis/example.com/v1", (200, resource_list("things", "olds"), {}))
        kc = connect(api.kubeconfig(tmp_path))
        kc.retry = RetryPolicy(attempts=1)
        disc = discover(kc)
        assert sorted((r.group, r.version, r.plural) for r in disc.resources) == [
            ("", "v1", "pods"),
            ("apps", "v1", "deployments"),
            ("example.com", "v1", "olds"),
            ("example.com", "v1", "things"),
            ("example.com", "v2", "things"),
        ]
        # Each type once, in the preferred version where served there: `olds`, served only in
        # example.com/v1 (v2 preferred), is a type to back up all the same.
        assert sorted((r.group, r.version, r.plural) for r in disc.preferred_resources()) == [
            ("", "v1", "pods"),
            ("apps", "v1", "deployments"),
            ("example.com", "v1", "olds"),
            ("example.com", "v2", "things"),
        ]
        assert disc.warnings == [
            "API group metrics.k8s.io/v1beta1: discovery failed, its resources are skipped: "
            "503 ServiceUnavailable: no endpoints"
        ]
        assert "metrics.k8s.io" not in disc.preferred
        assert disc.failed_groups == {"metrics.k8s.io"}

        every = discover(kc, all_versions=True)
        assert every.lookup("example.com", "v1", "olds") is not None
        assert every.versions_of("example.com", "things") == ["v2", "v1"]
        assert sorted(
            (r.plural, r.version) for r in every.preferred_resources() if r.group == "example.com"
        ) == [
            ("olds", "v1"),
            ("things", "v2"),
        ]

        # Without the core API there is nothing to back up: that is an error, not a warning.
        api.script("/api/v1", (500, {"reason": "InternalError", "message": "boom"}, {}))
        with pytest.raises(ApiError, match=r"^GET /api/v1: 500 InternalError: boom$"):
            discover(kc)
