"""What a year of nightly backups costs: requests, reads and writes counted, not timed.

Each test counts what a command does at scale (objects read, requests made, writes)
instead of timing it: the figures measured on 3,650 snapshots and on a volume of
200,000 files are in bench/RESULTS.md ("Scale (helper pass, 2026-11-30)").
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dr.cli.output import JsonStream, write_json
from dr.config import Repository as RepositoryConfig
from dr.config import S3Options
from dr.crypto.providers.local import LocalKeyProvider
from dr.errors import InvalidInput
from dr.repo.archiver import backup_directory
from dr.repo.check import check
from dr.repo.prune import prune
from dr.repo.snapshots import Snapshot, SnapshotNotFound, find_snapshot, list_snapshots, save_snapshot
from dr.repo.streams import StreamWriter, read_stream
from dr.storage import s3
from dr.storage.file import FileStore
from dr.storage.registry import open_store
from tests.cli_support import write_config
from tests.helpers import run_dr
from tests.repo_helpers import init_repo, make_store, open_with


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Reads of ``kind/…`` objects from file stores, by kind (get and get_range alike)."""
    reads: Counter[str] = Counter()
    real_get, real_range = FileStore.get, FileStore.get_range

    def get(self: FileStore, name: str) -> bytes:
        reads[name.split("/", 1)[0]] += 1
        return real_get(self, name)

    def get_range(self: FileStore, name: str, offset: int, length: int) -> bytes:
        reads[name.split("/", 1)[0]] += 1
        return real_range(self, name, offset, length)

    monkeypatch.setattr(FileStore, "get", get)
    monkeypatch.setattr(FileStore, "get_range", get_range)
    return reads


def test_an_id_prefix_reads_only_the_snapshots_it_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `dr backups describe 1a2b3c4d`, `dr restore 1a2b3c4d`, `dr drill run --backup 1a2b3c4d`: on a
    # repository of 3,650 snapshots each read all of them (3,652 GETs on SeaweedFS) to pick one.
    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    snaps = [save_snapshot(repo, Snapshot(kind="backup", name=f"nightly-{i}")) for i in range(40)]
    volume = save_snapshot(repo, Snapshot(kind="volume", paths=["/data"]))
    repo = open_with(repo.store, key)
    reads = _count_reads(monkeypatch)
    target = snaps[17]
    assert find_snapshot(repo, target.id[:8], kind="backup", what="backup") == target
    assert reads["snapshots"] == 1
    # Upper case is the same id; a volume snapshot's prefix is no backup (and is read to know).
    assert find_snapshot(repo, target.id[:10].upper(), kind="backup", what="backup") == target
    with pytest.raises(SnapshotNotFound, match="no backup with id"):
        find_snapshot(repo, volume.id[:8], kind="backup", what="backup")
    assert reads["snapshots"] == 3
    # Too short: refused before anything is read. `latest` still reads every one.
    with pytest.raises(InvalidInput, match="too short"):
        find_snapshot(repo, target.id[:3], kind="backup", what="backup")
    assert reads["snapshots"] == 3
    assert find_snapshot(repo, "latest", kind="backup", what="backup") == max(
        snaps, key=lambda s: (s.time, s.id)
    )
    assert reads["snapshots"] == 3 + 41


def test_an_ambiguous_prefix_is_still_refused(tmp_path: Path) -> None:
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    for name in ("abcd" + "0" * 60, "abcd" + "1" * 60):
        repo.save_object("snapshots", Snapshot(kind="backup", name="x").with_id(name).to_doc(), name=name)
    with pytest.raises(InvalidInput, match=r"'abcd' is ambiguous \(2 matches\)"):
        find_snapshot(repo, "abcd", kind="backup", what="backup")
    assert find_snapshot(repo, "abcd1", kind="backup", what="backup").id == "abcd" + "1" * 60


