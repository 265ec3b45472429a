"""Copies of dr-config / the credentials Secret for restore movers: made, removed, leftovers swept."""

from __future__ import annotations

import base64
import copy
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest

from dr.cli.volume_access import USER_ANNOTATION, MoverConfigCopies
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


def _source(kube_client: KubeClient, unique: str, *spaces: str) -> tuple[MoverOptions, list[str]]:
    """dr's namespace with dr-config and the credentials Secret, and the app namespaces ``spaces``."""
    from dr.kube import apply as kapply

    dr_ns, names = f"drsys-{unique}", [f"{s}-{unique}" for s in spaces]
    for ns in (dr_ns, *names):
        make_namespace(kube_client, ns)
    kapply.create(kube_client, CONFIG_MAPS, _cm(dr_ns))
    kapply.create(kube_client, SECRETS, {"apiVersion": "v1", "kind": "Secret",
                                         "metadata": {"name": "creds", "namespace": dr_ns}, "stringData": {"K": "v"}})  # fmt: skip
    return MoverOptions(namespace=dr_ns, credentials_secret="creds"), names


def _registered(copy: dict[str, Any]) -> list[str]:
    """The runs registered on a copy of dr-config (its user annotations)."""
    return [k for k in copy["metadata"]["annotations"] if k.startswith(USER_ANNOTATION)]


def _only_user_then_gone(kube_client: KubeClient, namespace: str, run: MoverConfigCopies, why: str) -> None:
    """The copy of dr-config in ``namespace`` is there (``why``) with ``run`` its only registered user,
    and ``run``'s delete_all removes it."""
    present = get_object(kube_client, CONFIG_MAPS, namespace, "dr-config")
    assert present is not None, why
    assert _registered(present) == [run.user]
    assert run.delete_all() == []
    assert get_object(kube_client, CONFIG_MAPS, namespace, "dr-config") is None


def _after_first_read(
    kube_client: KubeClient,
    monkeypatch: pytest.MonkeyPatch,
    namespace: str,
    act: Callable[[], object],
    times: int = 1,
) -> KubeClient:
    """A client that runs ``act`` (another run's real requests) right after its first ``times`` reads of
    dr-config in ``namespace``: between a read and the write that follows, as a concurrent run would."""
    client = copy.copy(kube_client)
    pending = [act] * times

    def request(method: str, path: str, **kw: Any) -> tuple[int, bytes]:
        answer = KubeClient.request(kube_client, method, path, **kw)
        if method == "GET" and path == CONFIG_MAPS.object_path(namespace, "dr-config") and pending:
            pending.pop()()
        return answer

    monkeypatch.setattr(client, "request", request)
    return client


@pytest.mark.parametrize("first_out", ["creator", "finder"])
def test_the_last_run_out_deletes_a_shared_copy(kube_client: KubeClient, unique: str, first_out: str) -> None:
    """Run A makes the copy, run B finds it: whichever finishes first, the copy stays for the other."""
    mover, (app,) = _source(kube_client, unique, "app")
    a = MoverConfigCopies(kube_client, mover, "restore-a")
    b = MoverConfigCopies(kube_client, mover, "restore-b")
    a.ensure(app)
    b.ensure(app)
    first, last = (a, b) if first_out == "creator" else (b, a)
    assert first.delete_all() == []
    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is not None, "the other run's Job needs it"
    assert get_object(kube_client, SECRETS, app, "creds") is not None
    assert last.delete_all() == []
    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is None
    assert get_object(kube_client, SECRETS, app, "creds") is None


def test_two_runs_with_the_same_id_are_two_users(kube_client: KubeClient, unique: str) -> None:
    """``dr runbook verify`` of one runbook twice at once: both runs are named ``verify-<runbook>``."""
    mover, (app,) = _source(kube_client, unique, "app")
    a, b = (MoverConfigCopies(kube_client, mover, "verify-rb", credentials=False) for _ in range(2))
    a.ensure(app)
    b.ensure(app)
    assert a.delete_all() == []
    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is not None
    assert b.delete_all() == []
    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is None


def test_a_probe_run_leaves_the_copy_and_secret_of_a_restore(kube_client: KubeClient, unique: str) -> None:
    """A probe copy has no credentials; a restore that finds it adds the Secret and keeps both until it is done."""
    mover, (app,) = _source(kube_client, unique, "app")
    probe = MoverConfigCopies(kube_client, mover, "verify-rb", credentials=False)
    restore = MoverConfigCopies(kube_client, mover, "restore-a")
    probe.ensure(app)
    assert get_object(kube_client, SECRETS, app, "creds") is None
    restore.ensure(app)
    assert probe.delete_all() == []
    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is not None
    assert get_object(kube_client, SECRETS, app, "creds") is not None
    assert restore.delete_all() == []
    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is None
    assert get_object(kube_client, SECRETS, app, "creds") is None


