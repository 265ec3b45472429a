"""``local://`` key files: created 0600, refused when others can read them, bound to the repository."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dr.crypto.providers.base import KeyProvider, KeyProviderError, Wrapped
from dr.crypto.providers.local import KEY_SIZE, LocalKeyProvider
from dr.crypto.providers.registry import open_provider
from dr.errors import InvalidInput
from tests.log_capture import DebugLogs, debug_logging

CTX = {"dr-repository": "a1" * 16}
OTHER_CTX = {"dr-repository": "b2" * 16}


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[DebugLogs]:
    with debug_logging(caplog) as logs:
        yield logs


@pytest.fixture
def umask_zero() -> Iterator[None]:
    # The most permissive umask: the provider must still create the file 0600.
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_creates_the_key_file_0600_in_a_0700_directory(tmp_path: Path, umask_zero: None) -> None:
    path = tmp_path / "config" / "dr" / "repo.key"
    p = LocalKeyProvider(path, create=True)
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    raw = base64.b64decode(path.read_text().strip(), validate=True)
    assert len(raw) == KEY_SIZE
    assert path.read_text().count("\n") == 1
    assert p.unwrap(w, CTX) == key
    # Creating again keeps the existing key (slots wrapped before still open).
    assert LocalKeyProvider(path, create=True).unwrap(w, CTX) == key
    assert base64.b64decode(path.read_text().strip()) == raw


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610, 0o601])
def test_refuses_a_key_file_others_can_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "repo.key"
    p = LocalKeyProvider(path, create=True)
    w = p.wrap(os.urandom(32), CTX)
    path.chmod(mode)
    for op in (lambda: p.unwrap(w, CTX), lambda: p.wrap(os.urandom(32), CTX), lambda: p.rewrap(w, CTX)):
        with pytest.raises(KeyProviderError) as e:
            op()
        assert e.value.reason == (
            f"key file is accessible by group or others (mode {mode:04o}); run: chmod 600 {path}"
        )
    path.chmod(0o600)
    assert len(p.unwrap(w, CTX)) == 32


def test_wrong_key_file(tmp_path: Path) -> None:
    a = LocalKeyProvider(tmp_path / "a.key", create=True)
    b = LocalKeyProvider(tmp_path / "b.key", create=True)
    w = a.wrap(os.urandom(32), CTX)
    b.wrap(os.urandom(32), CTX)  # creates b's key
    with pytest.raises(KeyProviderError) as e:
        b.unwrap(w, CTX)
    reason = "wrong key or context (the slot was not wrapped by this key file for this repository)"
    assert e.value.reason == reason
    assert str(e.value) == f"local://{tmp_path / 'b.key'}: {reason}"


def test_context_binds_the_slot_to_its_repository(tmp_path: Path) -> None:
    p = LocalKeyProvider(tmp_path / "k", create=True)
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    for other in (OTHER_CTX, {}, {**CTX, "extra": "x"}):
        with pytest.raises(KeyProviderError) as e:
            p.unwrap(w, other)
        assert e.value.reason.startswith("wrong key")
    # Tampering with the wrapped bytes fails the same way.
    flipped = bytes([w.ciphertext[0] ^ 1]) + w.ciphertext[1:]
    with pytest.raises(KeyProviderError, match=": wrong key or context "):
        p.unwrap(Wrapped(flipped), CTX)
    with pytest.raises(KeyProviderError, match=": wrong key or context "):
        p.unwrap(Wrapped(b"short"), CTX)
    assert p.unwrap(w, CTX) == key


def test_rewrap_refreshes_the_ciphertext(tmp_path: Path) -> None:
    p = LocalKeyProvider(tmp_path / "k", create=True)
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    w2 = p.rewrap(w, CTX)
    assert w2.ciphertext != w.ciphertext
    assert w2.key_version is None
    assert p.unwrap(w2, CTX) == key
    with pytest.raises(KeyProviderError, match=": wrong key or context "):
        p.rewrap(w, OTHER_CTX)


def test_key_file_problems(tmp_path: Path) -> None:
    missing = LocalKeyProvider(tmp_path / "missing")  # create=False: never invents a key to unwrap with
    with pytest.raises(KeyProviderError) as e:
        missing.wrap(os.urandom(32), CTX)
    assert e.value.reason == "key file does not exist"
    with pytest.raises(KeyProviderError) as e:
        missing.unwrap(Wrapped(b"x" * 60), CTX)
    assert e.value.reason == "key file does not exist"
    assert not (tmp_path / "missing").exists()

    bad = tmp_path / "bad"
    for content, reason in (
        ("not base64 !!\n", "key file is not a base64-encoded key"),
        (base64.b64encode(os.urandom(16)).decode() + "\n", "key file holds 16 bytes, expected 32"),
        ("\n", "key file holds 0 bytes, expected 32"),
    ):
        bad.write_text(content)
        bad.chmod(0o600)
        with pytest.raises(KeyProviderError) as e:
            LocalKeyProvider(bad).unwrap(Wrapped(b"x" * 60), CTX)
        assert e.value.reason == reason
    bad.write_bytes(b"\xff\xfe\xfd")
    with pytest.raises(KeyProviderError) as e:
        LocalKeyProvider(bad).unwrap(Wrapped(b"x" * 60), CTX)
    assert e.value.reason == "key file is not a base64-encoded key"


def test_wrapped_key_and_logs_hold_no_plaintext(tmp_path: Path, debug_logs: DebugLogs) -> None:
    import logging

    logging.getLogger("dr.test").debug("local provider log capture starts")
    p = LocalKeyProvider(tmp_path / "k", create=True)
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    assert p.unwrap(p.rewrap(w, CTX), CTX) == key
    with pytest.raises(KeyProviderError) as e:
        p.unwrap(w, OTHER_CTX)
    file_key = (tmp_path / "k").read_text().strip()
    forms = [key.hex(), base64.b64encode(key).decode(), repr(key)[2:-1]]
    for form in [*forms, file_key]:
        assert form.encode() not in w.ciphertext
        assert form not in str(e.value)
    assert key not in w.ciphertext
    debug_logs.assert_clean([*forms, file_key])


def test_registry_opens_local_uris(tmp_path: Path) -> None:
    p = open_provider(f"local://{tmp_path / 'k'}", create=True)
    assert isinstance(p, LocalKeyProvider) and isinstance(p, KeyProvider)
    assert p.uri == f"local://{tmp_path / 'k'}"
    p.wrap(os.urandom(32), CTX)
    assert _mode(tmp_path / "k") == 0o600
    for bad in ("local://relative/key", "local://host/abs"):
        with pytest.raises(InvalidInput, match="use local:///absolute/path/to/keyfile"):
            open_provider(bad)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.binary(min_size=32, max_size=32),
    context=st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=40), max_size=3),
)
def test_roundtrip_any_key_and_context(tmp_path: Path, key: bytes, context: dict[str, str]) -> None:
    p = LocalKeyProvider(tmp_path / "prop.key", create=True)
    w = p.wrap(key, context)
    assert p.unwrap(w, context) == key
    with pytest.raises(KeyProviderError, match=": wrong key or context "):
        p.unwrap(w, {**context, "dr-other": "x"})


def _unwrap_within(p: LocalKeyProvider, seconds: float = 5) -> KeyProviderError:
    """``p.unwrap``'s error; fails (instead of hanging the run) if it blocks."""
    import threading

    out: list[BaseException] = []

    def run() -> None:
        try:
            p.unwrap(Wrapped(b"x" * 60), CTX)
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"unwrap with {p.uri} blocked"
    assert len(out) == 1 and isinstance(out[0], KeyProviderError), out
    return out[0]