class _CountingWriter(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


def test_a_long_json_listing_is_written_in_few_large_writes() -> None:
    # `dr mover ls -r -o json` of 200,000 files: one write per encoder token was 7.3 million
    # writes to stdout, 8 of the command's 13 s.
    rows = [
        {"path": f"team{i // 100}/f{i}.txt", "type": "file", "size": i, "mode": "-rw-r--r--"}
        for i in range(5000)
    ]
    out = _CountingWriter()
    write_json({"entries": JsonStream(iter(rows), len(rows))}, out)
    assert out.getvalue() == json.dumps({"entries": rows}, indent=2, ensure_ascii=False) + "\n"
    assert out.writes <= len(out.getvalue()) // 65536 + 2, out.writes


def _s3_operations(store: Any) -> Counter[str]:
    """The S3 operations ``store``'s client makes from now on, by name (botocore's own event)."""
    ops: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        ops[model.name] += 1

    store._client.meta.events.register("before-call.s3", count)
    return ops


@pytest.mark.parametrize("batch", [1000, 7])
def test_prune_deletes_in_batches_on_s3(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    # A year of nightly backups, forgotten down to the GFS keeps: prune deleted 7,779 packs and
    # index files with one DeleteObject each (12.7 s against SeaweedFS on the same host).
    monkeypatch.setattr(s3, "DELETE_BATCH", batch)
    store = make_store("s3", tmp_path, request)
    repo, key = init_repo(store, tmp_path)
    snaps = []
    for i in range(24):  # each backup writes its own pack and index file, as `dr backup` does
        with repo.saver() as saver:
            writer = StreamWriter(repo, saver)
            writer.write(os.urandom(2000) + f"backup {i}".encode())
            stream = writer.close()
            saver.flush()
        snaps.append(
            save_snapshot(repo, Snapshot(kind="backup", name=f"b{i}", streams={"resources": stream}))
        )
    for s in snaps[:-2]:
        store.delete(f"snapshots/{s.id}")
    packs_before = len(list(store.list("data/")))
    ops = _s3_operations(store)
    result = prune(open_with(store, key))
    assert result.packs_deleted == 22 and result.index_files_replaced == 24
    assert len(list(store.list("data/"))) == packs_before - 22
    assert len(list(store.list("index/"))) == 1
    assert ops["DeleteObject"] == 1  # prune's own lock
    assert ops["DeleteObjects"] == -(-24 // batch) + -(-22 // batch)
    fresh = open_with(store, key)
    assert check(fresh, read_data=1.0).ok
    assert [b"".join(read_stream(fresh, s.streams["resources"]))[-9:] for s in snaps[-2:]] == [
        b"backup 22",
        b"backup 23",
    ]


def test_forget_deletes_snapshots_in_batches_on_s3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], s3_env: dict[str, str], s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # A year of nightly backups forgotten to its GFS keeps: 3,441 DeleteObject, one per snapshot.
    import botocore.client
    import yaml

    s3_opts = {"endpoint": s3_env["endpoint"], "region": s3_env["region"], "addressingStyle": "path"}
    config = tmp_path / "dr.yaml"
    config.write_text(yaml.safe_dump({
        "repositories": [{"name": "r", "url": f"s3://{s3_bucket}/repo", "keys": ["local"], "s3": s3_opts}],
        "keyProviders": [{"name": "local", "uri": f"local://{tmp_path}/repo.key"}],
    }))  # fmt: skip
    assert run_dr(capsys, "--config", str(config), "repo", "init").code == 0
    repo = open_with(
        open_store(f"s3://{s3_bucket}/repo", RepositoryConfig(name="r", url=f"s3://{s3_bucket}/repo",
                   s3=S3Options(endpoint=s3_env["endpoint"], region="us-east-1", addressing_style="path"))),
        LocalKeyProvider(tmp_path / "repo.key"),
    )  # fmt: skip
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for day in range(12):
        vol = save_snapshot(repo, Snapshot(kind="volume", time=t0 + timedelta(days=day), paths=["/data"]))
        save_snapshot(repo, Snapshot(kind="backup", time=t0 + timedelta(days=day), name="app", policy="p",
                                     namespaces=["shop"], phase="Completed", refs=[vol.id]))  # fmt: skip
    ops: Counter[str] = Counter()
    real = botocore.client.BaseClient._make_api_call

    def counted(self: Any, operation: str, params: Any) -> Any:
        ops[operation] += 1
        return real(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counted)
    monkeypatch.setattr(s3, "DELETE_BATCH", 4)
    r = run_dr(capsys, "--config", str(config), "forget", "--keep-last", "2", "-o", "json")
    assert r.code == 0, r.err
    removed = [row for row in r.json()["snapshots"] if not row["keep"]]
    assert len(removed) == 20
    # 10 backups, then their 10 volume snapshots: 3 + 3 batches of at most 4; one delete, the lock.
    assert (ops["DeleteObjects"], ops["DeleteObject"]) == (6, 1), ops
    kinds = Counter(s.kind for s in list_snapshots(repo))
    assert kinds == {"backup": 2, "volume": 2}


def test_verify_of_one_backup_reads_its_snapshots_not_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `dr verify 1a2b3c4d` read all 3,650 snapshots of a year of nightly backups (7,303 GETs on
    # SeaweedFS with the index) to verify one backup and its volume snapshot.
    config = write_config(tmp_path)
    assert run_dr(capsys, "--config", str(config), "repo", "init").code == 0
    repo = open_with(open_store(f"file://{tmp_path}/repo"), LocalKeyProvider(tmp_path / "repo.key"))
    src = tmp_path / "src"
    src.mkdir()
    backups = []
    for day in range(15):
        (src / "day.txt").write_text(f"day {day}\n")
        vol = backup_directory(repo, src).snapshot
        backups.append(
            save_snapshot(repo, Snapshot(kind="backup", name="app", phase="Completed", refs=[vol.id]))
        )
    reads = _count_reads(monkeypatch)
    target = backups[6]
    r = run_dr(capsys, "--config", str(config), "verify", target.id[:8].upper(), "-o", "json")
    assert r.code == 0, r.err
    assert r.json()["snapshots"] == 2 and r.json()["errors"] == []
    assert reads["snapshots"] == 2  # the backup and its volume snapshot
    # Its volume snapshot damaged (or gone): verify still says so.
    (tmp_path / "repo" / "snapshots" / target.refs[0]).write_bytes(b"damaged")
    r = run_dr(capsys, "--config", str(config), "verify", target.id[:8], "-o", "json")
    assert r.code == 4 and any(f"snapshots/{target.refs[0]}" in e for e in r.json()["errors"]), r.out
    (tmp_path / "repo" / "snapshots" / target.refs[0]).unlink()
    r = run_dr(capsys, "--config", str(config), "verify", target.id[:8])
    assert r.code == 4 and f"volume snapshot {target.refs[0][:8]} is missing" in r.err, r.err
    r = run_dr(capsys, "--config", str(config), "verify", "abc")
    assert r.code == 2 and "too short" in r.err, r.err


@pytest.mark.parametrize("kind", ["file", "s3", "gs"])
def test_delete_many_deletes_every_name_on_every_store(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3, "DELETE_BATCH", 3)  # several batches on S3
    store = make_store(kind, tmp_path, request)
    names = [f"data/{i:02x}/{i:064x}" for i in range(8)]
    for name in names:
        store.put(name, b"x")
    store.put("index/keep", b"y")
    # A missing name is no error, as for delete.
    assert store.delete_many([*names[:5], "data/ff/gone", *names[5:]]) == {}
    assert [o.name for o in store.list("")] == ["index/keep"]
    assert store.delete_many([]) == {}


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "MissingContentMD5"), (501, "NotImplemented")],  # a 501 is retried first, as any 5xx
)
def test_an_endpoint_refusing_batch_deletes_gets_one_delete_per_object(
    tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture, status: int, code: str
) -> None:
    # botocore (1.36 on) sends DeleteObjects with a CRC32 checksum, not Content-MD5; older MinIO
    # and Ceph refuse it (400 MissingContentMD5); a store without it says 501 NotImplemented.
    # Since prune and forget delete in batches they failed there, after the new index was
    # written, where deleting one by one had worked. SeaweedFS takes the batch: its refusal is
    # made at the HTTP layer, botocore parses it.
    from botocore.awsrequest import AWSResponse

    from dr.storage.retry import RetryPolicy

    store = make_store("s3", tmp_path, request)
    store._retry = RetryPolicy(sleep=lambda seconds: None)  # type: ignore[attr-defined]
    names = [f"data/{i:02x}/{i:064x}" for i in range(5)]
    for name in names:
        store.put(name, b"x")
    refused: list[str] = []

    def refuse(request: Any, **_: Any) -> AWSResponse:
        refused.append(request.url)
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>Refused: {code}.</Message></Error>").encode()  # fmt: skip
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body))

    store._client.meta.events.register("before-send.s3.DeleteObjects", refuse)  # type: ignore[attr-defined]
    with caplog.at_level("WARNING"):
        assert store.delete_many(names[:3]) == {}
        asked = len(refused)
        assert store.delete_many(names[3:]) == {}  # not asked again: the endpoint said so
    assert asked == len(refused) >= 1 and (status >= 500 or asked == 1)
    assert [o.name for o in store.list("data/")] == []
    assert f"refuses batch deletes ({code}): deleting one object per request" in caplog.text


