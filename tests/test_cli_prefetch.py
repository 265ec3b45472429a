"""The start-up read-ahead (dr.cli.prefetch): which files it names, and that the
forked child comes and goes without touching the command."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from dr.cli import prefetch
from dr.cli.startup_modules import MODULES

TAG = sys.implementation.cache_tag


def _site(tmp_path: Path) -> Path:
    """A sys.path entry: package ``pkg`` (compiled) with a module, a module left as
    source, an extension module, a data file; and a plain module ``solo``."""
    site = tmp_path / "site"
    pkg = site / "pkg"
    (pkg / "__pycache__").mkdir(parents=True)
    for stem in ("__init__", "compiled"):
        (pkg / f"{stem}.py").write_text("")
        (pkg / "__pycache__" / f"{stem}.{TAG}.pyc").write_bytes(b"")
    (pkg / "source_only.py").write_text("")
    (pkg / f"ext{EXTENSION_SUFFIXES[-1]}").write_bytes(b"")
    (pkg / "data").mkdir()
    (pkg / "data" / "model.json").write_text("{}")
    (site / "solo.py").write_text("")
    return site


def test_module_files_resolves_like_the_import_system(tmp_path: Path) -> None:
    site = _site(tmp_path)
    names = [
        "pkg",
        "pkg.compiled",
        "pkg.source_only",
        "pkg.ext",
        "pkg/data/model.json",
        "solo",
        "missing",  # skipped
        "pkg.missing",
        "missing.child",
    ]
    got = list(prefetch.module_files(names, [str(tmp_path / "nothing-here"), str(site)]))
    assert got == [
        str(site / "pkg" / "__pycache__" / f"__init__.{TAG}.pyc"),
        str(site / "pkg" / "__pycache__" / f"compiled.{TAG}.pyc"),
        str(site / "pkg" / "source_only.py"),
        str(site / "pkg" / f"ext{EXTENSION_SUFFIXES[-1]}"),
        str(site / "pkg" / "data" / "model.json"),
        str(site / "solo.py"),
    ]


def test_module_files_finds_shared_libraries_beside_the_mapped_ones() -> None:
    libc = next((f for f in prefetch.mapped_ranges() if os.path.basename(f).startswith("libc.so")), None)
    if libc is None:
        pytest.skip("no libc.so mapped (not glibc)")
    names = [f"lib:{os.path.basename(libc)}", "lib:libnot-there.so.9"]
    others = [f for f in prefetch.mapped_ranges() if f != libc]
    assert list(prefetch.module_files(names, [], others)) == [libc]
    assert list(prefetch.module_files(names, [], [libc, *others])) == []  # mapped: advised already


def test_a_library_by_the_name_of_a_mapped_one_is_not_looked_for_elsewhere(tmp_path: Path) -> None:
    # The directory of another mapped file comes first and holds a second copy
    # (a distribution's libpython beside libc, the interpreter's own elsewhere).
    own, other = tmp_path / "own", tmp_path / "other"
    own.mkdir()
    other.mkdir()
    for f in (own / "libpy.so.1", other / "libpy.so.1", other / "libc.so.6", other / "libssl.so.3"):
        f.write_bytes(b"")
    mapped = [str(other / "libc.so.6"), str(own / "libpy.so.1")]
    names = ["lib:libpy.so.1", "lib:libssl.so.3"]
    assert list(prefetch.module_files(names, [], mapped)) == [str(other / "libssl.so.3")]


def _elf64(segments: list[tuple[int, int, int]], *, order: str = "<", phoff: int = 64) -> bytes:
    """An ELF64 file header and program headers: (p_type, p_offset, p_filesz) each."""
    header = bytearray(phoff)
    header[:6] = b"\x7fELF\x02" + (b"\x01" if order == "<" else b"\x02")
    struct.pack_into(order + "Q", header, 0x20, phoff)
    struct.pack_into(order + "HH", header, 0x36, 56, len(segments))
    body = b"".join(
        struct.pack(order + "IIQQQQQQ", t, 5, off, 0, 0, size, size, 4096) for t, off, size in segments
    )
    return bytes(header) + body


@pytest.mark.parametrize("order", ["<", ">"])
def test_loaded_ranges_are_the_load_segments(order: str) -> None:
    head = _elf64([(6, 64, 224), (1, 0, 4000), (1, 4096, 9000), (4, 800, 36), (1, 16384, 0)], order=order)
    assert prefetch.loaded_ranges(head) == [(0, 4000), (4096, 9000)]


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\x7fELF",
        b"#!/bin/sh\n" + bytes(100),  # not ELF
        b"\x7fELF\x01\x01" + bytes(100),  # 32-bit
        b"\x7fELF\x02\x03" + bytes(100),  # no byte order
        _elf64([(1, 0, 4000)] * 3)[:-8],  # program headers cut short
    ],
)
def test_loaded_ranges_of_anything_else_are_none(head: bytes) -> None:
    assert prefetch.loaded_ranges(head) is None


def test_what_is_mapped_of_a_library_lies_in_its_load_segments() -> None:
    """Checked on this interpreter's own libraries, against what the loader mapped."""
    page = os.sysconf("SC_PAGE_SIZE")
    checked = 0
    for path, mapped in prefetch.mapped_ranges().items():
        with open(path, "rb") as f:
            loaded = prefetch.loaded_ranges(f.read(4096))
        if loaded is None:
            continue
        spans = [(off // page * page, off + size) for off, size in loaded]
        for off, size in mapped:
            assert any(lo <= off < hi for lo, hi in spans), (path, off, size, loaded)
        checked += 1
    assert checked >= 2  # the interpreter, libc


def test_advise_reads_what_is_loaded_of_a_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = tmp_path / "libx.so.1"
    library.write_bytes(_elf64([(1, 0, 4000), (1, 4096, 9000)]) + bytes(20000))
    not_elf = tmp_path / "ext.so"
    not_elf.write_bytes(b"text")
    module = tmp_path / "m.pyc"
    module.write_bytes(b"x" * 100)
    given = tmp_path / "python3"
    given.write_bytes(b"x" * 10000)
    advised: list[tuple[str, int, int]] = []
    real = os.posix_fadvise

    def record(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_WILLNEED
        advised.append((os.path.basename(os.readlink(f"/proc/self/fd/{fd}")), offset, length))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", record)
    files = [str(p) for p in (library, not_elf, module, given)]
    assert prefetch.advise(files, {str(given): [(0, 4096), (8192, 1808)]}) == 4
    assert advised == [
        ("libx.so.1", 0, 4000),
        ("libx.so.1", 4096, 9000),
        ("ext.so", 0, 0),
        ("m.pyc", 0, 0),
        ("python3", 0, 4096),
        ("python3", 8192, 1808),
    ]


def test_mapped_ranges_name_this_interpreters_files() -> None:
    ranges = prefetch.mapped_ranges()
    assert ranges and all(os.path.isabs(p) and os.path.isfile(p) for p in ranges)
    assert all(size > 0 and off >= 0 for spans in ranges.values() for off, size in spans)


def test_the_shipped_list_resolves_here() -> None:
    """The generated list names this environment's modules (a stale or broken list
    would make the read-ahead useless, not wrong)."""
    modules = [m for m in MODULES if ":" not in m and "/" not in m]
    files = list(prefetch.module_files(modules, sys.path))
    assert len(files) >= 0.9 * len(modules)
    assert any(f.endswith(f"restorer.{TAG}.pyc") or f.endswith("restorer.py") for f in files)


def test_the_shipped_list_has_every_dr_module_the_data_path_imports(tmp_path: Path) -> None:
    """dr's own modules that ``dr mover backup`` and ``dr mover restore`` import are all
    in the list: one added to their imports since ``scripts/startup_modules`` last ran is
    read from a cold disk when imported, one file at a time (stop 35 added five)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_bytes(b"x" * 1000)
    code = textwrap.dedent(
        """
        import sys
        from dr.cli.main import main
        data, target = sys.argv[1:3]
        for argv in (["repo", "init"], ["mover", "backup", data], ["mover", "restore", "latest", target]):
            try:
                main(["--quiet", *argv])
            except SystemExit as e:
                if e.code:
                    raise
        # A namespace package (dr.repo) has no file to read ahead.
        print(" ".join(sorted(m for m, mod in sys.modules.items() if (m == "dr" or m.startswith("dr."))
                              and getattr(getattr(mod, "__spec__", None), "has_location", False))))
        """
    )
    env = {**os.environ, "DR_REPO": f"file://{tmp_path / 'repo'}", "DR_CONFIG": "",
           "XDG_DATA_HOME": str(tmp_path / "xdg-data"), "XDG_CONFIG_HOME": str(tmp_path / "xdg-config")}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", code, str(data), str(tmp_path / "target")],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    imported = set(out.stdout.strip().splitlines()[-1].split())
    assert "dr.repo.restorer" in imported
    assert sorted(imported - set(MODULES)) == [], "rerun scripts/startup_modules"


def test_advise_counts_what_it_could_open(tmp_path: Path) -> None:
    there = tmp_path / "f"
    there.write_bytes(b"x" * 10000)
    assert prefetch.advise([str(there), str(tmp_path / "missing"), str(there)]) == 2


def test_advise_passes_over_what_cannot_be_read_ahead(tmp_path: Path) -> None:
    # A FIFO with no writer: opening it must not block, and a pipe takes no advice.
    # Named like a library, its headers cannot be read either (pread on a pipe).
    fifo, library_fifo = tmp_path / "fifo", tmp_path / "libpipe.so.1"
    os.mkfifo(fifo)
    os.mkfifo(library_fifo)
    there = tmp_path / "f"
    there.write_bytes(b"x")
    assert prefetch.advise([str(fifo), str(library_fifo), str(there)]) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["mover", "restore", "latest", "/t"], True),
        (["-v", "--quiet", "repo", "check"], True),
        (["restore", "latest"], True),
        (["--repo", "s3://b/p", "mover", "backup", "/data", "-o", "json"], True),  # a mover Job
        (["--config", "mover", "config", "check"], False),  # a config file named "mover"
        (["--repo=s3://b/p", "--quiet", "verify"], True),
        (["config", "check"], False),
        (["mover", "restore", "--help"], False),
        (["--version"], False),
        ([], False),
    ],
)
def test_only_repository_commands_read_ahead(args: list[str], expected: bool) -> None:
    assert prefetch.wanted(args) is expected


def test_global_value_options_are_the_clis() -> None:
    from dr.cli.main import cli

    takes_value = {
        opt
        for p in cli.params
        if not (getattr(p, "is_flag", False) or getattr(p, "count", False))
        for opt in p.opts
    }
    assert takes_value == prefetch.GLOBAL_VALUE_OPTIONS


def test_start_forks_a_child_that_is_reaped() -> None:
    # In a fresh interpreter: start() must run before any thread exists.
    code = textwrap.dedent(
        """
        import os, sys, threading
        from dr.cli import prefetch
        pid = prefetch.start(["mover", "restore", "latest", "/nowhere"])
        assert isinstance(pid, int) and pid > 0, pid
        # Gone already when the child was quicker than this line (Thread.start returns once the
        # thread runs, so a reaper not listed has ended): seen once in CI.
        reaper = next((t for t in threading.enumerate() if t.name == "dr-prefetch-reaper"), None)
        if reaper is not None:
            reaper.join(30)
            assert not reaper.is_alive()
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            print("reaped")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "reaped\n"
    assert out.stderr == ""


def test_start_does_nothing_when_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DR_NO_PREFETCH", "1")
    assert prefetch.start(["mover", "restore", "latest", "/t"]) is None
    monkeypatch.delenv("DR_NO_PREFETCH")
    assert prefetch.start(["config", "check"]) is None


def test_start_does_nothing_where_it_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    # No fork is made (or none could be): the command runs as it would without.
    monkeypatch.delenv("DR_NO_PREFETCH", raising=False)

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    assert prefetch.start(["mover", "restore", "latest", "/t"]) is None
    monkeypatch.delattr(os, "posix_fadvise")
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked without posix_fadvise"))
    assert prefetch.start(["mover", "restore", "latest", "/t"]) is None


def test_console_script_runs_the_cli_with_read_ahead(tmp_path: Path) -> None:
    """The installed ``dr`` goes through the read-ahead and still answers as before."""
    dr = Path(sys.executable).with_name("dr")
    if not dr.exists():
        pytest.skip("dr console script not installed beside this interpreter")
    assert "dr.cli.entry" in dr.read_text()  # the entry point that starts the read-ahead
    env = {**os.environ, "DR_REPO": f"file://{tmp_path / 'none'}", "XDG_CONFIG_HOME": str(tmp_path)}
    env.pop("DR_NO_PREFETCH", None)
    out = subprocess.run([str(dr), "repo", "info"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert str(tmp_path / "none") in out.stderr


def test_the_child_lets_go_of_the_commands_output(tmp_path: Path) -> None:
    """A caller reading the command's output to its end waits for the command only:
    the child points its standard streams at /dev/null first."""
    seen = tmp_path / "seen"
    code = textwrap.dedent(
        f"""
        import os
        from dr.cli.prefetch import _detach_stdio
        _detach_stdio()
        print("lost")
        with open({str(seen)!r}, "w") as f:
            f.write(" ".join(os.readlink(f"/proc/self/fd/{{fd}}") for fd in (0, 1, 2)))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout == out.stderr == ""
    assert seen.read_text().split() == [os.devnull] * 3