def test_a_key_path_that_is_not_a_small_regular_file_is_refused_without_blocking(tmp_path: Path) -> None:
    # A key slot's provider URI comes from unauthenticated storage: it may name anything.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    (tmp_path / "to-fifo").symlink_to(fifo)
    (tmp_path / "dir").mkdir(mode=0o700)
    big = tmp_path / "big"
    big.write_bytes(b"A" * 10_000)
    big.chmod(0o600)
    for path, reason in (
        (fifo, "key file is not a regular file"),
        (tmp_path / "to-fifo", "key file is not a regular file"),
        (tmp_path / "dir", "key file is not a regular file"),
        ("/dev/null", "key file is not a regular file"),
        ("/dev/zero", "key file is not a regular file"),
        (big, "key file is larger than 4096 bytes: not a key file"),
        (tmp_path / "a\x00b", "cannot read the key file: embedded null byte"),
        (tmp_path / "big" / "x", "cannot read the key file: Not a directory"),
    ):
        assert _unwrap_within(LocalKeyProvider(path)).reason == reason, path
    # /proc/self/mem is a regular 0600 file whose reading fails (EIO): an error, not a crash.
    if os.path.exists("/proc/self/mem"):
        assert _unwrap_within(LocalKeyProvider("/proc/self/mem")).reason.startswith(
            "cannot read the key file: "
        )


