"""Key slots as read from ``keys/`` (FORMAT.md §3.1): unauthenticated input, read one at a time.

A damaged or planted slot object must never keep the repository from opening
with another slot, and must show in ``dr key list`` so ``dr key remove`` can
delete it (the CLI side is in test_cli_key.py).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dr.crypto.keyring import KeySlot, MasterKey, new_slot
from dr.crypto.providers.base import Wrapped
from dr.crypto.providers.local import LocalKeyProvider
from dr.crypto.providers.registry import open_provider
from dr.errors import DrError, InvalidInput
from dr.repo.repository import Repository, read_slots
from tests.repo_helpers import init_repo, make_store, open_with

REPO_ID = "ab" * 32


def _slot_doc(**over: object) -> bytes:
    doc: dict[str, object] = {
        "format": 1,
        "repository": REPO_ID,
        "provider": "local:///k",
        "keyVersion": None,
        "meta": {},
        "created": "2020-11-27T03:00:00Z",
        "wrapped": "AAAA",
    }
    doc.update(over)
    return json.dumps(doc).encode()


# Each of these once raised something other than DrError out of list_slots / unlock,
# and with it made the whole repository unopenable.
BAD_SLOTS: dict[str, bytes] = {
    "list": b"[]",
    "null": b"null",
    "number": b"7",
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "binary": bytes(range(256)),
    "no-fields": b"{}",
    "provider-not-str": _slot_doc(provider=["x"]),
    "wrapped-not-b64": _slot_doc(wrapped="!!!"),
    "wrapped-not-str": _slot_doc(wrapped=12),
    "created-not-time": _slot_doc(created="yesterday"),
    "created-int": _slot_doc(created=5),
    "meta-list": _slot_doc(meta=[1, 2]),
    "meta-values": _slot_doc(meta={"a": {"b": 1}}),
    "version-dict": _slot_doc(keyVersion={"v": 1}),
    "format-list": _slot_doc(format=[1] * 10_000),
}


@pytest.mark.parametrize("name", sorted(BAD_SLOTS))
def test_a_malformed_slot_is_a_drerror_naming_it(name: str) -> None:
    with pytest.raises(DrError, match=r"^key slot s1: (malformed|unsupported slot format)") as e:
        KeySlot.from_json("s1", BAD_SLOTS[name])
    assert len(e.value.message) < 200


@given(st.binary(max_size=300) | st.recursive(st.none() | st.integers() | st.text(max_size=8),
       lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4)
       ).map(lambda v: json.dumps(v).encode()))  # fmt: skip
def test_any_slot_object_parses_or_is_a_drerror(raw: bytes) -> None:
    try:
        KeySlot.from_json("s1", raw)
    except DrError as e:
        assert str(e).startswith("key slot s1: ")  # the caller reports it by its name


_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
)


# The documents above almost never get past the format check: here each field of a good slot
# in turn holds anything (or is gone), so every later check meets bad input too.
@given(
    st.sampled_from(["format", "repository", "provider", "keyVersion", "meta", "created", "wrapped"]),
    st.none() | _ANY_JSON.map(lambda v: ("value", v)),
)
def test_a_slot_with_any_field_bad_parses_or_is_a_drerror(
    field: str, value: tuple[str, object] | None
) -> None:
    doc = json.loads(_slot_doc())
    if value is None:
        del doc[field]
    else:
        doc[field] = value[1]
    try:
        slot = KeySlot.from_json("s1", json.dumps(doc).encode())
    except DrError as e:
        assert str(e).startswith("key slot s1: ")
    else:  # accepted: then it is the slot it says, and writes back as it was read
        assert KeySlot.from_json("s1", slot.to_json()) == slot


@given(
    st.binary(min_size=1, max_size=200),
    st.none() | st.text(max_size=10),
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
    st.datetimes(timezones=st.just(UTC), min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1)),
)
def test_slot_roundtrip(
    ciphertext: bytes, version: str | None, meta: dict[str, str], created: datetime
) -> None:
    slot = KeySlot("0f" * 16, REPO_ID, "vault://transit/keys/dr", Wrapped(ciphertext, version, meta), created)
    assert KeySlot.from_json(slot.id, slot.to_json()) == slot


def test_created_is_normalised_to_utc_so_slots_sort() -> None:
    naive = KeySlot.from_json("a", _slot_doc(created="2026-01-01T05:00:00"))
    offset = KeySlot.from_json("b", _slot_doc(created="2026-01-01T05:00:00+02:00"))
    assert naive.created == datetime(2026, 1, 1, 5, tzinfo=UTC)
    assert offset.created == datetime(2026, 1, 1, 3, tzinfo=UTC)
    assert offset.created.tzinfo is UTC
    assert sorted([naive, offset], key=lambda s: s.created) == [offset, naive]


def _plant(store_root: Path, name: str, raw: bytes) -> None:
    (store_root / "keys").mkdir(exist_ok=True)
    (store_root / "keys" / name).write_bytes(raw)


def test_bad_slots_do_not_keep_the_good_one_from_opening(tmp_path: Path) -> None:
    store = make_store("file", tmp_path, None)
    repo, key = init_repo(store, tmp_path)
    for i, raw in enumerate(BAD_SLOTS.values()):
        _plant(tmp_path / "repo", f"{i:02d}" + "0" * 30, raw)
    # Well-formed slots whose providers cannot even be opened, and one with a naive time
    # (sorting it beside an aware one raised TypeError).
    _plant(tmp_path / "repo", "e1" + "0" * 30, _slot_doc(provider="http://[::1"))
    _plant(tmp_path / "repo", "e2" + "0" * 30, _slot_doc(provider="local:///a\x00b"))
    _plant(
        tmp_path / "repo",
        "e3" + "0" * 30,
        _slot_doc(provider="local:///etc\x1b[2J", created="2000-01-01T00:00:00"),
    )
    _plant(tmp_path / "repo", "e4" + "0" * 30, _slot_doc(provider="ftp://x/y"))

    slots, unreadable = read_slots(store)
    assert [s.id[:2] for s in slots] == ["e3", "e1", "e2", "e4", slots[-1].id[:2]]
    assert slots[-1].provider == key.uri
    assert len(unreadable) == len(BAD_SLOTS)

    # Whatever the provider lookup does with the other slots' URIs, the good slot opens.
    opened = Repository.open(store, lambda uri: open_provider(uri))
    assert opened.id == repo.id and opened.slot is not None and opened.slot.provider == key.uri
    assert len(opened.unlock_notes) == len(BAD_SLOTS) + 4
    assert all("\n" not in n and "\x1b" not in n and "\x00" not in n for n in opened.unlock_notes)


def test_every_slot_failing_is_one_error_listing_each(tmp_path: Path) -> None:
    store = make_store("file", tmp_path, None)
    init_repo(store, tmp_path)
    _plant(tmp_path / "repo", "aa" + "0" * 30, b"[]")
    _plant(tmp_path / "repo", "bb" + "0" * 30, _slot_doc(provider="http://[::1"))
    (tmp_path / "keys" / "repo.key").unlink()
    with pytest.raises(DrError) as e:
        Repository.open(store, lambda uri: open_provider(uri))
    assert e.value.message == "cannot open repository: none of 3 key slot(s) could be unwrapped"
    details = "\n".join(e.value.details)
    assert "slot aa000000 (unreadable): malformed (not a JSON object)" in details
    assert "slot bb000000 http://[::1: " in details
    assert "repo.key: key file does not exist" in details


def test_a_provider_that_raises_anything_is_one_failed_slot(tmp_path: Path) -> None:
    store = make_store("file", tmp_path, None)
    repo, key = init_repo(store, tmp_path)
    other = LocalKeyProvider(tmp_path / "other.key", create=True)
    slot = new_slot(repo.master, repo.id, other)
    # Older than the good slot: tried first.
    slot.created -= timedelta(days=1)
    store.put(slot.object_name, slot.to_json())

    class Broken:
        uri = other.uri

        def unwrap(self, wrapped: Wrapped, context: dict[str, str]) -> bytes:
            raise RuntimeError("provider bug")

    opened = Repository.open(store, lambda uri: Broken() if uri == other.uri else key)  # type: ignore[return-value]
    assert opened.slot is not None and opened.slot.provider == key.uri
    assert opened.unlock_notes == [
        f"slot {slot.id[:8]} {other.uri}: unwrap failed: RuntimeError: provider bug"
    ]
    assert isinstance(opened.master, MasterKey)
    assert open_with(store, key).id == repo.id


def test_remove_refuses_when_the_other_slots_hold_another_key(tmp_path: Path) -> None:
    store = make_store("file", tmp_path, None)
    repo, key = init_repo(store, tmp_path)
    # A slot copied from another repository, wrapped by a key file this host has:
    # it unwraps, but to the other repository's master key.
    other_repo, _ = init_repo(make_store("file", tmp_path / "o", None), tmp_path / "o")
    foreign = new_slot(other_repo.master, other_repo.id, key)
    store.put(foreign.object_name, foreign.to_json())
    # One whose repository field was changed to this one: the context no longer matches.
    moved = KeySlot("7e" * 16, repo.id, key.uri, foreign.wrapped, foreign.created)
    store.put(moved.object_name, moved.to_json())
    opened = open_with(store, key)
    assert opened.slot is not None and len(opened.slots()) == 3

    def providers(uri: str) -> LocalKeyProvider:
        return key

    with pytest.raises(DrError, match="refusing to remove key slot") as e:
        opened.remove_slot(opened.slot.id[:8], providers)
    assert sorted(e.value.details) == sorted(
        [
            f"slot {foreign.id[:8]} {key.uri}: holds another key",
            f"slot {moved.id[:8]} {key.uri}: wrong key or context (the slot was not wrapped by this key file "
            "for this repository)",
        ]
    )
    assert len(opened.slots()) == 3
    # With a slot that does unwrap to this repository's key, it goes.
    good = opened.add_slot(LocalKeyProvider(tmp_path / "second.key", create=True))
    assert (
        opened.remove_slot(
            opened.slot.id,
            lambda uri: LocalKeyProvider(tmp_path / "second.key") if uri == good.provider else key,
        ).id
        == opened.slot.id
    )
    assert {s.id for s in opened.slots()} == {foreign.id, moved.id, good.id}


def test_configured_providers_slots_are_tried_first_and_others_only_as_fallback(tmp_path: Path) -> None:
    store = make_store("file", tmp_path, None)
    repo, key = init_repo(store, tmp_path)
    # Older than the configured slot, so first in slot order: a planted slot naming
    # some other provider (here a FIFO path, which once hung the open).
    os.mkfifo(tmp_path / "fifo")
    _plant(
        tmp_path / "repo",
        "00" * 16,
        _slot_doc(provider=f"local://{tmp_path}/fifo", created="2000-01-01T00:00:00Z"),
    )
    spare = LocalKeyProvider(tmp_path / "spare.key", create=True)
    backup = new_slot(repo.master, repo.id, spare)
    backup.created -= timedelta(days=365)
    store.put(backup.object_name, backup.to_json())

    looked_up: list[str] = []

    def lookup(uri: str) -> LocalKeyProvider:
        looked_up.append(uri)
        return LocalKeyProvider(uri.removeprefix("local://"))

    opened = Repository.open(store, lookup, preferred=lambda uri: uri == key.uri)
    assert opened.slot is not None and opened.slot.provider == key.uri
    assert looked_up == [key.uri] and opened.unlock_notes == []

    # The configured key lost: the other slots, in slot order, as a fallback.
    (tmp_path / "keys" / "repo.key").rename(tmp_path / "lost.key")
    looked_up.clear()
    opened = Repository.open(store, lookup, preferred=lambda uri: uri == key.uri)
    assert opened.slot is not None and opened.slot.id == backup.id
    assert looked_up == [key.uri, f"local://{tmp_path}/fifo", spare.uri]
    assert [n.split(": ", 1)[1] for n in opened.unlock_notes] == [
        "key file does not exist",
        "key file is not a regular file",
    ]


def test_an_ambiguous_slot_id_is_invalid_input(tmp_path: Path) -> None:
    store = make_store("file", tmp_path, None)
    repo, key = init_repo(store, tmp_path)
    _plant(tmp_path / "repo", "abcd" + "0" * 28, b"[]")
    _plant(tmp_path / "repo", "abcd" + "1" * 28, b"[]")
    with pytest.raises(InvalidInput, match=r"^key slot id 'abcd' is ambiguous \(2 matches\)$"):
        repo.remove_slot("abcd", lambda uri: key)
    assert repo.remove_slot("abcd1", lambda uri: key).id == "abcd" + "1" * 28


def test_an_oversized_slot_is_unreadable_and_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store("file", tmp_path, None)
    _repo, key = init_repo(store, tmp_path)
    big = "b1" * 16
    with open(tmp_path / "repo" / "keys" / big, "wb") as f:
        f.truncate(1 << 30)  # sparse: a gigabyte of junk without writing it
    get = store.get

    def guarded(name: str) -> bytes:
        assert name != f"keys/{big}", "the oversized slot was read"
        return get(name)

    monkeypatch.setattr(store, "get", guarded)
    _slots, unreadable = read_slots(store)
    assert [(u.id, u.reason) for u in unreadable] == [(big, "1073741824 bytes, too large for a key slot")]
    opened = open_with(store, key)
    assert opened.unlock_notes == [f"slot {big[:8]} (unreadable): 1073741824 bytes, too large for a key slot"]
    assert opened.remove_slot(big, lambda uri: key).id == big


class _RotatedWhileListing:
    """The store as another process sees it while `dr key rotate` runs: the rotation
    replaces every slot (new slot written, old one deleted) right after this process
    listed ``keys/`` and before it reads the slots it listed."""

    def __init__(self, store: object, rotate: Any) -> None:
        self._store = store
        self._rotate = rotate
        self.rotations = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def list(self, prefix: str) -> Any:
        listing = list(self._store.list(prefix))  # type: ignore[attr-defined]
        if prefix == "keys/" and self.rotations == 0:
            self.rotations += 1
            self._rotate()
        return iter(listing)


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_opening_while_the_slots_are_rotated(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = make_store(kind, tmp_path, request)
    repo, key = init_repo(store, tmp_path)

    def rotate() -> None:
        for slot in repo.slots():
            repo.rotate_slot(slot, key)

    racing = _RotatedWhileListing(store, rotate)
    opened = Repository.open(racing, lambda uri: key if uri == key.uri else None)  # type: ignore[arg-type]
    assert racing.rotations == 1
    assert opened.id == repo.id and opened.slot is not None
    assert opened.slot.id == repo.slots()[0].id, "opened with the slot the rotation wrote"


class _ConfigPutFails:
    """A store whose write of ``config`` fails, as a network error would; with ``lands``,
    after the object was stored (the answer was lost)."""

    def __init__(self, store: object, *, lands: bool = False) -> None:
        self._store = store
        self._lands = lands

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def put(self, name: str, data: bytes, **kw: Any) -> Any:
        if name == "config":
            from dr.storage.base import StorageError

            if self._lands:
                self._store.put(name, data, **kw)  # type: ignore[attr-defined]
            raise StorageError("connection reset while writing config")
        return self._store.put(name, data, **kw)  # type: ignore[attr-defined]


def test_a_failed_init_leaves_no_slot_behind(tmp_path: Path) -> None:
    # The slot is written before the config. Left behind when the config write fails, it
    # wraps a master key no config will ever use: the repository created by the next
    # `dr repo init` would carry it, and every `dr key rotate` would fail on it.
    store = make_store("file", tmp_path, None)
    key = LocalKeyProvider(tmp_path / "keys" / "repo.key", create=True)
    with pytest.raises(DrError, match="connection reset while writing config"):
        Repository.init(_ConfigPutFails(store), key)  # type: ignore[arg-type]
    assert list(store.list("keys/")) == []
    repo = Repository.init(store, key)
    assert [s.id for s in repo.slots()] == [repo.slot.id if repo.slot else None]

    # The config write failed but landed: the slot is the only way in, and stays.
    other = make_store("file", tmp_path / "other", None)
    repo = Repository.init(_ConfigPutFails(other, lands=True), key)  # type: ignore[arg-type]
    assert open_with(other, key).id == repo.id


def test_a_crash_after_unlocking_writes_no_core_with_the_master_key(tmp_path: Path) -> None:
    # Core dumps are on in many places (`ulimit -c unlimited`, systemd-coredump, apport):
    # a dr process that crashes (a C extension, SIGABRT, SIGQUIT) would write its memory,
    # the unwrapped master key included, to disk.
    import resource
    import subprocess
    import sys

    if resource.getrlimit(resource.RLIMIT_CORE)[1] == 0:
        pytest.skip("core dumps are forbidden here (hard limit 0)")
    crash = (
        "import os, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
        "if sys.argv[1] == 'dr':\n"
        "    from dr.crypto.providers.local import LocalKeyProvider\n"
        "    from dr.repo.repository import Repository\n"
        "    from dr.storage.registry import open_store\n"
        "    repo = Repository.init(open_store('file://' + os.getcwd() + '/repo'),\n"
        "                           LocalKeyProvider(os.getcwd() + '/repo.key', create=True))\n"
        "    open('master', 'wb').write(repo.master.raw)\n"
        "os.abort()\n"
    )

    def run(what: str) -> list[Path]:
        cwd = tmp_path / what
        cwd.mkdir()
        subprocess.run([sys.executable, "-c", crash, what], cwd=cwd, capture_output=True, timeout=120)
        return [p for p in cwd.iterdir() if p.name.startswith("core")]

    if not run("control"):
        pytest.skip("this host does not write core files into the working directory (core_pattern)")
    assert run("dr") == [], "a core file was written after the master key was unwrapped"


def test_a_slot_that_cannot_be_read_is_unreadable_and_the_others_still_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dr.storage.base import AccessDenied

    store = make_store("file", tmp_path, None)
    _repo, key = init_repo(store, tmp_path)
    denied = "d1" * 16
    _plant(tmp_path / "repo", denied, _slot_doc())
    get = store.get

    def refusing(name: str) -> bytes:
        if name == f"keys/{denied}":
            raise AccessDenied(f"keys/{denied}: access denied")
        return get(name)

    monkeypatch.setattr(store, "get", refusing)
    slots, unreadable = read_slots(store)
    assert [s.provider for s in slots] == [key.uri]
    assert [(u.id, u.reason) for u in unreadable] == [
        (denied, f"cannot read it: keys/{denied}: access denied")
    ]
    opened = open_with(store, key)
    assert opened.unlock_notes == [
        f"slot {denied[:8]} (unreadable): cannot read it: keys/{denied}: access denied"
    ]
