"""Warm the page cache for the files a repository command is about to import.

A mover Job is a fresh process in a fresh pod, usually with a cold page cache:
before its first byte of data it imports ~450 modules (botocore, cryptography,
zstandard, the standard library) and reads botocore's endpoint and S3 models,
~430 files one after another, each read waiting on the disk. Measured on the
1 GiB benchmark set restoring from SeaweedFS, page cache dropped: the first
batch was planned 0.41-0.48 s after launch, against 0.25-0.27 s with those
files cached.

``start`` forks a child that asks the kernel to read each file of
``dr.cli.startup_modules`` ahead (``posix_fadvise(WILLNEED)``: the reads are
queued and run side by side) while the command imports; the import system
then finds most files cached or on their way. Measured as above,
alternating: the first batch at 0.35-0.38 s against 0.43-0.46 s, the whole
restore 1.70-1.73 s against 1.81-1.82 s. A child and not a thread: with a
list of the exact files, a child got the first batch to 0.30-0.31 s and a
thread to 0.34-0.36 s, handing the GIL back and forth with the imports at
every system call. The child is forked before any
thread exists, only makes system calls, ends with ``os._exit`` and is reaped
by a daemon thread; its CPU time counts in the command's (``wait4``). Module
names are resolved to files the way the import system finds them in
``sys.path``, so the list holds no paths of this machine; a name that
resolves to nothing is skipped. Of a shared library, only the ranges the
loader maps are read (its ELF ``PT_LOAD`` segments; for the interpreter's own
files, the ranges it has mapped): with this machine's unstripped builds
(debug symbols are most of libpython and of zstd's module), 42 MB instead of
the 91 MB of whole files, in the same time (1 GiB set, cold, alternating 10
times locally and 8 from SeaweedFS: 1.12-1.25 s against 1.12-1.22, and
1.25-1.51 against 1.26-1.48). Nothing here raises or delays the command:
all it gives is advice.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib.machinery import EXTENSION_SUFFIXES

# A range of a file: (offset, length); length 0 runs to the end.
Range = tuple[int, int]
# ELF64: e_phoff, e_phentsize, e_phnum of the file header; p_type, p_offset,
# p_filesz of a program header. "<" is replaced by the file's byte order.
_ELF64_HEADER = struct.Struct("<32xQ14xHH")
_ELF64_SEGMENT = struct.Struct("<I4xQ16xQ")
_HEAD = 4096  # bytes read for the headers (the program headers follow the file header)
# The tag of this interpreter's compiled modules, e.g. "cpython-311".
_TAG = sys.implementation.cache_tag or ""
# dr's global options that take a value (a test holds this equal to the CLI's).
GLOBAL_VALUE_OPTIONS = frozenset({"--config", "--repo", "--kubeconfig", "--context"})
# Commands that open a repository (what the list is made of); the rest import little.
REPOSITORY_COMMANDS = frozenset(
    {
        "mover",
        "repo",
        "verify",
        "forget",
        "prune",
        "key",
        "backup",
        "backups",
        "restore",
        "drill",
        "report",
        "status",
    }
)


def module_files(names: Iterable[str], path: list[str], mapped: Sequence[str] = ()) -> Iterator[str]:
    """The files the import system would read for ``names`` (dotted module names,
    parents before children), found in ``path`` (``sys.path``) or, for a package
    already imported, in its ``__path__``: a module's compiled ``.pyc``, a
    package's ``__init__`` one, an extension module's shared library. Names that
    resolve to nothing are skipped. ``pkg/rel/file`` names a data file in a
    package's directory; ``lib:NAME`` a shared library an extension module loads
    (libcrypto ...), looked for beside the files in ``mapped`` (``mapped_ranges``)
    and left out if a file of that name is mapped."""
    dirs: dict[str, list[str]] = {}  # package name -> its directories
    lib_dirs = list(dict.fromkeys(os.path.dirname(f) for f in mapped))
    mapped_names = {os.path.basename(f) for f in mapped}
    for name in names:
        if name.startswith("lib:"):
            # One mapped under that name is the one in use (advised with the mapped
            # files); another by that name elsewhere (a second libpython) is not read.
            if name[4:] in mapped_names:
                continue
            lib = next((p for p in (os.path.join(d, name[4:]) for d in lib_dirs) if os.path.exists(p)), None)
            if lib:
                yield lib
            continue
        if "/" in name:
            pkg, _, rel = name.partition("/")
            for d in _package_dirs(pkg, dirs, path):
                yield os.path.join(d, rel)
            continue
        parent, _, leaf = name.rpartition(".")
        search = _package_dirs(parent, dirs, path) if parent else path
        for d in search:
            pkg_dir = os.path.join(d, leaf)
            if os.path.exists(os.path.join(pkg_dir, "__init__.py")):
                dirs[name] = [pkg_dir]
                yield _compiled(pkg_dir, "__init__")
                break
            if os.path.exists(pkg_dir + ".py"):
                yield _compiled(d, leaf)
                break
            found = next(
                (p for p in (pkg_dir + ext for ext in EXTENSION_SUFFIXES) if os.path.exists(p)), None
            )
            if found:
                yield found
                break


def _compiled(directory: str, stem: str) -> str:
    """The module's ``.pyc`` where there is one (what the import system reads), else its source."""
    pyc = os.path.join(directory, "__pycache__", f"{stem}.{_TAG}.pyc")
    return pyc if os.path.exists(pyc) else os.path.join(directory, f"{stem}.py")