def test_an_expired_registration_does_not_keep_the_copy(kube_client: KubeClient, unique: str) -> None:
    """A run killed with SIGKILL never unregisters: once its registration expires, it does not count, whether
    it made the copy (its registration goes when the next run registers) or registered on one in use."""
    mover, (made, joined) = _source(kube_client, unique, "made", "joined")
    long_ago = time.time() - mover.deadline.total_seconds() - 2 * 3600

    def killed() -> MoverConfigCopies:
        return MoverConfigCopies(kube_client, mover, "killed", now=long_ago, credentials=False)

    killed().ensure(made)
    a = MoverConfigCopies(kube_client, mover, "restore-a", credentials=False)
    b = MoverConfigCopies(kube_client, mover, "restore-b", credentials=False)
    a.ensure(made)
    b.ensure(made)
    assert a.delete_all() == []
    _only_user_then_gone(kube_client, made, b, "b still uses the copy")

    b.ensure(joined)
    killed().ensure(joined)
    assert b.delete_all() == []
    assert get_object(kube_client, CONFIG_MAPS, joined, "dr-config") is None


def test_a_dr_config_not_made_by_dr_is_never_deleted(
    kube_client: KubeClient, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's own dr-config appears just before a run's create, replaces a copy while the run is on, or
    replaces one between a run's read and its registration: used at most, never changed or deleted."""
    from dr.kube import apply as kapply

    def users_own(ns: str) -> None:
        kapply.delete(kube_client, CONFIG_MAPS, ns, "dr-config")
        kapply.create(kube_client, CONFIG_MAPS, _cm(ns, value="mine"))

    mover, (raced, replaced, swapped) = _source(kube_client, unique, "raced", "replaced", "swapped")
    client = _after_first_read(
        kube_client,
        monkeypatch,
        raced,
        lambda: kapply.create(kube_client, CONFIG_MAPS, _cm(raced, value="mine")),
    )
    a = MoverConfigCopies(client, mover, "restore-a", credentials=False)
    a.ensure(raced)
    a.ensure(replaced)
    users_own(replaced)
    MoverConfigCopies(kube_client, mover, "restore-x", credentials=False).ensure(swapped)
    b = MoverConfigCopies(
        _after_first_read(kube_client, monkeypatch, swapped, lambda: users_own(swapped)),
        mover, "restore-b", credentials=False,
    )  # fmt: skip
    b.ensure(swapped)
    assert a.delete_all() == [] and b.delete_all() == []
    for ns in (raced, replaced, swapped):
        mine = get_object(kube_client, CONFIG_MAPS, ns, "dr-config")
        assert mine is not None and mine["data"] == {"dr.yaml": "mine"}, ns
        assert not (mine["metadata"].get("annotations") or mine["metadata"].get("labels")), ns


def test_a_conflicting_delete_is_read_again(
    kube_client: KubeClient, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run B registers between A's read and A's delete: the delete's precondition fails, A reads again, keeps it."""
    mover, (app,) = _source(kube_client, unique, "app")
    a = MoverConfigCopies(kube_client, mover, "restore-a", credentials=False)
    b = MoverConfigCopies(kube_client, mover, "restore-b", credentials=False)
    a.ensure(app)
    a.kube = _after_first_read(kube_client, monkeypatch, app, lambda: b.ensure(app))
    assert a.delete_all() == []
    _only_user_then_gone(kube_client, app, b, "b registered before a's delete reached the server")


def test_two_runs_making_the_copy_at_once_both_use_it(
    kube_client: KubeClient, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B makes the copy between A's read (none there) and A's create: A's create fails (409), A registers on B's."""
    mover, (app,) = _source(kube_client, unique, "app")
    b = MoverConfigCopies(kube_client, mover, "restore-b", credentials=False)
    a = MoverConfigCopies(
        _after_first_read(kube_client, monkeypatch, app, lambda: b.ensure(app)),
        mover, "restore-a", credentials=False,
    )  # fmt: skip
    a.ensure(app)
    assert a.delete_all() == []
    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is not None, "b's Job needs it"
    assert b.delete_all() == []
    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is None


def test_a_registration_on_a_copy_deleted_meanwhile_makes_it_again(
    kube_client: KubeClient, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A, the last user, deletes the copy between B's read and B's registration: B's conditional patch fails
    (the copy is gone), B reads again and makes a new copy."""
    mover, (app,) = _source(kube_client, unique, "app")
    a = MoverConfigCopies(kube_client, mover, "restore-a", credentials=False)
    a.ensure(app)
    b = MoverConfigCopies(
        _after_first_read(kube_client, monkeypatch, app, a.delete_all),
        mover, "restore-b", credentials=False,
    )  # fmt: skip
    b.ensure(app)
    _only_user_then_gone(kube_client, app, b, "b's probe Job would not start")


def test_a_copy_that_keeps_changing_is_given_up(
    kube_client: KubeClient, unique: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Every write conflicts (another writer after each read): a bounded number of tries, then one line."""
    from dr.cli.volume_access import COPY_ATTEMPTS
    from dr.kube import apply as kapply

    mover, (app,) = _source(kube_client, unique, "app")

    def meddle() -> None:
        meddled.append(1)  # a new value each time: an unchanged object keeps its resourceVersion
        kapply.patch(
            kube_client,
            CONFIG_MAPS,
            app,
            "dr-config",
            {"metadata": {"annotations": {"n": str(len(meddled))}}},
        )

    meddled: list[int] = []
    a = MoverConfigCopies(kube_client, mover, "restore-a", credentials=False)
    a.ensure(app)
    b = MoverConfigCopies(
        _after_first_read(kube_client, monkeypatch, app, meddle, times=100),
        mover,
        "restore-b",
        credentials=False,
    )
    b.ensure(app)
    assert f"cannot register on the copy of ConfigMap dr-config in {app}: it kept changing" in caplog.text
    assert len(meddled) == COPY_ATTEMPTS
    assert b.delete_all() == [], "b never registered: nothing to remove"
    a.kube = b.kube
    assert a.delete_all() == [f"cannot delete the copy of ConfigMap dr-config in {app}: it kept changing"]
    kept = get_object(kube_client, CONFIG_MAPS, app, "dr-config")
    assert kept is not None and a.user in kept["metadata"]["annotations"]


def test_a_copy_whose_create_answer_was_lost_is_deleted(
    kube_client: KubeClient, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API server stores the copies but every attempt's answer is lost (a connection cut after the
    request went out): the run cannot tell, and its cleanup looks, so no copy of the credentials stays
    in the app's namespace."""
    from dr.kube.client import ApiError

    mover, (app,) = _source(kube_client, unique, "app")
    client = copy.copy(kube_client)

    def request(method: str, path: str, **kw: Any) -> tuple[int, bytes]:
        answer = KubeClient.request(kube_client, method, path, **kw)
        if method == "POST" and path in (CONFIG_MAPS.collection_path(app), SECRETS.collection_path(app)):
            raise ApiError(method, path, 0, "ConnectionError", "cannot reach the Kubernetes API: reset")
        return answer

    monkeypatch.setattr(client, "request", request)
    copies = MoverConfigCopies(client, mover, "restore-a")
    copies.ensure(app)
    assert get_object(kube_client, SECRETS, app, "creds") is not None, "stored, though its answer was lost"
    assert copies.delete_all() == []
    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is None
    assert get_object(kube_client, SECRETS, app, "creds") is None, "the credentials are not left behind"


def test_a_refused_create_leaves_nothing_to_clean_up(
    kube_client: KubeClient, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create the server refused (403, not stored): the cleanup finds nothing and says nothing."""
    from dr.kube.client import ApiError

    mover, (app,) = _source(kube_client, unique, "app")
    client = copy.copy(kube_client)

    def request(method: str, path: str, **kw: Any) -> tuple[int, bytes]:
        if method == "POST" and path == SECRETS.collection_path(app):
            raise ApiError(method, path, 403, "Forbidden", "secrets is forbidden")
        return KubeClient.request(kube_client, method, path, **kw)

    monkeypatch.setattr(client, "request", request)
    copies = MoverConfigCopies(client, mover, "restore-a")
    copies.ensure(app)
    assert get_object(kube_client, SECRETS, app, "creds") is None
    assert copies.delete_all() == []
    assert get_object(kube_client, CONFIG_MAPS, app, "dr-config") is None


def test_a_registration_brings_the_copy_up_to_date(
    kube_client: KubeClient, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The user rotates the credentials and edits dr-config while run A has the copies: run B, registering,
    brings both copies to the source's data (a key the source dropped goes too). The user's own Secret in
    another namespace stays as it is. No credential, old or new, in any log line."""
    from dr.kube import apply as kapply

    caplog.set_level(logging.DEBUG)
    mover, (app, user) = _source(kube_client, unique, "app", "user")
    dr_ns = mover.namespace
    old, dropped, new, users_own = (f"{w}-{secrets.token_hex(12)}" for w in ("old", "dropped", "new", "mine"))
    kapply.patch(kube_client, SECRETS, dr_ns, "creds", {"stringData": {"K": old, "GONE": dropped}})
    kapply.create(kube_client, SECRETS, {"apiVersion": "v1", "kind": "Secret",
                                         "metadata": {"name": "creds", "namespace": user}, "stringData": {"K": users_own}})  # fmt: skip
    a = MoverConfigCopies(kube_client, mover, "restore-a")
    a.ensure(app)
    copied = get_object(kube_client, SECRETS, app, "creds")
    assert copied is not None and set(copied["data"]) == {"K", "GONE"}

    kapply.patch(kube_client, SECRETS, dr_ns, "creds", {"data": {"GONE": None}, "stringData": {"K": new}})
    kapply.patch(kube_client, CONFIG_MAPS, dr_ns, "dr-config",
                 {"data": {"dr.yaml": "edited"}, "binaryData": {"ca.der": base64.b64encode(b"\x00ca").decode()}})  # fmt: skip
    b = MoverConfigCopies(kube_client, mover, "restore-b")
    b.ensure(app)
    b.ensure(user)

    secret = get_object(kube_client, SECRETS, app, "creds")
    assert secret is not None and secret["data"] == {"K": base64.b64encode(new.encode()).decode()}
    assert set(_registered(secret)) == {a.user, b.user}
    config = get_object(kube_client, CONFIG_MAPS, app, "dr-config")
    source = get_object(kube_client, CONFIG_MAPS, dr_ns, "dr-config")
    assert config is not None and source is not None
    assert (config["data"], config["binaryData"]) == (source["data"], source["binaryData"])
    mine = get_object(kube_client, SECRETS, user, "creds")
    assert mine is not None and mine["data"] == {"K": base64.b64encode(users_own.encode()).decode()}
    assert not (mine["metadata"].get("annotations") or mine["metadata"].get("labels"))
    assert f"brought the copy of Secret creds in {app} up to date with {dr_ns}/creds" in caplog.text

    assert a.delete_all() == [] and b.delete_all() == []
    assert get_object(kube_client, SECRETS, app, "creds") is None
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for value in (old, dropped, new, users_own):
        for form in (value, base64.b64encode(value.encode()).decode()):
            assert form not in logged and form not in caplog.text


def test_a_copy_of_a_secret_whose_type_changed_keeps_its_type(kube_client: KubeClient, unique: str) -> None:
    """The source Secret was made again with another type while run A has the copy: a Secret's type cannot
    change, so run B registers and brings the data up to date, and the copy keeps the type it had."""
    from dr.kube import apply as kapply

    mover, (app,) = _source(kube_client, unique, "app")
    a = MoverConfigCopies(kube_client, mover, "restore-a")
    a.ensure(app)
    kapply.delete(kube_client, SECRETS, mover.namespace, "creds")
    kapply.create(kube_client, SECRETS, {"apiVersion": "v1", "kind": "Secret", "type": "example.com/creds",
                                         "metadata": {"name": "creds", "namespace": mover.namespace},
                                         "stringData": {"K": "w"}})  # fmt: skip
    b = MoverConfigCopies(kube_client, mover, "restore-b")
    b.ensure(app)
    secret = get_object(kube_client, SECRETS, app, "creds")
    assert secret is not None and secret["type"] == "Opaque"
    assert secret["data"] == {"K": base64.b64encode(b"w").decode()}
    assert set(_registered(secret)) == {a.user, b.user}
    assert a.delete_all() == [] and b.delete_all() == []
    assert get_object(kube_client, SECRETS, app, "creds") is None


def test_a_run_that_may_not_read_the_source_still_registers_on_the_copy_there(
    kube_client: KubeClient, unique: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An identity that may use and register on the copies in the app's namespace but not read dr's own
    (a 403 on the source): it registers on the copy another run made, as it did before runs brought copies
    up to date, and leaves the data as it is; it is not "cannot copy", with the copy used unregistered."""
    mover, (app,) = _source(kube_client, unique, "app")
    a = MoverConfigCopies(kube_client, mover, "restore-a")
    a.ensure(app)
    client = copy.copy(kube_client)
    sources = {
        res.object_path(mover.namespace, name)
        for res, name in ((CONFIG_MAPS, "dr-config"), (SECRETS, "creds"))
    }

    def request(method: str, path: str, **kw: Any) -> tuple[int, bytes]:
        if method == "GET" and path in sources:
            return 403, b'{"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403}'
        return KubeClient.request(kube_client, method, path, **kw)

    monkeypatch.setattr(client, "request", request)
    caplog.set_level(logging.INFO)
    b = MoverConfigCopies(client, mover, "verify-b")
    b.ensure(app)
    assert "cannot copy" not in caplog.text
    for res, name in ((CONFIG_MAPS, "dr-config"), (SECRETS, "creds")):
        present = get_object(kube_client, res, app, name)
        assert present is not None and set(_registered(present)) == {a.user, b.user}, (res.kind, present)
    assert b.delete_all() == [] and a.delete_all() == []
    assert get_object(kube_client, SECRETS, app, "creds") is None
