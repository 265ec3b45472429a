"""Copies of dr-config / the credentials Secret for restore movers: made, removed, leftovers swept."""

from __future__ import annotations

import time

from dr.cli.volume_access import MoverConfigCopies
from dr.config import MoverOptions
from dr.kube.client import KubeClient
from dr.kube.collect import get_object
from dr.kube.jobs import CONFIG_MAPS, EXPIRES_LABEL, SECRETS, temporary_labels
from tests.kube_helpers import make_namespace


def _cm(ns: str, labels: dict[str, str] | None = None, value: str = "x") -> dict[str, object]:
    meta: dict[str, object] = {"name": "dr-config", "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"dr.yaml": value}}


def test_copies_are_removed_and_expired_leftovers_swept(kube_client: KubeClient, unique: str) -> None:
    from dr.kube import apply as kapply

    dr_ns, app, other, user, live, bad = (
        f"{p}-{unique}" for p in ("drsys", "app", "left", "user", "live", "bad")
    )
    for ns in (dr_ns, app, other, user, live, bad):
        make_namespace(kube_client, ns)
    kapply.create(kube_client, CONFIG_MAPS, _cm(dr_ns, value="repositories: []"))
    creds = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": dr_ns},
             "stringData": {"AWS_ACCESS_KEY_ID": "k"}}  # fmt: skip
    kapply.create(kube_client, SECRETS, creds)
    # a copy a crashed run left behind (expired), and a user's own dr-config (no dr label)
    kapply.create(kube_client, CONFIG_MAPS, _cm(other, temporary_labels("old", int(time.time()) - 60)))
    kapply.create(kube_client, CONFIG_MAPS, _cm(user, value="mine"))
    # the copy of a restore still running (not expired), and one with an unreadable expiry
    kapply.create(kube_client, CONFIG_MAPS, _cm(live, temporary_labels("other", int(time.time()) + 3600)))
    kapply.create(kube_client, CONFIG_MAPS, _cm(bad, {**temporary_labels("old", 0), EXPIRES_LABEL: "soon"}))

    mover = MoverOptions(namespace=dr_ns, credentials_secret="creds")
    copies = MoverConfigCopies(kube_client, mover, "run-1")
    for ns in (app, other, user, live, bad):
        copies.ensure(ns)
    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is not None
    assert get_object(kube_client, SECRETS, app, "creds") is not None
    assert copies.delete_all() == []

    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is None
    assert get_object(kube_client, SECRETS, app, "creds") is None
    assert get_object(kube_client, CONFIG_MAPS, other, "dr-config") is None, "the expired leftover goes too"
    mine = get_object(kube_client, CONFIG_MAPS, user, "dr-config")
    assert mine is not None and mine["data"] == {"dr.yaml": "mine"}, "a user's object is never touched"
    assert get_object(kube_client, CONFIG_MAPS, live, "dr-config") is not None, "another run's copy stays"
    assert get_object(kube_client, CONFIG_MAPS, bad, "dr-config") is not None, "unreadable expiry: left alone"


def test_without_credentials_only_dr_config_is_copied(kube_client: KubeClient, unique: str) -> None:
    """A data probe of ``dr runbook verify`` does not open the repository: no credentials in the app's namespace."""
    from dr.kube import apply as kapply

    dr_ns, app = f"drsys-{unique}", f"app-{unique}"
    for ns in (dr_ns, app):
        make_namespace(kube_client, ns)
    kapply.create(kube_client, CONFIG_MAPS, _cm(dr_ns))
    kapply.create(kube_client, SECRETS, {"apiVersion": "v1", "kind": "Secret",
                                         "metadata": {"name": "creds", "namespace": dr_ns}, "stringData": {"K": "v"}})  # fmt: skip
    copies = MoverConfigCopies(
        kube_client, MoverOptions(namespace=dr_ns, credentials_secret="creds"), "run-1", credentials=False
    )
    copies.ensure(app)
    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is not None
    assert get_object(kube_client, SECRETS, app, "creds") is None
    assert copies.delete_all() == []
    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is None
