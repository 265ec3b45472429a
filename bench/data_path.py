#!/usr/bin/env python3
"""Data-path benchmark: dr vs restic, side by side, in one run.

    .venv/bin/python bench/data_path.py [--work DIR] [--size 1|2|4|8] [--set gen|small|tiny] [--files N] [--s3]
                                        [--runs N] [--order alternate|dr-first|restic-first] [--cache cold|warm]

Makes the deterministic data set of ../shared/bench/gen.py (1 GiB; ``--size N``
adds N - 1 more, differently scrambled copies for N GiB of unique data), then
for each tool: full backup, incremental backup after ``gen.py --modify`` (1%
changed), full restore — into a local repository (and, with ``--s3``, into a
SeaweedFS bucket started for the run). Prints wall time, CPU time, peak RSS,
MB/s and repository size for each step and the ratios dr/restic. ``--set
small`` runs the same steps on 20,000 files of 100 B to 20 KiB in 210
directories (1% rewritten or added between the backups), where per-file and
per-directory costs count, not bytes; ``--files N`` makes it N files, 100 per
directory (memory per file shows at 150,000). ``--set tiny``: 400,000
one-line files, 400 per directory (``--files N``: N), where what a tool holds
per blob decides its memory. Not a test:
figures go into bench/RESULTS.md by hand, with the machine and date.

Every measured step starts from the same state for both tools: ``--cache
cold`` (the default; needs root) flushes dirty pages and drops the page cache
before each step, as on a node that has just started the restore. Without it
the order decides: restic writes its packs through the page cache and reads
them back from memory, dr writes around it (``O_DIRECT``) and reads from disk,
and dirty pages one step leaves behind are written back during the next.
``--runs N`` repeats the whole sequence and prints the median of each figure
and the range of each ratio. ``--order`` says which tool runs first in each
step: by default dr in odd runs and restic in even ones, so that what a step
leaves behind for the next falls on each tool in turn. Restores run in ABBA
order within each run (each tool once first and once last; the figure is each
tool's mean, and the order and times of the four are printed): on the VMs of
bench/RESULTS.md the first restore after the backups is the slower one
whichever tool runs it (2026-11-29). "restore + sync" adds the ``sync`` after each
restore: the time until the restored files are on disk (dr writes them around
the page cache, restic leaves them dirty in it). With ``--s3`` the tables add
the S3 server's own CPU time during each step: SeaweedFS runs on the same
cores, so what it spends is time neither tool gets (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import compileall
import functools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
GEN = Path(os.environ.get("DR_SHARED", ROOT.parent / "shared")) / "bench" / "gen.py"
DR = str(Path(sys.executable).parent / "dr")


@dataclass
class Measure:
    wall: float
    cpu: float
    rss_mb: float
    server_cpu: float | None = None  # the S3 server's CPU seconds during the step

    def mbps(self, nbytes: int) -> float:
        return nbytes / self.wall / 1e6


def combine(
    ms: list[Measure],
    center: Callable[[list[float]], float],
    peak: Callable[[list[float]], float] | None = None,
) -> Measure:
    """Several runs of one step as one: ``center`` of each time (and of the peak RSS,
    unless ``peak`` says otherwise); the server's CPU only if every run has it."""
    servers = [m.server_cpu for m in ms if m.server_cpu is not None]
    return Measure(
        center([m.wall for m in ms]),
        center([m.cpu for m in ms]),
        (peak or center)([m.rss_mb for m in ms]),
        center(servers) if len(servers) == len(ms) else None,
    )


# ext4 without a journal (as on the VMs of bench/RESULTS.md) does not hand out an
# inode for minutes after its deletion and checks every candidate for it: creating
# 20,000 files after 20,000 were deleted took 3-6 s of system time, against
# 0.3-0.5 s otherwise (`recently_deleted` under `ext4_create`; still so 70 s after
# the deletion), a penalty for whichever tool restored next. Trees of many files
# are therefore moved aside (``trash``) and deleted when the benchmark ends; a few
# large files are deleted at once.
MANY_FILES = 1000


