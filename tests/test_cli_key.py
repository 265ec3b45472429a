"""`dr key list | add | remove | rotate` with local key files (other providers: test_key_providers.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_dr


def test_key_slot_lifecycle(isolated_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    glass = isolated_home / "safe" / "break-glass.key"
    r = run_dr(capsys, "key", "add", f"local://{glass}", "-o", "json")
    assert r.code == 0, r.err
    assert glass.stat().st_mode & 0o777 == 0o600
    r = run_dr(capsys, "key", "add", f"local://{glass}")
    assert r.code == 2 and "already exists" in r.err

    slots = run_dr(capsys, "key", "list", "-o", "json").json()
    assert [s["provider"] for s in slots] == [
        f"local://{isolated_home}/config/dr/repo.key",
        f"local://{glass}",
    ]

    # The break-glass key alone opens the repository.
    (isolated_home / "config" / "dr" / "repo.key").rename(isolated_home / "lost.key")
    r = run_dr(capsys, "key", "list", "-o", "json")
    assert r.code == 0 and [s["usedToOpen"] for s in r.json()] == [False, True]

    r = run_dr(capsys, "key", "rotate", "-o", "json")
    assert r.code == 3, "the lost key cannot be rewrapped"
    assert "lost" not in r.err and "key file does not exist" in r.err
    (isolated_home / "lost.key").rename(isolated_home / "config" / "dr" / "repo.key")
    r = run_dr(capsys, "key", "rotate", "-o", "json")
    assert r.code == 0 and len(r.json()["rotated"]) == 2
    after = run_dr(capsys, "key", "list", "-o", "json").json()
    assert {s["id"] for s in after}.isdisjoint({s["id"] for s in slots})

    r = run_dr(capsys, "key", "remove", after[0]["id"][:8])
    assert r.code == 0
    r = run_dr(capsys, "key", "remove", after[1]["id"])
    assert r.code == 1 and "last key slot" in r.err
    r = run_dr(capsys, "key", "remove", "ffff")
    assert r.code == 2 and "no key slot 'ffff'" in r.err


def test_open_lists_each_provider_tried(isolated_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    assert run_dr(capsys, "key", "add", f"local://{isolated_home}/second.key").code == 0
    (isolated_home / "config" / "dr" / "repo.key").write_text("AAAA\n")
    (isolated_home / "second.key").chmod(0o644)
    r = run_dr(capsys, "repo", "info")
    assert r.code == 1
    lines = [ln.strip() for ln in r.err.splitlines()]
    assert lines[0] == "error: cannot open repository: none of 2 key slot(s) could be unwrapped"
    assert "repo.key: key file holds 3 bytes, expected 32" in lines[1]
    assert "second.key: key file is accessible by group or others (mode 0644)" in lines[2]


def test_unreadable_slots_are_listed_and_can_be_removed(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    keys = isolated_home / "data" / "dr" / "repo" / "keys"
    (keys / ("0badbad0" + "0" * 24)).write_bytes(b"[]")
    (keys / ("1badbad1" + "0" * 24)).write_text(
        '{"format": 1, "repository": "r", "provider": "http://[::1", "wrapped": "", "created": "2020-01-01T00:00:00"}'
    )
    r = run_dr(capsys, "key", "list", "-o", "json")
    assert r.code == 0, r.err
    rows = {s["id"][:8]: s for s in r.json()}
    assert rows["0badbad0"]["error"] == "malformed (not a JSON object)"
    assert rows["0badbad0"]["provider"] is None
    assert rows["1badbad1"]["provider"] == "http://[::1" and rows["1badbad1"]["error"] is None
    r = run_dr(capsys, "key", "list")
    assert r.code == 0 and "0badbad0  (unreadable: malformed (not a JSON object))" in r.out

    r = run_dr(capsys, "key", "remove", "0badbad0")
    assert r.code == 0 and "removed key slot 0badbad0 (unreadable)" in r.out, r.err
    r = run_dr(capsys, "key", "remove", "1badbad1")
    assert r.code == 0, r.err
    assert [p.name[:8] for p in keys.iterdir()] == [
        s["id"][:8] for s in run_dr(capsys, "key", "list", "-o", "json").json()
    ]


def test_remove_refuses_when_no_other_slot_unwraps(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    glass = isolated_home / "safe" / "break-glass.key"
    assert run_dr(capsys, "key", "add", f"local://{glass}").code == 0
    first, second = run_dr(capsys, "key", "list", "-o", "json").json()
    # Two slots, but the break-glass key file is gone: removing the other one would
    # leave a repository nobody can open.
    glass.rename(isolated_home / "elsewhere.key")
    r = run_dr(capsys, "key", "remove", first["id"][:8])
    assert r.code == 1
    lines = r.err.splitlines()
    assert lines[0] == (
        f"error: refusing to remove key slot {first['id'][:8]}: no other key slot could be unwrapped to "
        "this repository's key here, and without it the repository could be unopenable"
    )
    assert lines[1].strip() == f"slot {second['id'][:8]} local://{glass}: key file does not exist"
    assert len(run_dr(capsys, "key", "list", "-o", "json").json()) == 2

    (isolated_home / "elsewhere.key").rename(glass)
    r = run_dr(capsys, "key", "remove", first["id"][:8])
    assert r.code == 0, r.err
    # The break-glass key alone opens the repository now.
    (isolated_home / "config" / "dr" / "repo.key").unlink()
    r = run_dr(capsys, "key", "list", "-o", "json")
    assert r.code == 0 and [s["id"] for s in r.json()] == [second["id"]]


def test_open_tries_the_configured_key_before_slots_naming_others(
    isolated_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    keys = isolated_home / "data" / "dr" / "repo" / "keys"
    (keys / ("00" * 16)).write_text(
        '{"format": 1, "repository": "r", "provider": "vault://transit/keys/planted", "wrapped": "",'
        ' "created": "2000-01-01T00:00:00Z"}'
    )
    import dr.cli.repo_access as repo_access

    opened: list[str] = []
    real = repo_access.open_provider

    def recording(uri: str, *a: Any, **kw: Any) -> Any:
        opened.append(uri)
        return real(uri, *a, **kw)

    monkeypatch.setattr(repo_access, "open_provider", recording)
    r = run_dr(capsys, "key", "list", "-o", "json")
    assert r.code == 0, r.err
    assert opened == [f"local://{isolated_home}/config/dr/repo.key"]


def test_key_id_and_provider_mistakes_are_invalid_input(
    isolated_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    assert run_dr(capsys, "key", "add", f"local://{isolated_home}/second.key").code == 0
    ids = [s["id"] for s in run_dr(capsys, "key", "list", "-o", "json").json()]
    for arg, message in (
        ("zzzz", "error: no key slot 'zzzz' (see `dr key list`)"),
        ("", "error: key slot id '' is too short (give at least 4 characters)"),
        # Matches one slot, but three characters are too few to name one on purpose.
        (ids[0][:3], f"error: key slot id '{ids[0][:3]}' is too short (give at least 4 characters)"),
    ):
        r = run_dr(capsys, "key", "remove", arg)
        assert (r.code, r.err.strip()) == (2, message)
    assert [s["id"] for s in run_dr(capsys, "key", "list", "-o", "json").json()] == ids

    monkeypatch.delenv("VAULT_ADDR", raising=False)
    r = run_dr(capsys, "key", "add", "vault://transit/keys/dr")
    assert r.code == 2
    assert r.err.strip() == (
        "error: vault://transit/keys/dr: no Vault address: set vault.address in the key provider's config "
        "or VAULT_ADDR"
    )


SECRET = "SuperSecret123"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("local://{home}/k.key?x=" + SECRET, "key provider 'local://{home}/k.key?x=***' takes no "
         "'?' or '#' (local:///path, vault://mount/keys/name, awskms://key, gcpkms://projects/…/cryptoKeys/key)"),
        ("local://{home}/k#1", "key provider 'local://{home}/k#***' takes no '?' or '#' (local:///path, "
         "vault://mount/keys/name, awskms://key, gcpkms://projects/…/cryptoKeys/key)"),
        ("vault://dr:" + SECRET + "@transit/keys/dr", "key provider URI must not contain credentials (they come "
         "from the provider's own configuration: VAULT_TOKEN, AWS or Google credentials)"),
        ("gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k?key=" + SECRET,
         "key provider 'gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k?key=***' takes no '?' or '#'"),
    ],
    ids=["local-query", "local-fragment", "vault-user-info", "gcpkms-query"],
)  # fmt: skip
def test_a_key_provider_uri_with_a_query_or_credentials_is_refused(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    uri: str,
    message: str,
) -> None:
    # A slot keeps its provider's URI in the repository, unencrypted (it says which key
    # unwraps it): a password there would be at rest in plaintext. And a query was
    # dropped in silence (local:///k.key?x made the key file /k.key).
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:1")
    monkeypatch.setenv("VAULT_TOKEN", "not-contacted")
    assert run_dr(capsys, "repo", "init").code == 0
    before = run_dr(capsys, "key", "list", "-o", "json").json()
    uri, message = uri.format(home=isolated_home), message.format(home=isolated_home)
    r = run_dr(capsys, "key", "add", uri)
    assert r.code == 2, r.err
    assert r.err.startswith(f"error: {message}") and len(r.err.splitlines()) == 1, r.err
    assert SECRET not in r.err
    assert run_dr(capsys, "key", "list", "-o", "json").json() == before
    assert not (isolated_home / "k.key").exists()
    # dr.yaml's key providers: the same rule, with the line.
    (isolated_home / "dr.yaml").write_text(f"keyProviders:\n  - name: k\n    uri: '{uri}'\n")
    r = run_dr(capsys, "config", "validate", "dr.yaml")
    assert r.code == 2 and "dr.yaml:3:5: keyProviders[0].uri: " in r.err and SECRET not in r.err, r.err


def test_key_commands_run_beside_backups_but_one_at_a_time(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `key rotate` and `key remove` took the exclusive lock: with backups running (hourly
    # CronJobs, long movers) a rotation found no window, and a backup starting during
    # one failed. They never touch what a backup writes, so they now stand beside
    # shared locks; against each other (two removes could leave no slot) and prune, not.
    from dr.crypto.providers.local import LocalKeyProvider
    from dr.repo.locks import Lock, LockConflict, conflicting
    from dr.repo.repository import Repository
    from dr.storage.registry import open_store

    assert [conflicting(a, b) for a, b in (("keys", "shared"), ("shared", "keys"), ("keys", "keys"),
            ("keys", "exclusive"), ("exclusive", "keys"), ("shared", "shared"), ("keys", "future-kind"))] == [
        False, False, True, True, True, False, False]  # fmt: skip
    assert run_dr(capsys, "repo", "init").code == 0
    key = LocalKeyProvider(isolated_home / "config" / "dr" / "repo.key")
    repo = Repository.open(
        open_store(f"file://{isolated_home}/data/dr/repo"), lambda u: key if u == key.uri else None
    )
    glass = isolated_home / "safe" / "break-glass.key"
    with Lock(repo, "shared", "backup"):
        r = run_dr(capsys, "key", "add", f"local://{glass}", "-o", "json")
        assert r.code == 0, r.err
        r = run_dr(capsys, "key", "rotate", "-o", "json")
        assert r.code == 0 and len(r.json()["rotated"]) == 2, r.err
        r = run_dr(capsys, "key", "remove", r.json()["rotated"][1]["new"][:8])
        assert r.code == 0, r.err
    for kind, operation in (("keys", "key rotate"), ("exclusive", "prune")):
        with Lock(repo, kind, operation):  # type: ignore[arg-type]
            r = run_dr(capsys, "key", "rotate")
            assert r.code == 1 and "repository is locked" in r.err and operation in r.err, r.err
    with Lock(repo, "keys", "key rotate"), pytest.raises(LockConflict):
        Lock(repo, "exclusive", "prune").acquire()


def test_rotate_prints_a_planted_slot_uri_on_one_line(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Slots are unauthenticated: rotate's failure listing printed a slot's provider URI
    # as stored, so a newline in it forged an "error:" line of its own (and terminal
    # escapes reached the terminal); list and open already show such text escaped.
    import json

    assert run_dr(capsys, "repo", "init").code == 0
    keys = isolated_home / "data" / "dr" / "repo" / "keys"
    planted = {"format": 1, "repository": "r", "provider": "vault://t/keys/k\x1b[2J\nerror: FORGED",
               "wrapped": "", "created": "2000-01-01T00:00:00Z"}  # fmt: skip
    (keys / ("ab" * 16)).write_text(json.dumps(planted))
    r = run_dr(capsys, "key", "rotate")
    assert r.code == 3, r.err
    assert "\x1b" not in r.err and "\x1b" not in r.out
    failures = [ln for ln in r.err.splitlines() if "FORGED" in ln]
    assert len(failures) == 1 and failures[0].startswith(
        "  slot abababab vault://t/keys/k\\x1b[2J\\x0aerror: FORGED"
    )
    assert not any(ln.startswith("error: FORGED") for ln in r.err.splitlines())


def _slot_ids(capsys: pytest.CaptureFixture[str]) -> list[str]:
    r = run_dr(capsys, "key", "list", "-o", "json")
    assert r.code == 0, r.err
    return [s["id"] for s in r.json()]


def test_rotate_under_object_lock_rotates_each_key_once(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    s3_env: dict[str, str],
    s3_client: Any,
    unique: str,
) -> None:
    # Object Lock keeps every keys/ object, so the old slot's delete is refused. Rotate said
    # "none of 1 key slot(s) could be rotated" (exit 1) after writing the new slot, and the
    # next run rewrapped the slots left behind as well: 1, 2, 4, 8 slots on successive runs.
    import yaml

    bucket = f"dr-key-lock-{unique}"
    s3_client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3 = {"endpoint": s3_env["endpoint"], "region": s3_env["region"], "addressingStyle": "path",
          "objectLock": {"mode": "GOVERNANCE", "days": 1}}  # fmt: skip
    key = f"local://{isolated_home}/repo.key"
    (isolated_home / "dr.yaml").write_text(yaml.safe_dump({
        "repositories": [{"name": "r", "url": f"s3://{bucket}/repo", "keys": ["local"], "s3": s3}],
        "keyProviders": [{"name": "local", "uri": key}]}))  # fmt: skip
    assert run_dr(capsys, "repo", "init").code == 0
    (first,) = _slot_ids(capsys)

    r = run_dr(capsys, "key", "rotate", "-o", "json")
    assert r.code == 0, r.err
    doc = r.json()
    (rotated,) = doc["rotated"]
    assert rotated["old"] == first and doc["removed"] == [] and doc["failed"] == []
    stays = f"slot {first[:8]} {key}: rotated to {rotated['new'][:8]}, but it could not be removed: "
    assert len(doc["retained"]) == 1 and doc["retained"][0].startswith(stays), doc
    assert "under GOVERNANCE retention until" in doc["retained"][0]
    assert r.err.startswith(f"warning: {stays}") and r.err.rstrip().endswith(
        "; a rotation after the retention ends removes it"
    ), r.err

    # The next rotation rewraps the newest slot of the key only; the older one stays as well.
    r = run_dr(capsys, "key", "rotate", "-o", "json")
    assert r.code == 0, r.err
    doc = r.json()
    assert [x["old"] for x in doc["rotated"]] == [rotated["new"]]
    assert [line[5:13] for line in doc["retained"]] == [rotated["new"][:8], first[:8]]
    assert "an older slot of the key rotated to" in doc["retained"][1]
    assert len(_slot_ids(capsys)) == 3


def test_rotate_removes_older_slots_of_a_key_once_the_new_one_unwraps(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from dr.crypto.keyring import MasterKey, new_slot
    from dr.crypto.providers.local import LocalKeyProvider

    assert run_dr(capsys, "repo", "init").code == 0
    keys = isolated_home / "data" / "dr" / "repo" / "keys"
    (first,) = _slot_ids(capsys)
    # An older copy of the slot (as a rotation under Object Lock leaves): removed, not rewrapped.
    doc = json.loads((keys / first).read_text())
    (keys / ("c0" * 16)).write_text(json.dumps({**doc, "created": "2000-01-01T00:00:00Z"}))
    r = run_dr(capsys, "key", "rotate", "-o", "json")
    assert r.code == 0, r.err
    (rotated,) = r.json()["rotated"]
    assert rotated["old"] == first and r.json()["removed"] == ["c0" * 16]
    assert _slot_ids(capsys) == [rotated["new"]]

    # A newer slot of the same key file that wraps another key (planted): rotating it must
    # neither remove the slot that does open the repository nor keep it from being rotated
    # (it was left at its key version, "kept", at every rotation).
    key = LocalKeyProvider(isolated_home / "config" / "dr" / "repo.key")
    planted = new_slot(MasterKey.generate(), doc["repository"], key)
    (keys / planted.id).write_bytes(planted.to_json())
    r = run_dr(capsys, "key", "rotate", "-o", "json")
    assert r.code == 3, r.err
    doc = r.json()
    assert [x["old"] for x in doc["rotated"]] == [planted.id, rotated["new"]], doc
    assert doc["failed"] == [
        f"slot {planted.id[:8]} {key.uri}: rotated to {doc['rotated'][0]['new'][:8]}, "
        "which does not unwrap here (it unwraps to another key)"
    ]
    assert doc["rotated"][1]["new"] in _slot_ids(capsys)