def test_stdin_as_a_key_path_does_not_block() -> None:
    # local:///proc/self/fd/0 while stdin is a pipe nobody writes to.
    import subprocess
    import sys

    code = (
        "from dr.crypto.providers.local import LocalKeyProvider\n"
        "from dr.crypto.providers.base import KeyProviderError, Wrapped\n"
        "try:\n"
        "    LocalKeyProvider('/proc/self/fd/0').unwrap(Wrapped(b'x' * 60), {})\n"
        "except KeyProviderError as e:\n"
        "    print(e.reason)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("reading the key from stdin blocked")
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        out = proc.stdout.read()
        proc.stdout.close()
    assert out == "key file is not a regular file\n"


def test_os_errors_are_provider_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(KeyProviderError) as e:
        LocalKeyProvider(tmp_path / "file" / "k", create=True).wrap(os.urandom(32), CTX)
    assert e.value.reason == "cannot read the key file: Not a directory"
    # A directory that cannot be made (procfs refuses new entries).
    with pytest.raises(KeyProviderError) as e:
        LocalKeyProvider("/proc/self/dr-test/k", create=True).wrap(os.urandom(32), CTX)
    assert e.value.reason.startswith(("cannot create the key file: ", "permission denied creating"))


def test_a_key_file_is_created_whole_or_not_at_all(tmp_path: Path) -> None:
    # A full disk (here: a file-size limit of 0) while the new key is written must not
    # leave an empty key file behind: the next `dr repo init` or `dr key add` would
    # read it as a broken key ("holds 0 bytes") instead of creating one, and a
    # concurrent creator would read it half-written.
    import subprocess
    import sys

    path = tmp_path / "keys" / "repo.key"
    code = (
        "import os, resource, signal, sys\n"
        "from dr.crypto.providers.local import LocalKeyProvider\n"
        "from dr.crypto.providers.base import KeyProviderError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    LocalKeyProvider(sys.argv[1], create=True).wrap(os.urandom(64), {})\n"
        "except KeyProviderError as e:\n"
        "    print(e.reason)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert res.stdout == "cannot create the key file: File too large\n", res.stderr
    assert not path.exists()
    assert list(path.parent.iterdir()) == [], "no temporary file is left behind"
    # So a later attempt creates a working key file.
    p = LocalKeyProvider(path, create=True)
    key = os.urandom(64)
    assert p.unwrap(p.wrap(key, CTX), CTX) == key
    assert _mode(path) == 0o600


def test_a_new_key_file_is_synced_before_it_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The slot wrapped by a new key file goes to remote storage right away: the file
    # must be on disk first, or a crash can leave a slot whose key was never stored.
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "repo.key"
    LocalKeyProvider(path, create=True).wrap(os.urandom(64), CTX)
    assert path.stat().st_ino in synced
    assert tmp_path.stat().st_ino in synced, "the directory entry is synced too"


def test_a_key_file_on_a_file_system_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_zero: None
) -> None:
    import errno

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")  # what vfat answers

    monkeypatch.setattr(os, "link", no_link)
    path = tmp_path / "usb" / "break-glass.key"
    p = LocalKeyProvider(path, create=True)
    key = os.urandom(64)
    w = p.wrap(key, CTX)
    assert _mode(path) == 0o600 and [x.name for x in path.parent.iterdir()] == ["break-glass.key"]
    assert LocalKeyProvider(path, create=True).unwrap(w, CTX) == key
