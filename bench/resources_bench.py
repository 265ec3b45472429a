"""Speed of the resource backup and restore engines on 10,000 small objects.

Starts its own Kubernetes test cluster (``../shared/testcluster``) in a
temporary directory, creates a namespace with N objects (half ConfigMaps,
half Secrets, ~1 KB each), then

* backs the namespace up with ``dr.backup.resources.backup_resources`` into a
  JSON-lines file (a stand-in for the repository sink: memory does not grow
  with the objects),
* restores the file with ``dr.restore.resources.restore_resources`` into a new
  namespace (namespace mapping),

and prints objects/s both ways and the process's peak RSS after each phase.
Stops the cluster at the end. Not a test: figures depend on the machine.

    .venv/bin/python bench/resources_bench.py [--objects 10000] [--workers 12]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dr.backup.resources import backup_resources
from dr.backup.scope import BackupScope
from dr.kube.client import KubeClient, connect
from dr.kube.objects import ResourceItem
from dr.restore.plan import RestoreOptions
from dr.restore.resources import restore_resources

PROJECT = Path(__file__).resolve().parent.parent
TESTCLUSTER = Path(os.environ.get("TESTCLUSTER", PROJECT.parent / "shared" / "testcluster" / "testcluster"))


class JsonLinesSink:
    """Writes ``{"item": …, "object": …}`` lines to a file; what the repository sink stands in for."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.count = 0

    def add(self, item: ResourceItem, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps({"item": item.model_dump(), "object": obj}) + "\n")
        self.count += 1


def read_items(path: Path) -> Iterator[tuple[ResourceItem, dict[str, Any]]]:
    with path.open() as f:
        for line in f:
            doc = json.loads(line)
            yield ResourceItem.model_validate(doc["item"]), doc["object"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def populate(kube: KubeClient, namespace: str, count: int, workers: int) -> None:
    kube.call(
        "POST",
        "/api/v1/namespaces",
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    filler = "x" * 900

    def make(i: int) -> None:
        meta = {"name": f"obj-{i:05d}", "labels": {"app": "bench", "shard": str(i % 10)}}
        if i % 2:
            body = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
                    "data": {"value": base64.b64encode(f"{i}:{filler}".encode()[:650]).decode()}}  # fmt: skip
            kube.call("POST", f"/api/v1/namespaces/{namespace}/secrets", body=body)
        else:
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": meta,
                "data": {"value": f"{i}:{filler}"},
            }
            kube.call("POST", f"/api/v1/namespaces/{namespace}/configmaps", body=body)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(make, range(count)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=16, help="concurrent requests of the restore")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dr-resources-bench-") as tmp:
        cluster_dir = Path(tmp) / "cluster"
        started = subprocess.run(
            [sys.executable, str(TESTCLUSTER), "start", str(cluster_dir)], capture_output=True, text=True
        )
        if started.returncode != 0:
            print(started.stderr, file=sys.stderr)
            return 1
        try:
            kube = connect(started.stdout.strip(), None)
            t = time.perf_counter()
            populate(kube, "bench-src", args.objects, 16)
            print(f"created {args.objects} objects in {time.perf_counter() - t:.1f} s (setup, not measured)")
            print(f"peak RSS before backup: {peak_rss_mb():.0f} MB")

            dump = Path(tmp) / "backup.jsonl"
            with dump.open("w") as out:
                sink = JsonLinesSink(out)
                t = time.perf_counter()
                backup = backup_resources(kube, BackupScope(namespaces=["bench-src"]), sink)
                backup_s = time.perf_counter() - t
            print(
                f"backup:  {backup.total} objects in {backup_s:.2f} s = {backup.total / backup_s:,.0f} objects/s "
                f"(discovery {backup.timings.discovery_seconds:.2f} s, listing {backup.timings.listing_seconds:.2f} s, "
                f"phase {backup.phase}); peak RSS {peak_rss_mb():.0f} MB; {dump.stat().st_size / 1e6:.1f} MB JSON"
            )

            options = RestoreOptions(namespace_mapping={"bench-src": "bench-dst"}, workers=args.workers)
            t = time.perf_counter()
            restored = restore_resources(kube, read_items(dump), options, "bench", "bench-restore")
            restore_s = time.perf_counter() - t
            created = restored.counts.get("created", 0)
            print(
                f"restore: {created} objects created in {restore_s:.2f} s = {created / restore_s:,.0f} objects/s "
                f"({args.workers} workers, phase {restored.phase}, outcomes {restored.counts}); "
                f"peak RSS {peak_rss_mb():.0f} MB"
            )
            kube.close()
            return 0 if backup.phase == restored.phase == "Completed" else 1
        finally:
            subprocess.run([sys.executable, str(TESTCLUSTER), "stop", str(cluster_dir)], capture_output=True)


if __name__ == "__main__":
    raise SystemExit(main())
