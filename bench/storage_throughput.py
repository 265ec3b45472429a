"""Throughput of the object stores with repository-sized objects (16 MiB packs).

Starts its own SeaweedFS and fake-gcs-server on loopback (the test harness's
``tests.servers``), then for each backend (file, s3, s3 with multipart uploads
of 8 MiB parts instead of one PUT per pack, gs) measures: uploading packs one
after another and with 4 parallel workers, downloading them whole (1 and 4
workers), and ranged reads of 1 MiB at random offsets (4 workers). Prints MB/s
(10^6 bytes/s). Not a test: figures depend on the machine.

    .venv/bin/python bench/storage_throughput.py [--packs 8] [--backends file,s3,s3-multipart,gs]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dr.storage.base import ObjectStore
from dr.storage.file import FileStore

MiB = 1024 * 1024
PACK = 16 * MiB
RANGE = 1 * MiB
WORKERS = 4


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(store: ObjectStore, packs: int, ranges: int) -> dict[str, float]:
    data = [random.Random(i).randbytes(PACK) for i in range(packs)]
    names = [f"data/{i:02x}/{uuid.uuid4().hex}" for i in range(packs)]
    par_names = [f"data/{i:02x}/{uuid.uuid4().hex}" for i in range(packs)]
    total = packs * PACK / 1e6
    out: dict[str, float] = {}
    out["put 1 worker"] = total / timed(lambda: [store.put(n, d) for n, d in zip(names, data, strict=True)])
    with ThreadPoolExecutor(WORKERS) as pool:
        out[f"put {WORKERS} workers"] = total / timed(
            lambda: list(pool.map(lambda nd: store.put(*nd), zip(par_names, data, strict=True)))
        )
        out["get 1 worker"] = total / timed(lambda: [store.get(n) for n in names])
        out[f"get {WORKERS} workers"] = total / timed(lambda: list(pool.map(store.get, par_names)))
        rng = random.Random(1)
        picks = [(rng.choice(names), rng.randrange(0, PACK - RANGE)) for _ in range(ranges)]
        out[f"1 MiB ranges {WORKERS} workers"] = (
            ranges
            * RANGE
            / 1e6
            / timed(lambda: list(pool.map(lambda p: store.get_range(p[0], p[1], RANGE), picks)))
        )
    for n in names + par_names:
        store.delete(n)
    return out


@contextmanager
def servers_running(workdir: Path, want: set[str]) -> Iterator[dict[str, dict[str, str]]]:
    from tests import servers

    started: list[servers.Server] = []
    info: dict[str, dict[str, str]] = {}
    try:
        if want & {"s3", "s3-multipart"}:
            s3 = servers.seaweedfs(workdir / "seaweedfs").start()
            started.append(s3)
            info["s3"] = s3.info
        if "gs" in want:
            gs = servers.fake_gcs(workdir / "fakegcs").start()
            started.append(gs)
            info["gs"] = gs.info
        yield info
    finally:
        for s in started:
            s.stop()


def open_backend(kind: str, info: dict[str, dict[str, str]], workdir: Path) -> ObjectStore:
    if kind == "file":
        return FileStore(workdir / "file-repo")
    if kind in ("s3", "s3-multipart"):
        import boto3

        s3 = info["s3"]
        os.environ.update(
            AWS_ACCESS_KEY_ID=s3["access_key"],
            AWS_SECRET_ACCESS_KEY=s3["secret_key"],
            AWS_DEFAULT_REGION=s3["region"],
        )
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=s3["endpoint"]).create_bucket(Bucket=bucket)
        from dr.storage.s3 import MULTIPART_THRESHOLD, S3Settings, S3Store, make_client

        settings = S3Settings(bucket=bucket, root="repo/", endpoint=s3["endpoint"])
        threshold = 8 * MiB if kind == "s3-multipart" else MULTIPART_THRESHOLD
        return S3Store(
            settings, make_client(settings), url=f"s3://{bucket}/repo", multipart_threshold=threshold
        )
    if kind == "gs":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.storage import Client

        os.environ["STORAGE_EMULATOR_HOST"] = info["gs"]["endpoint"]
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        Client(project="bench", credentials=AnonymousCredentials()).create_bucket(bucket)
        from dr.storage.gcs import GCSStore

        return GCSStore.from_url(f"gs://{bucket}/repo")
    raise SystemExit(f"unknown backend {kind!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", type=int, default=8, help="16 MiB objects per phase (default 8)")
    parser.add_argument("--ranges", type=int, default=64, help="1 MiB ranged reads (default 64)")
    parser.add_argument("--backends", default="file,s3,s3-multipart,gs")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.backends.split(",") if k.strip()]
    with (
        tempfile.TemporaryDirectory(prefix="dr-bench-") as tmp,
        servers_running(Path(tmp), set(kinds)) as info,
    ):
        results = {}
        for kind in kinds:
            store = open_backend(kind, info, Path(tmp))
            try:
                results[kind] = measure(store, args.packs, args.ranges)
            finally:
                store.close()
            print(f"{kind}: done", file=sys.stderr)
    columns = list(next(iter(results.values())))
    print(f"{args.packs} x 16 MiB objects per phase; MB/s (10^6 bytes/s)")
    width = max(len(c) for c in columns) + 2
    print(f"{'backend':<10}" + "".join(f"{c:>{width}}" for c in columns))
    for kind, row in results.items():
        print(f"{kind:<10}" + "".join(f"{row[c]:>{width}.0f}" for c in columns))


if __name__ == "__main__":
    main()