class _Raw:
    """A urllib3-like raw body for botocore's AWSResponse."""

    def __init__(self, body: bytes) -> None:
        self._body = io.BytesIO(body)

    def stream(self, amt: int = 1024, decode_content: bool = True) -> Any:
        while chunk := self._body.read(amt):
            yield chunk


def test_keys_a_batch_delete_reports_failed_are_deleted_one_by_one(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # DeleteObjects answers 200 and lists the keys it could not delete (throttled, an internal
    # error). They are deleted again each on its own; SeaweedFS never reports one, so its answer
    # is made at the HTTP layer (the batch itself is not sent: the others stay).
    from botocore.awsrequest import AWSResponse

    store = make_store("s3", tmp_path, request)
    names = [f"data/{i:02x}/{i:064x}" for i in range(3)]
    for name in names:
        store.put(name, b"x")
    failed_key = store._key(names[1])  # type: ignore[attr-defined]

    def partly(request: Any, **_: Any) -> AWSResponse:
        body = ('<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Error><Key>{failed_key}</Key><Code>InternalError</Code><Message>try again</Message></Error>"
                "</DeleteResult>").encode()  # fmt: skip
        return AWSResponse(request.url, 200, {"Content-Type": "application/xml"}, _Raw(body))

    store._client.meta.events.register("before-send.s3.DeleteObjects", partly)  # type: ignore[attr-defined]
    assert store.delete_many(names) == {}
    assert [o.name for o in store.list("data/")] == [names[0], names[2]]  # names[1] went on its own