def _package_dirs(name: str, dirs: dict[str, list[str]], path: list[str]) -> list[str]:
    if name not in dirs:
        mod = sys.modules.get(name)
        found = list(getattr(mod, "__path__", None) or ())
        if not found:
            parent, _, leaf = name.rpartition(".")
            for d in _package_dirs(parent, dirs, path) if parent else path:
                if os.path.isdir(os.path.join(d, leaf)):
                    found = [os.path.join(d, leaf)]
                    break
        dirs[name] = found
    return dirs[name]


def mapped_ranges() -> dict[str, list[Range]]:
    """The files this process has mapped (the interpreter, its libraries) and the
    ranges of each that are mapped, in the order of ``/proc/self/maps``."""
    ranges: dict[str, list[Range]] = {}
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) < 6 or not fields[5].startswith("/"):
                    continue
                path = fields[5].strip()
                start, _, end = fields[0].partition("-")
                ranges.setdefault(path, []).append((int(fields[2], 16), int(end, 16) - int(start, 16)))
    except (OSError, ValueError):
        return {}
    return {path: r for path, r in ranges.items() if os.path.isfile(path)}


def loaded_ranges(head: bytes) -> list[Range] | None:
    """The ranges of an ELF file (64-bit) that the dynamic loader maps, its ``PT_LOAD``
    segments, read from the file's first bytes ``head``; None for anything else
    (another format, or program headers beyond ``head``): read it whole.

    A shared library's debugging symbols and string tables are not loaded, and
    in unstripped builds they are most of the file: libpython 23.1 MB of which
    5.7 MB are loaded, zstd's extension module 11.6 MB of which 0.95."""
    if len(head) < _ELF64_HEADER.size or head[:4] != b"\x7fELF" or head[4] != 2:  # 2: ELFCLASS64
        return None
    order = {1: "<", 2: ">"}.get(head[5])  # EI_DATA: little- or big-endian
    if order is None:
        return None
    phoff, phentsize, phnum = struct.unpack_from(order + _ELF64_HEADER.format[1:], head)
    segment = struct.Struct(order + _ELF64_SEGMENT.format[1:])
    if phentsize < segment.size or phoff + phnum * phentsize > len(head):
        return None
    ranges = []
    for i in range(phnum):
        p_type, p_offset, p_filesz = segment.unpack_from(head, phoff + i * phentsize)
        if p_type == 1 and p_filesz:  # PT_LOAD
            ranges.append((p_offset, p_filesz))
    return ranges


def _shared_library(path: str) -> bool:
    """Named like a file the loader maps: an extension module or a library (libssl.so.3)."""
    name = os.path.basename(path)
    return name.endswith(".so") or ".so." in name


def advise(files: Iterable[str], ranges: Mapping[str, Sequence[Range]] | None = None) -> int:
    """Ask the kernel to read each file ahead: the ``ranges`` given for it, else
    what the dynamic loader maps of an ELF file, else all of it; -> how many files it
    was asked for. Opened non-blocking: a FIFO by a listed name must not hold the
    child forever."""
    asked = 0
    for f in files:
        try:
            fd = os.open(f, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            todo = ranges.get(f) if ranges else None
            if todo is None and _shared_library(f):
                # The loader reads this page first in any case.
                todo = loaded_ranges(os.pread(fd, _HEAD, 0))
            for offset, length in todo if todo is not None else ((0, 0),):
                os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
            asked += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return asked


def wanted(args: Sequence[str]) -> bool:
    """Whether the command line runs a repository command: its first word that is
    neither an option nor the value of one of dr's global options
    (``dr --repo URL mover backup …``, as mover Jobs run it)."""
    if any(a in ("-h", "--help", "--version") for a in args):
        return False
    it = iter(args)
    for a in it:
        if a in GLOBAL_VALUE_OPTIONS:
            next(it, None)
        elif not a.startswith("-"):
            return a in REPOSITORY_COMMANDS
    return False


def start(args: Sequence[str]) -> int | None:
    """Fork the child that reads the startup files ahead; -> its pid, or None when
    the command needs no read-ahead, ``DR_NO_PREFETCH`` is set or the platform has
    no ``fork`` or ``posix_fadvise``. Call it before any thread is started."""
    if not wanted(args) or os.environ.get("DR_NO_PREFETCH"):
        return None
    if not hasattr(os, "fork") or not hasattr(os, "posix_fadvise"):
        return None
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # the child: the list, then system calls only, gone without Python's exit
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _detach_stdio()
            from dr.cli.startup_modules import MODULES

            mapped = mapped_ranges()
            advise(mapped, mapped)  # the interpreter's own pages, faulted in as it runs
            advise(module_files(MODULES, sys.path, list(mapped)))
        finally:
            os._exit(0)
    import threading

    threading.Thread(target=_reap, args=(pid,), name="dr-prefetch-reaper", daemon=True).start()
    return pid


def _detach_stdio() -> None:
    """Point the child's standard streams at /dev/null: a caller reading the
    command's output to its end must not wait for the child as well."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
