"""Speed and memory of Kubernetes resource backup and restore on 10,000 small objects.

Starts its own Kubernetes test cluster (``../shared/testcluster``) in a
temporary directory and fills a namespace with N objects (half ConfigMaps,
half Secrets, ~1 KB each). Two modes:

``--mode repository`` (default): the real commands, each as its own process —
``dr backup -n NS --no-data`` into a file:// repository (embedded defaults: a
local key under a temporary XDG home), then ``dr restore latest
--namespace-mapping NS=NEW`` — timed, with the peak RSS of the ``dr``
process from ``os.wait4``. Runs the smaller ``--compare`` size too, so the
memory figures show whether memory grows with the number of objects (it
must not: objects stream through in pages and ~1 MiB chunks). Exits 1 when a
phase misses its target (backup 20 s, restore 60 s for 10,000 objects) or
memory grows by more than a quarter.

``--mode engine``: the engines alone (``backup_resources`` into a JSON-lines
file standing in for the repository, ``restore_resources`` from it), peak RSS
of this process.

Prints objects/s both ways. Not a test: figures depend on the machine; they
go into bench/RESULTS.md ("Kubernetes resources") with machine and date.

    .venv/bin/python bench/resources_bench.py [--mode repository|engine] [--objects 10000]
        [--compare 2500] [--workers 16]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dr.backup.resources import backup_resources
from dr.backup.scope import BackupScope
from dr.kube.client import KubeClient, connect
from dr.kube.objects import ResourceItem
from dr.restore.plan import RestoreOptions
from dr.restore.resources import restore_resources

PROJECT = Path(__file__).resolve().parent.parent
TESTCLUSTER = Path(os.environ.get("TESTCLUSTER", PROJECT.parent / "shared" / "testcluster" / "testcluster"))
DR = str(Path(sys.executable).parent / "dr")
BACKUP_TARGET_S = 20.0  # for 10,000 objects
RESTORE_TARGET_S = 60.0
MEMORY_GROWTH_LIMIT = 1.25  # peak RSS at --objects over peak RSS at --compare


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


def engine_mode(kube: KubeClient, tmp: Path, args: argparse.Namespace) -> int:
    """The engines alone, in this process (the original benchmark)."""
    populate(kube, "bench-src", args.objects, 16)
    print(f"peak RSS before backup: {peak_rss_mb():.0f} MB")
    dump = tmp / "backup.jsonl"
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
    return 0 if backup.phase == restored.phase == "Completed" else 1


# --------------------------------------------------------------------------- through the repository


class Run(NamedTuple):
    seconds: float
    peak_rss_mb: float
    doc: dict[str, Any]


def run_dr(args: list[str], env: dict[str, str], tmp: Path) -> Run:
    """``dr ARGS`` as a child process: wall time, its own peak RSS (``os.wait4``), its JSON output."""
    out_path, err_path = tmp / "dr.out", tmp / "dr.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([DR, *args], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"dr {' '.join(args)} exited {proc.returncode}:\n{err_path.read_text()[-3000:]}")
    text = out_path.read_text()
    return Run(seconds, usage.ru_maxrss / 1024, json.loads(text) if text.strip().startswith("{") else {})


def repository_round(
    kube: KubeClient, kubeconfig: str, env: dict[str, str], tmp: Path, count: int
) -> tuple[Run, Run, int]:
    """Populate ``count`` objects, back them up and restore them mapped, each ``dr`` run measured."""
    src, dst = f"bench-src-{count}", f"bench-dst-{count}"
    t = time.perf_counter()
    populate(kube, src, count, 16)
    print(f"  created {count} objects in {time.perf_counter() - t:.1f} s (setup, not measured)")
    backup = run_dr(["--kubeconfig", kubeconfig, "backup", "-n", src, "--no-data", "-o", "json"], env, tmp)
    total = int(backup.doc.get("objects", 0))
    restore = run_dr(["--kubeconfig", kubeconfig, "restore", "latest", "--namespace-mapping", f"{src}={dst}",
                      "-o", "json"], env, tmp)  # fmt: skip
    created = int(restore.doc.get("counts", {}).get("created", 0))
    listed = kube.get(f"/api/v1/namespaces/{dst}/configmaps", query={"limit": "1"})
    if created < count or backup.doc.get("phase") != "Completed" or restore.doc.get("phase") != "Completed":
        raise SystemExit(f"round of {count}: backup {backup.doc.get('phase')}, restore {restore.doc.get('phase')}, "
                         f"created {created}")  # fmt: skip
    assert listed.get("items"), f"nothing restored into {dst}"
    return backup, restore, total


def repository_mode(kube: KubeClient, kubeconfig: str, tmp: Path, args: argparse.Namespace) -> int:
    home = tmp / "home"
    env = {**os.environ, "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config"),
           "HOME": str(home)}  # fmt: skip
    for var in ("DR_CONFIG", "DR_REPO", "KUBECONFIG"):
        env.pop(var, None)
    run_dr(["repo", "init"], env, tmp)
    sizes = sorted({args.compare, args.objects}) if args.compare else [args.objects]
    results: dict[int, tuple[Run, Run, int]] = {}
    for count in sizes:
        print(f"{count} objects:")
        backup, restore, total = repository_round(kube, kubeconfig, env, tmp, count)
        results[count] = (backup, restore, total)
        created = restore.doc["counts"]["created"]
        print(
            f"  backup:  {total} objects in {backup.seconds:.2f} s = {total / backup.seconds:,.0f} objects/s, "
            f"peak RSS {backup.peak_rss_mb:.0f} MB (listing {backup.doc['timings']['listingSeconds']:.2f} s)"
        )
        print(f"  restore: {created} objects created in {restore.seconds:.2f} s = "
              f"{created / restore.seconds:,.0f} objects/s, peak RSS {restore.peak_rss_mb:.0f} MB")  # fmt: skip
    repo_mb = sum(p.stat().st_size for p in (home / "data").rglob("*") if p.is_file()) / 1e6
    print(
        f"repository: {repo_mb:.1f} MB for {sum(r[2] for r in results.values())} objects in {len(sizes)} backups"
    )

    ok = True
    big = args.objects
    backup, restore, _ = results[big]
    if big == 10_000:
        for what, took, target in (("backup", backup.seconds, BACKUP_TARGET_S),
                                   ("restore", restore.seconds, RESTORE_TARGET_S)):  # fmt: skip
            verdict = "ok" if took < target else "MISSED"
            ok &= took < target
            print(f"target {what} < {target:.0f} s: {took:.1f} s {verdict}")
    else:
        print("(the time targets are for 10,000 objects; not checked)")
    if args.compare and args.compare != big:
        small_backup, small_restore, _ = results[args.compare]
        for what, small, large in (("backup", small_backup.peak_rss_mb, backup.peak_rss_mb),
                                   ("restore", small_restore.peak_rss_mb, restore.peak_rss_mb)):  # fmt: skip
            growth = large / small
            verdict = "flat" if growth <= MEMORY_GROWTH_LIMIT else "GROWS"
            ok &= growth <= MEMORY_GROWTH_LIMIT
            print(f"memory {what}: {small:.0f} MB at {args.compare} -> {large:.0f} MB at {big} "
                  f"(x{growth:.2f}) {verdict}")  # fmt: skip
    return 0 if ok else 1


def machine() -> str:
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()}, {cpus} CPUs, {mem:.0f} GiB, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["repository", "engine"], default="repository")
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument(
        "--compare", type=int, default=2_500, help="smaller run for the memory check; 0: none"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=16,
        help="restore requests in flight (engine mode; dr restore uses its default, 16)",
    )
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}; mode {args.mode}")

    with tempfile.TemporaryDirectory(prefix="dr-resources-bench-") as tmp_name:
        tmp = Path(tmp_name)
        cluster_dir = tmp / "cluster"
        started = subprocess.run(
            [sys.executable, str(TESTCLUSTER), "start", str(cluster_dir)], capture_output=True, text=True
        )
        if started.returncode != 0:
            print(started.stderr, file=sys.stderr)
            return 1
        kubeconfig = started.stdout.strip()
        try:
            kube = connect(kubeconfig, None)
            try:
                if args.mode == "engine":
                    return engine_mode(kube, tmp, args)
                return repository_mode(kube, kubeconfig, tmp, args)
            finally:
                kube.close()
        finally:
            subprocess.run([sys.executable, str(TESTCLUSTER), "stop", str(cluster_dir)], capture_output=True)


if __name__ == "__main__":
    raise SystemExit(main())
