"""Pack assembly (dr/repo/pack_writer.py): blobs sealed straight into their pack's
buffer by several threads at once, slots that do not fit, failures, flush.

Packs go to a real FileStore and are read back through their headers, as a
restore would.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dr.crypto.aead import Sealer
from dr.repo import pack_writer
from dr.repo.format import (
    FLAG_RAW,
    STAGING_KEPT,
    STAGING_SMALL,
    BlobType,
    Codec,
    FormatError,
    blob_aad,
    decode_pack_header,
    sealed_size,
)
from dr.repo.index import Index
from dr.repo.pack_writer import PACK_SLACK, BlobSaver, PackUploader
from dr.storage.file import FileStore

CODEC = Codec(Sealer(os.urandom(32)), level=1)


def blob_id(data: bytes | memoryview) -> bytes:
    return blake3.blake3(bytes(data)).digest()


def stored_blobs(store: FileStore) -> dict[bytes, bytes]:
    """Every blob of every pack in the store, opened: id -> plaintext."""
    out: dict[bytes, bytes] = {}
    for info in store.list("data/"):
        raw = store.get(info.name)
        for e in decode_pack_header(CODEC, raw, len(raw), info.name):
            sealed = raw[e.offset : e.offset + e.length]
            out[e.id] = CODEC.decode(sealed, blob_aad(e.type, e.id), what=info.name)
    return out


def make_saver(tmp_path: Path, pack_size: int = 1 << 20) -> tuple[FileStore, Index, PackUploader, BlobSaver]:
    store = FileStore(tmp_path / "repo")
    index = Index()
    uploader = PackUploader(store, CODEC, index, pack_size=pack_size)
    return store, index, uploader, BlobSaver(blob_id, CODEC, uploader)


def run_in_threads(
    work: Callable[[int], None], n: int = 4, timeout: float | None = None
) -> list[threading.Thread]:
    """Run ``work(k)`` for k in range(n) on n threads at once; -> the threads, joined."""
    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return threads


@given(st.binary(max_size=5000), st.booleans(), st.binary(min_size=32, max_size=32))
def test_staged_payload_seals_like_encode(data: bytes, compress: bool, bid: bytes) -> None:
    aad = blob_aad(BlobType.DATA, bid)
    with CODEC.staged(data, compress=compress) as payload:
        flag = payload[0]
        out = bytearray(sealed_size(len(payload) - 1))
        CODEC.seal_payload_into(payload, aad, memoryview(out))
    encoded_flag, sealed = CODEC.encode(data, aad, compress=compress)
    assert (flag, len(out)) == (encoded_flag, len(sealed))  # same layout, other nonce
    assert CODEC.decode(bytes(out), aad, what="t") == data
    with pytest.raises(FormatError, match="authentication failed"):  # bound to its id and type
        CODEC.decode(bytes(out), blob_aad(BlobType.TREE, bid), what="t")


def test_staging_buffer_is_small_then_a_whole_chunk() -> None:
    # A thread staging only small payloads keeps a small mapping; its first payload
    # above that gets room for the largest chunk at once, resident from the start
    # (memory then does not creep up with the largest chunk met); a payload above
    # the largest chunk (a big tree) is staged in a buffer of its own.
    def stage_in_a_thread(sizes: tuple[int, ...]) -> list[int]:
        lengths: list[int] = []

        def work(_: int) -> None:
            for size in sizes:
                data = os.urandom(size)
                with CODEC.staged(data) as payload:
                    assert payload[0] == FLAG_RAW  # random bytes do not compress
                    out = bytearray(sealed_size(len(payload) - 1))
                    CODEC.seal_payload_into(payload, b"aad", memoryview(out))
                assert CODEC.decode(bytes(out), b"aad", what="t") == data
                lengths.append(len(CODEC._local.staging))

        run_in_threads(work, n=1)
        return lengths

    assert stage_in_a_thread((100, STAGING_SMALL - 1, 10)) == [STAGING_SMALL] * 3
    big = stage_in_a_thread((100, STAGING_SMALL, (3 << 20) + 1, 9 << 20, 4 << 20, 10))
    assert big == [STAGING_SMALL] + [STAGING_KEPT] * 5


def test_threads_seal_into_the_same_packs(tmp_path: Path) -> None:
    store, index, uploader, saver = make_saver(tmp_path, pack_size=1 << 20)
    rng = random.Random(7)
    blobs = [rng.randbytes(rng.randrange(1, 300_000)) for _ in range(120)]
    blobs += [b"same blob" * 1000] * 8  # saved once however many threads offer it
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for data in blobs[k::4]:
                saver.save(BlobType.DATA, data)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    run_in_threads(work)
    uploader.flush()
    uploader.close()
    assert errors == []
    expected = {blob_id(d): d for d in blobs}
    assert stored_blobs(store) == expected
    assert uploader.stats.new_blobs == len(expected)
    assert all(index.get(bid) is not None for bid in expected)
    assert uploader.stats.packs > 5  # the packs filled up and were uploaded along the way
    # Every id left the claimed set once its pack was indexed: the set does not
    # grow with the backup; the index answers for them.
    assert uploader._claimed == set() and not saver.unknown(list(expected))


def test_a_slot_that_does_not_fit_closes_the_pack_for_the_next(tmp_path: Path) -> None:
    store, _, uploader, _ = make_saver(tmp_path, pack_size=1 << 20)
    capacity = uploader.pack_size + PACK_SLACK  # of a fresh pack buffer
    with uploader.slot(BlobType.DATA, b"a" * 32, 0, 1000, 1000) as small:
        with uploader.slot(BlobType.DATA, b"b" * 32, 0, capacity, capacity) as big:
            # The open slot's buffer cannot be resized under its writer: the big
            # blob starts a pack of its own.
            assert big.obj is not small.obj and len(big) == capacity
            big[:] = b"y" * capacity
        assert list(store.list("data/")) == []
        small[:] = b"x" * 1000
    # The first pack went up when its last slot was filled; the big one is full too.
    uploader.flush()
    uploader.close()
    sizes = sorted(info.size for info in store.list("data/"))
    # Each pack holds its one blob (and its header).
    assert len(sizes) == 2 and 1000 < sizes[0] < 2000 and capacity < sizes[1] < capacity + 1000


def test_packs_stay_within_their_size(tmp_path: Path) -> None:
    # A blob that would take the open pack past pack_size starts the next pack
    # (also when every slot of the open one is filled, so that its upload falls to
    # the call that closes it); only a blob larger than pack_size makes a larger pack.
    store, _, uploader, saver = make_saver(tmp_path, pack_size=1 << 20)
    rng = random.Random(3)
    blobs = [rng.randbytes(rng.randrange(50_000, 400_000)) for _ in range(40)] + [rng.randbytes(3 << 20)]
    for data in blobs:
        saver.save(BlobType.DATA, data)
    uploader.flush()
    uploader.close()
    sizes = sorted(info.size for info in store.list("data/"))
    header = 2000  # the sealed pack header of a few blobs
    assert sizes[-1] > 3 << 20  # the large blob's own pack
    assert all(size <= (1 << 20) + header for size in sizes[:-1])
    assert sorted(stored_blobs(store).values()) == sorted(blobs)


def test_a_blob_larger_than_the_pack_buffer_grows_it(tmp_path: Path) -> None:
    # A tree blob of a directory with ~100,000 entries is larger than a pack's
    # buffer (pack size + 5 MiB). The buffer grows; before it was a private
    # mapping, the first write into the grown part was a SIGBUS.
    store, _, uploader, saver = make_saver(tmp_path, pack_size=1 << 20)
    saver.save(BlobType.TREE, b"t" * 1000)
    big = os.urandom(8 << 20)
    saver.save(BlobType.TREE, big)
    uploader.flush()
    uploader.close()
    assert stored_blobs(store)[blob_id(big)] == big


def test_a_slot_that_could_not_be_filled_fails_the_backup_and_its_pack(tmp_path: Path) -> None:
    store, _, uploader, saver = make_saver(tmp_path)
    saver.save(BlobType.DATA, b"good" * 100)
    with pytest.raises(OSError, match="sealing failed"), uploader.slot(BlobType.DATA, b"c" * 32, 0, 100, 100):
        raise OSError("sealing failed")
    with pytest.raises(OSError, match="sealing failed"), uploader.slot(BlobType.DATA, b"d" * 32, 0, 100, 100):
        pass
    with pytest.raises(OSError, match="sealing failed"):
        uploader.flush()
    uploader.close()
    # The pack holding the unfilled slot (and the good blob beside it) never went up.
    assert list(store.list("data/")) == []


def test_a_failed_seal_is_not_recorded_as_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, uploader, saver = make_saver(tmp_path)

    def broken(*args: object) -> None:
        raise ValueError("no entropy")

    monkeypatch.setattr(saver.codec, "seal_payload_into", broken)
    with pytest.raises(ValueError, match="no entropy"):
        saver.save(BlobType.DATA, b"data" * 100)
    assert saver.unknown([blob_id(b"data" * 100)])
    uploader.close()


def test_flush_refuses_while_a_slot_is_open(tmp_path: Path) -> None:
    _, _, uploader, _ = make_saver(tmp_path)
    with uploader.slot(BlobType.DATA, b"e" * 32, 0, 100, 100) as out:
        out[:] = b"e" * 100
        with pytest.raises(RuntimeError, match="flush while blobs are being saved"):
            uploader.flush()
    uploader.close()


def test_pack_buffers_are_reused_after_upload(tmp_path: Path) -> None:
    store, _, uploader, saver = make_saver(tmp_path, pack_size=1 << 20)
    for i in range(12):
        saver.save(BlobType.DATA, os.urandom(300_000) + bytes([i]))
    uploader.flush()
    reused = list(uploader._free)
    uploader.close()
    assert reused and all(p.size == 0 and p.entries == [] and p.writers == 0 for p in reused)
    assert len(stored_blobs(store)) == 12


def test_finished_uploads_are_not_kept(tmp_path: Path) -> None:
    # Memory must not grow with the number of packs: a finished upload is dropped,
    # and flush waits only for those still running.
    store, _, uploader, saver = make_saver(tmp_path, pack_size=1 << 20)
    most = 0
    for i in range(60):
        saver.save(BlobType.DATA, os.urandom(300_000) + bytes([i]))
        most = max(most, len(uploader._pending))
    uploader.flush()
    assert uploader.stats.packs >= 15
    assert most <= 3  # max_inflight (2), and one whose callback has not run yet
    assert not uploader._pending
    uploader.close()
    assert len(stored_blobs(store)) == 60


def test_a_failed_upload_still_fails_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _, uploader, saver = make_saver(tmp_path, pack_size=1 << 20)

    def refuse(name: str, data: object, **kw: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "put", refuse)
    for i in range(8):  # several packs: the failed uploads have finished before flush
        with contextlib.suppress(OSError):
            saver.save(BlobType.DATA, os.urandom(300_000) + bytes([i]))
    with pytest.raises(OSError, match="disk full"):
        uploader.flush()
    uploader.close()


def test_data_pack_buffers_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The open pack and the packs uploading or waiting to: max_inflight + 1 buffers,
    # however slow the uploads are next to four threads saving blobs.
    store, _, uploader, saver = make_saver(tmp_path, pack_size=1 << 20)
    real_put = store.put

    def slow_put(name: str, data: object, **kw: object) -> None:
        threading.Event().wait(0.02)
        real_put(name, data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "put", slow_put)
    made = []
    real_init = pack_writer._Pack.__init__

    def counted_init(self: pack_writer._Pack, capacity: int, blob_type: BlobType) -> None:
        made.append(capacity)
        real_init(self, capacity, blob_type)

    monkeypatch.setattr(pack_writer._Pack, "__init__", counted_init)
    rng = random.Random(9)
    blobs = [rng.randbytes(rng.randrange(100_000, 300_000)) for _ in range(120)]

    def work(k: int) -> None:
        for data in blobs[k::4]:
            saver.save(BlobType.DATA, data)

    run_in_threads(work)
    uploader.flush()
    uploader.close()
    assert len(made) == 3  # max_inflight (2) + the open pack
    assert uploader.stats.packs >= 20
    assert sorted(stored_blobs(store).values()) == sorted(blobs)


def test_tree_pack_buffers_do_not_become_data_buffers(tmp_path: Path) -> None:
    # Tree packs filled mid-backup (a volume of many files) are uploaded, and their
    # buffers closed: reused for data, each was one data buffer more than the bound
    # for the rest of the backup (16 MiB of memory per 16 MiB of trees).
    store, _, uploader, saver = make_saver(tmp_path, pack_size=1 << 20)
    rng = random.Random(5)
    trees = [rng.randbytes(300_000) for _ in range(16)]
    data = [rng.randbytes(300_000) for _ in range(24)]
    for i, tree in enumerate(trees):  # trees between data blobs, as a backup walks
        saver.save(BlobType.TREE, tree)
        for d in data[i * 3 // 2 : (i + 1) * 3 // 2]:
            saver.save(BlobType.DATA, d)
    uploader.flush()
    free = list(uploader._free)
    uploader.close()
    assert uploader.stats.packs >= 10  # several tree packs went up before the end
    assert len(free) <= 3 and all(p.blob_type == BlobType.DATA for p in free)
    assert sorted(stored_blobs(store).values()) == sorted(trees + data)


def test_packs_and_index_files_are_bounded_by_blob_count(tmp_path: Path) -> None:
    # Tiny blobs (one-line files) fill a pack by count long before its size: each
    # one is held as an entry until its pack is in an index file, so packs close at
    # pack_max_blobs and an index file is written every index_max_blobs blobs.
    store = FileStore(tmp_path / "repo")
    index = Index()
    uploader = PackUploader(store, CODEC, index, pack_max_blobs=100, index_max_blobs=250)
    saver = BlobSaver(blob_id, CODEC, uploader)
    blobs = [f"line {i}\n".encode() for i in range(1000)]
    most_claimed = 0
    for b in blobs:
        saver.save(BlobType.DATA, b)
        most_claimed = max(most_claimed, len(uploader._claimed))
    uploader.flush()
    uploader.close()
    counts = []
    for info in store.list("data/"):
        raw = store.get(info.name)
        counts.append(len(decode_pack_header(CODEC, raw, len(raw), info.name)))
    assert sum(counts) == 1000 and max(counts) == 100
    index_files = list(store.list("index/"))
    assert 4 <= len(index_files) <= 5  # every 300 blobs (3 packs), and the rest at flush
    assert most_claimed <= 400  # in flight: the open pack, those uploading, the unindexed
    assert sorted(stored_blobs(store).values()) == sorted(blobs)
    assert all(blob_id(b) in index for b in blobs)


def test_writers_waiting_for_a_buffer_fail_when_an_upload_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every buffer is full and uploading when the uploads fail: the writers waiting
    # for one get the error instead of waiting for ever.
    store, _, uploader, saver = make_saver(tmp_path, pack_size=1 << 20)

    def failing_put(name: str, data: object, **kw: object) -> None:
        threading.Event().wait(0.05)
        raise OSError("disk full")

    monkeypatch.setattr(store, "put", failing_put)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(40):
                saver.save(BlobType.DATA, rng.randbytes(300_000))
        except OSError as e:
            errors.append(e)

    threads = run_in_threads(work, timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert len(errors) == 4 and all("disk full" in str(e) for e in errors)
    with pytest.raises(OSError, match="disk full"):
        uploader.flush()
    uploader.close()