def discard(path: Path, trash: Path) -> None:
    """Remove ``path`` from where it was: deleted, or moved into ``trash`` (deleted
    at the end) if it holds more than ``MANY_FILES`` files."""
    if not path.exists():
        return
    files = sum(len(names) for _, _, names in os.walk(path))
    if files > MANY_FILES:
        trash.mkdir(parents=True, exist_ok=True)
        path.rename(trash / f"{path.name}-{time.monotonic_ns()}")
    else:
        shutil.rmtree(path, ignore_errors=True)


def settle(cold: bool) -> None:
    """Write back dirty pages and, for ``--cache cold``, empty the page cache (before each measured step)."""
    os.sync()
    if cold:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def process_group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # Fields after the command name (which may hold spaces): state is [0],
            # pgrp [2], utime [11], stime [12].
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


# Runs a measured command for ``run``: waits for a byte on stdin (sent once the page
# cache is settled), then forks, execs the command, waits for it and writes its wall
# time and rusage (seconds; user and system CPU seconds; peak RSS in KiB) into the file
# named first. Linux starts a child's peak RSS at the high-water mark of the process it
# was forked from, so a command forked from this script directly reported at least this
# script's own peak (making 400,000 files took it past 200 MB, and every tool "peaked"
# there); forked from this small interpreter (python -S, a few MB), it reports its own.
LAUNCHER = """
import os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
sys.stdin.buffer.read(1)
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(out, "w") as f:
    f.write(f"{wall} {ru.ru_utime} {ru.ru_stime} {ru.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(
    argv: list[str], env: dict[str, str], *, cold: bool, server_cpu: Callable[[], float] | None = None
) -> tuple[Measure, str]:
    with tempfile.NamedTemporaryFile("r", prefix="dr-bench-rusage-") as usage:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", LAUNCHER, usage.name, *argv],
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # The launcher is up (and its own start-up is not timed) before the cache is dropped.
        settle(cold)
        server0 = server_cpu() if server_cpu else None
        out, err = proc.communicate(b"g")
        usage.seek(0)
        fields = usage.read().split()
    if proc.returncode != 0 or len(fields) != 4:
        raise SystemExit(
            f"{' '.join(argv)} failed ({proc.returncode}):\n{err.decode(errors='replace')[-2000:]}"
        )
    wall, utime, stime, maxrss_kb = float(fields[0]), float(fields[1]), float(fields[2]), int(fields[3])
    server = server_cpu() - server0 if server_cpu and server0 is not None else None
    return Measure(wall, utime + stime, maxrss_kb / 1024, server), out.decode()


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def scramble_copy(src: Path, dst: Path, key: int) -> None:
    """A copy whose every byte is XORed with ``key``: same shape, no shared chunks."""
    table = bytes(b ^ key for b in range(256))
    for f in src.rglob("*.bin"):
        out = dst / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(f.read_bytes().translate(table))


def make_dataset(base: Path, size: int, trash: Path, kind: str = "gen", files: int = 20_000) -> Path:
    data = base / "data"
    discard(data, trash)
    if kind == "small":
        make_small(data, files)
        return data
    if kind == "tiny":
        make_tiny(data, files)
        return data
    subprocess.run([sys.executable, str(GEN), str(data / "set0")], check=True)
    for k in range(1, size):
        scramble_copy(data / "set0", data / f"set{k}", 0x5A + k)
    return data


def modify(data: Path) -> None:
    subprocess.run([sys.executable, str(GEN), str(data / "set0"), "--modify"], check=True)


# ``--set small``: many small files in many directories, where per-file and
# per-directory costs (stat, open, one tree per directory) dominate, not bytes.
SMALL_FILES, PER_DIR = 20_000, 100
LOG_WORDS = "GET PUT /api/v1/pods /healthz volume bound pending ok error retry node-7 default".split()


def _small_body(rng: random.Random, i: int) -> bytes:
    n = rng.randint(100, 20_000)
    if i % 2:
        return rng.randbytes(n)
    lines = (f"2024-05-01 12:{i % 60:02}:{j % 60:02} INFO req={j} {rng.choice(LOG_WORDS)} "
             f"{rng.choice(LOG_WORDS)} dur={rng.getrandbits(10)}ms\n" for j in range(n // 40 + 1))  # fmt: skip
    return "".join(lines).encode()[:n]


def _small_path(root: Path, i: int) -> Path:
    return root / f"a{i // (PER_DIR * 20):02}" / f"b{(i // PER_DIR) % 20:02}" / f"f{i:05}.dat"


def make_small(data: Path, files: int) -> None:
    """``files`` files of 100 B to 20 KiB (half random, half log text; 20,000 are ~200 MB in
    210 directories)."""
    rng = random.Random(2026)
    for i in range(files):
        p = _small_path(data / "set0", i)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(_small_body(rng, i))


# ``--set tiny``: one-line files (a blob of ~40 bytes each), where what a tool holds per
# file or per blob decides its memory: 400,000 of them in 1,000 directories by default.
TINY_FILES, TINY_PER_DIR = 400_000, 400


def _tiny_path(root: Path, i: int) -> Path:
    return root / f"d{i // TINY_PER_DIR:04}" / f"line-{i:07}.txt"


def make_tiny(data: Path, files: int) -> None:
    """``files`` one-line files, 400 per directory, each line different."""
    for i in range(files):
        p = _tiny_path(data / "set0", i)
        if i % TINY_PER_DIR == 0:
            p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"%d %s\n" % (i, LOG_WORDS[i % len(LOG_WORDS)].encode()))


def modify_tiny(data: Path, files: int) -> None:
    """1% of the files rewritten."""
    for i in range(0, files, 100):
        _tiny_path(data / "set0", i).write_bytes(b"%d changed\n" % i)


def modify_small(data: Path, files: int) -> None:
    """1% of the files: 9 in 10 of them rewritten, 1 in 10 added."""
    rng = random.Random(4242)
    for i in range(0, files, 100):
        p = _small_path(data / "set0", i)
        if i % 1000 == 0:
            p = p.with_name(p.stem + "-new.dat")
        p.write_bytes(_small_body(rng, i))


class Tool:
    name = ""
    cold: bool  # drop the page cache before each step (``--cache``); set by each tool's constructor
    server_cpu: Callable[[], float] | None = None  # the S3 server's CPU seconds so far

    def run(self, argv: list[str], env: dict[str, str]) -> tuple[Measure, str]:
        return run(argv, env, cold=self.cold, server_cpu=self.server_cpu)

    def init(self) -> None:
        raise NotImplementedError

    def backup(self, path: Path) -> Measure:
        raise NotImplementedError

    def restore(self, target: Path) -> Measure:
        raise NotImplementedError

    def size(self) -> int:
        raise NotImplementedError


class DrTool(Tool):
    name = "dr"

    def __init__(self, work: Path, url: str | None, extra_env: dict[str, str], *, cold: bool) -> None:
        self.cold = cold
        self.repo_dir = work / "dr-repo"
        self.env = {
            **extra_env,
            "XDG_DATA_HOME": str(work / "dr-xdg-data"),
            "XDG_CONFIG_HOME": str(work / "dr-xdg-config"),
            "DR_REPO": url or f"file://{self.repo_dir}",
            "DR_CONFIG": str(work / "dr.yaml") if extra_env.get("DR_CONFIG_TEXT") else "",
        }
        if extra_env.get("DR_CONFIG_TEXT"):
            (work / "dr.yaml").write_text(extra_env["DR_CONFIG_TEXT"])
        self.url = url
        self.last: str | None = None

    def init(self) -> None:
        for d in (self.repo_dir, Path(self.env["XDG_DATA_HOME"]), Path(self.env["XDG_CONFIG_HOME"])):
            shutil.rmtree(d, ignore_errors=True)
        self.run([DR, "--quiet", "repo", "init"], self.env)

    def backup(self, path: Path) -> Measure:
        argv = [DR, "--quiet", "mover", "backup", str(path), "-o", "json"]
        if self.last:
            argv += ["--parent", self.last]
        m, out = self.run(argv, self.env)
        self.last = json.loads(out)["id"]
        return m

    def restore(self, target: Path) -> Measure:
        m, _ = self.run([DR, "--quiet", "mover", "restore", str(self.last), str(target)], self.env)
        return m

    def size(self) -> int:
        if self.url:
            _, out = self.run([DR, "--quiet", "repo", "info", "-o", "json"], self.env)
            return int(json.loads(out)["totalBytes"])
        return du(self.repo_dir)


class ResticTool(Tool):
    name = "restic"

    def __init__(self, work: Path, repo: str | None, extra_env: dict[str, str], *, cold: bool) -> None:
        self.cold = cold
        self.repo_dir = work / "restic-repo"
        self.repo = repo or str(self.repo_dir)
        self.env = {**extra_env, "RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(work / "restic-cache")}

    def init(self) -> None:
        shutil.rmtree(self.repo_dir, ignore_errors=True)
        self.run(["restic", "-q", "-r", self.repo, "init"], self.env)

    def backup(self, path: Path) -> Measure:
        m, _ = self.run(["restic", "-q", "-r", self.repo, "backup", str(path)], self.env)
        return m

    def restore(self, target: Path) -> Measure:
        m, _ = self.run(
            ["restic", "-q", "-r", self.repo, "restore", "latest", "--target", str(target)], self.env
        )
        return m

    def size(self) -> int:
        if self.repo.startswith("s3:"):
            _, out = self.run(["restic", "-r", self.repo, "stats", "--mode", "raw-data", "--json"], self.env)
            return int(json.loads(out)["total_size"])
        return du(self.repo_dir)


def bench(
    work: Path,
    size: int,
    s3: dict[str, str] | None = None,
    *,
    cold: bool = True,
    kind: str = "gen",
    files: int = SMALL_FILES,
    server_cpu: Callable[[], float] | None = None,
    dr_first: bool = True,
    trash: Path,
) -> list[dict[str, object]]:
    data = make_dataset(work, size, trash, kind, files)
    total = du(data)
    env: dict[str, str] = {}
    dr_url = restic_repo = None
    if s3:
        env = {"AWS_ACCESS_KEY_ID": s3["access_key"], "AWS_SECRET_ACCESS_KEY": s3["secret_key"],
               "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        dr_url = f"s3://{s3['bucket']}/dr"
        env["DR_CONFIG_TEXT"] = (
            f"repositories:\n  - name: bench\n    url: {dr_url}\n"
            f"    s3: {{endpoint: '{s3['endpoint']}', region: us-east-1, addressingStyle: path}}\n"
        )
        restic_repo = f"s3:{s3['endpoint']}/{s3['bucket']}/restic"
    tools: list[Tool] = [DrTool(work, dr_url, env, cold=cold), ResticTool(work, restic_repo, env, cold=cold)]
    for t in tools:
        t.server_cpu = server_cpu
    rows: list[dict[str, object]] = []
    for t in tools:
        t.init()
    # Which tool goes first in each step (--order): the first one meets what the steps
    # before left behind (dirty pages, the server's own work, and on a VM that hands
    # free memory back to its host, pages that cost a fault there to take again).
    if not dr_first:
        tools.reverse()
    for t in tools:
        m = t.backup(data)
        rows.append({"tool": t.name, "step": "full backup", "m": m, "bytes": total, "repo": t.size()})
    if kind == "small":
        modify_small(data, files)
    elif kind == "tiny":
        modify_tiny(data, files)
    else:
        modify(data)
    for t in tools:
        m = t.backup(data)
        rows.append({"tool": t.name, "step": "incremental", "m": m, "bytes": total, "repo": t.size()})
    # Restores in ABBA order, each tool once first and once last, and each tool's
    # figure the mean of its two: on the VMs of bench/RESULTS.md the first restore
    # after the backups is the slower one whichever tool runs it, so a fixed order
    # measures the order as much as the tools. A restore changes nothing in the
    # repository, so it can be run twice.
    restores: dict[str, list[tuple[int, Measure, Measure]]] = {}
    for position, t in enumerate((*tools, *reversed(tools)), start=1):
        target = work / f"restore-{t.name}"
        discard(target, trash)  # left by a killed run
        m = t.restore(target)
        # What the restore left in the page cache still has to reach the disk: dr
        # writes restored files around the cache (O_DIRECT), restic through it.
        t0 = time.perf_counter()
        os.sync()
        durable = Measure(m.wall + time.perf_counter() - t0, m.cpu, m.rss_mb, m.server_cpu)
        restores.setdefault(t.name, []).append((position, m, durable))
        discard(target, trash)
    for t in tools:
        done = restores[t.name]
        each = [(position, m.wall) for position, m, _ in done]
        rows.append({"tool": t.name, "step": "restore", "m": combine([m for _, m, _ in done], statistics.fmean, max),
                     "bytes": total, "repo": None, "each": each})  # fmt: skip
        rows.append({"tool": t.name, "step": "restore + sync", "m": combine([d for _, _, d in done], statistics.fmean, max),
                     "bytes": total, "repo": None})  # fmt: skip
    # The same order in every run, dr first, whichever ran first (summarize pairs rows by position).
    rows.sort(key=lambda r: (STEPS.index(str(r["step"])), r["tool"] != "dr"))
    return rows


def print_rows(rows: list[dict[str, object]], title: str) -> None:
    print(f"\n## {title}\n")
    measures = [r["m"] for r in rows]
    server = all(isinstance(m, Measure) and m.server_cpu is not None for m in measures)
    print(
        "| step | tool | wall s | CPU s | peak RSS MB | MB/s | repo MB |"
        + (" server CPU s |" if server else "")
    )
    print("|---|---|---:|---:|---:|---:|---:|" + ("---:|" if server else ""))
    for r in rows:
        m = r["m"]
        assert isinstance(m, Measure)
        repo = f"{int(r['repo']) / 1e6:.0f}" if r["repo"] else ""  # type: ignore[call-overload]
        extra = f" {m.server_cpu:.2f} |" if server and m.server_cpu is not None else ""
        print(f"| {r['step']} | {r['tool']} | {m.wall:.2f} | {m.cpu:.2f} | {m.rss_mb:.0f} | "
              f"{m.mbps(int(r['bytes'])):.0f} | {repo} |{extra}")  # type: ignore[call-overload]  # fmt: skip
    print("\n| step | dr/restic throughput | dr/restic CPU | dr/restic repo size |")
    print("|---|---:|---:|---:|")
    for step, (speed, cpu, size) in ratios(rows).items():
        print(f"| {step} | {speed:.2f}x | {cpu:.2f} | {f'{size:.2f}' if size else ''} |")
    each = [r for r in rows if "each" in r]
    if each:
        runs = sorted(
            (position, str(r["tool"]), wall)
            for r in each
            for position, wall in cast(list[tuple[int, float]], r["each"])
        )
        print("\nRestores (the figures above are each tool's mean), in the order run: "
              + ", ".join(f"{tool} {wall:.2f} s" for _, tool, wall in runs))  # fmt: skip


STEPS = ("full backup", "incremental", "restore", "restore + sync")


def ratios(rows: list[dict[str, object]]) -> dict[str, tuple[float, float, float | None]]:
    """Per step: (restic wall / dr wall, dr CPU / restic CPU, dr repo size / restic repo size)."""
    out: dict[str, tuple[float, float, float | None]] = {}
    for step in STEPS:
        d = next(r for r in rows if r["tool"] == "dr" and r["step"] == step)
        rs = next(r for r in rows if r["tool"] == "restic" and r["step"] == step)
        dm, rm = d["m"], rs["m"]
        assert isinstance(dm, Measure) and isinstance(rm, Measure)
        size = int(d["repo"]) / int(rs["repo"]) if d["repo"] else None  # type: ignore[call-overload]
        out[step] = (rm.wall / dm.wall, dm.cpu / rm.cpu, size)
    return out


def summarize(runs: list[list[dict[str, object]]], title: str) -> None:
    """Median of every figure over the runs, and the range of each ratio."""
    if len(runs) < 2:
        return
    med: list[dict[str, object]] = []
    for i, r in enumerate(runs[0]):
        ms = [m for run_rows in runs if isinstance(m := run_rows[i]["m"], Measure)]
        med.append({**{k: v for k, v in r.items() if k != "each"}, "m": combine(ms, statistics.median)})
    print_rows(med, f"{title}: median of {len(runs)} runs")
    print("\n| step | dr/restic throughput, each run |")
    print("|---|---|")
    per_run = [ratios(rows) for rows in runs]
    for step in STEPS:
        vals = [r[step][0] for r in per_run]
        print(f"| {step} | {', '.join(f'{v:.2f}x' for v in vals)} (min {min(vals):.2f}x) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    ap.add_argument("--size", type=int, default=1, choices=(1, 2, 4, 8), help="GiB of unique data")
    ap.add_argument("--set", dest="kind", choices=("gen", "small", "tiny"), default="gen",
                    help="gen: ../shared/bench/gen.py (default); small: 20,000 small files in 210 directories; "
                         "tiny: 400,000 one-line files in 1,000 directories")  # fmt: skip
    ap.add_argument("--files", type=int, help="files of --set small (default 20,000, 100 per directory) "
                                              "or --set tiny (default 400,000, 400 per directory)")  # fmt: skip
    ap.add_argument("--s3", action="store_true", help="also run against a SeaweedFS S3 server")
    ap.add_argument("--runs", type=int, default=1, help="repeat the whole sequence N times (median, ranges)")
    ap.add_argument("--order", choices=("alternate", "dr-first", "restic-first"), default="alternate",
                    help="which tool runs first in each step: alternate (default: dr in odd runs, "
                         "restic in even ones), or always the same")  # fmt: skip
    ap.add_argument("--cache", choices=("cold", "warm"), default="cold",
                    help="cold: drop the page cache before every step (default; needs root)")  # fmt: skip
    args = ap.parse_args()
    if args.files is None:
        args.files = TINY_FILES if args.kind == "tiny" else SMALL_FILES
    if not shutil.which("restic"):
        raise SystemExit("restic is not installed (apt-get install restic)")
    cold = args.cache == "cold"

    def dr_first(run: int) -> bool:
        return args.order == "dr-first" or (args.order == "alternate" and run % 2 == 0)

    def first_note(run: int) -> str:
        return f" ({'dr' if dr_first(run) else 'restic'} first)"

    what = f"{args.size} GiB" if args.kind == "gen" else f"{args.files:,} {args.kind} files"
    if cold and not os.access("/proc/sys/vm/drop_caches", os.W_OK):
        raise SystemExit("--cache cold needs root (it writes /proc/sys/vm/drop_caches); use --cache warm")
    work = args.work or Path(tempfile.mkdtemp(prefix="dr-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    # dr runs from this checkout (the README's editable install). Compile its modules
    # as pip does for an installed package (the image): with PYTHONDONTWRITEBYTECODE
    # set, as on these machines, every dr run would otherwise compile ~30 modules
    # from source first (0.06-0.1 s of each cold start, measured).
    compileall.compile_dir(ROOT / "dr", quiet=1)
    trash = work / "trash"  # see ``discard``
    if trash.exists():  # left by a run that was killed
        shutil.rmtree(trash)
        print("# deleted the trash a killed run left: restores of many files may be slower for minutes")
    ver = subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.strip()
    print(f"# dr data-path benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {os.cpu_count()} cores, "
          f"{ver}, page cache {args.cache} before each step, order {args.order}")  # fmt: skip
    try:
        local = []
        for i in range(args.runs):
            local.append(
                bench(
                    work / "local",
                    args.size,
                    cold=cold,
                    kind=args.kind,
                    files=args.files,
                    dr_first=dr_first(i),
                    trash=trash,
                )
            )
            print_rows(local[-1], f"local repository, {what}, run {i + 1}{first_note(i)}")
        summarize(local, f"local repository, {what}")
        if args.s3:
            sys.path.insert(0, str(ROOT))
            from tests import servers

            shutil.rmtree(work / "seaweedfs", ignore_errors=True)
            # SeaweedFS picks some ports itself: start again on fresh ones if one was taken.
            server = servers.start_with_retry(servers.seaweedfs, work / "seaweedfs")
            assert server.proc is not None
            server_pid = server.proc.pid
            try:
                import boto3

                info = server.info
                s3 = boto3.client("s3", endpoint_url=info["endpoint"], aws_access_key_id=info["access_key"],
                                  aws_secret_access_key=info["secret_key"], region_name="us-east-1")  # fmt: skip
                remote = []
                for i in range(args.runs):
                    bucket = f"bench{i}"
                    s3.create_bucket(Bucket=bucket)
                    remote.append(
                        bench(
                            work / "s3",
                            args.size,
                            {**info, "bucket": bucket},
                            cold=cold,
                            kind=args.kind,
                            files=args.files,
                            server_cpu=functools.partial(process_group_cpu, os.getpgid(server_pid)),
                            dr_first=dr_first(i),
                            trash=trash,
                        )
                    )
                    print_rows(remote[-1], f"SeaweedFS S3 repository, {what}, run {i + 1}{first_note(i)}")
                summarize(remote, f"SeaweedFS S3 repository, {what}")
            finally:
                server.stop()
    finally:
        shutil.rmtree(trash, ignore_errors=True)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
