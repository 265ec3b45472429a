"""The repository commands end to end through the CLI (file:// repository, local key)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import run_dr, run_dr_process
from tests.repo_helpers import describe_tree


@pytest.fixture
def home(isolated_home: Path) -> Path:
    return isolated_home


def _src(root: Path) -> Path:
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.bin").write_bytes(os.urandom(2 << 20))
    (src / "b.txt").write_text("hello\n")
    return src


def test_embedded_defaults_end_to_end(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = run_dr(capsys, "repo", "init", "-o", "json")
    assert r.code == 0, r.err
    info = r.json()
    assert info["url"] == f"file://{home}/data/dr/repo"
    key = home / "config" / "dr" / "repo.key"
    assert key.stat().st_mode & 0o777 == 0o600

    src = _src(home)
    r = run_dr(capsys, "mover", "backup", str(src), "--tag", "app=web", "-o", "json")
    assert r.code == 0, r.err
    first = r.json()
    assert first["files"] == 2 and first["bytes"] == (2 << 20) + 6 and first["newBytes"] > 0
    r = run_dr(
        capsys, "mover", "backup", str(src), "--parent", first["id"][:8], "--tag", "app=web", "-o", "json"
    )
    second = r.json()
    assert second["unchangedFiles"] == 2 and second["newBlobs"] == 0

    r = run_dr(capsys, "repo", "info", "-o", "json")
    assert r.json()["snapshots"]["volume"] == 2
    assert len(r.json()["keySlots"]) == 1

    out = home / "out"
    r = run_dr(capsys, "mover", "restore", second["id"], str(out), "-o", "json")
    assert r.code == 0, r.err
    assert describe_tree(out) == describe_tree(src)
    r = run_dr(capsys, "mover", "restore", first["id"][:10], str(home / "part"), "--path", "sub")
    assert (
        r.code == 0 and (home / "part" / "sub" / "a.bin").exists() and not (home / "part" / "b.txt").exists()
    )

    r = run_dr(capsys, "repo", "check", "--read-data=50%", "-o", "json")
    assert r.code == 0 and r.json()["ok"] and r.json()["packsRead"] >= 1
    r = run_dr(capsys, "verify", "latest", "--read-data")
    assert r.code == 0, r.err
    # a bare --read-data takes no value from the next argument: that is the id to verify
    r = run_dr(capsys, "verify", "--read-data", second["id"][:8], "-o", "json")
    assert r.code == 0 and r.json()["packsRead"] >= 1, r.err
    r = run_dr(capsys, "verify", "--read-data", "5", "-o", "json")  # "5": an id prefix, too short
    assert r.code == 2 and "too short" in r.err

    r = run_dr(capsys, "forget", "--keep-last", "1", "--prune", "--dry-run", "-o", "json")
    assert r.code == 0 and len(r.json()["removed"]) == 1
    r = run_dr(capsys, "forget", "--keep-last", "1", "--prune", "-o", "json")
    assert r.code == 0 and r.json()["removed"] == [first["id"]]
    r = run_dr(capsys, "repo", "info", "-o", "json")
    assert r.json()["snapshots"]["volume"] == 1


def test_snapshot_ids_are_hex_in_either_case(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `dr mover restore 785B3EB5` said "no volume snapshot with id" (an id copied from a tool that
    # shows hex in upper case).
    assert run_dr(capsys, "repo", "init").code == 0
    (home / "empty").mkdir()
    snap = run_dr(capsys, "mover", "backup", str(home / "empty"), "-o", "json").json()["id"]
    for ref in (snap[:8].upper(), snap.upper()):
        r = run_dr(capsys, "mover", "restore", ref, str(home / f"x-{len(ref)}"))
        assert r.code == 0, r.err


def test_errors_and_exit_codes(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = run_dr(capsys, "repo", "info")
    assert r.code == 1 and "no repository here" in r.err and "Traceback" not in r.err
    r = run_dr(capsys, "-v", "repo", "info")  # -v shows the traceback, as --help says
    assert r.code == 1 and "Traceback (most recent call last)" in r.err and "no repository here" in r.err
    assert run_dr(capsys, "repo", "init").code == 0
    r = run_dr(capsys, "repo", "init")
    assert r.code == 1 and "already exists" in r.err
    r = run_dr(capsys, "mover", "restore", "abcd", str(home / "x"))
    assert r.code == 2 and "no volume snapshot with id 'abcd'" in r.err
    missing = "ab" * 32
    r = run_dr(capsys, "mover", "restore", missing, str(home / "x"))
    assert r.code == 2 and f"no volume snapshot with id '{missing}'" in r.err and "Traceback" not in r.err
    (home / "empty").mkdir()
    r = run_dr(capsys, "mover", "backup", str(home / "empty"), "--parent", missing)
    assert r.code == 2 and f"no volume snapshot with id '{missing}'" in r.err
    r = run_dr(capsys, "forget")
    assert r.code == 2 and "no retention given" in r.err
    r = run_dr(capsys, "verify", "latest")
    assert r.code == 2 and "no backup found" in r.err

    # corruption -> verify exits 4 and names the object
    src = _src(home)
    run_dr(capsys, "mover", "backup", str(src))
    packs = list((home / "data" / "dr" / "repo" / "data").rglob("*"))
    pack = next(p for p in packs if p.is_file())
    data = bytearray(pack.read_bytes())
    data[100] ^= 0xFF
    pack.write_bytes(bytes(data))
    r = run_dr(capsys, "verify", "--all", "--read-data")
    assert r.code == 4
    assert pack.name in r.err
    r = run_dr(capsys, "mover", "restore", "latest", str(home / "out"))
    assert r.code == 3 and "could not be restored" in r.err


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "s3://bkt/p?endpoint=http://admin:SuperSecret123@minio:9000",
            "error: repository URL 's3://bkt/p?endpoint=***': endpoint must not contain credentials; ",
        ),
        ("s3://bkt/p?secretAccessKey=SuperSecret123", "(query parameter 'secretAccessKey')"),
        ("s3://AKIAX:Super/Secret123@bkt/p", "repository URL must not contain credentials"),
        ("gs://bkt/p?X-Goog-Signature=SuperSecret123", "(query parameter 'X-Goog-Signature')"),
        (
            "s3://bkt/p?endpoint=http://[::1&region=SuperSecret123",
            "error: repository URL 's3://bkt/p?endpoint=***&region=***': endpoint 'http://[::1' is malformed",
        ),
        (
            "s3://Bad_Bucket!/x?region=SuperSecret123",
            "error: repository URL 's3://Bad_Bucket!/x?region=***': invalid bucket name 'Bad_Bucket!': S3",
        ),
        ("gs://MyBucket/x", "invalid bucket name 'MyBucket': GCS bucket names are lower case"),
    ],
)
def test_a_bad_repository_url_is_one_line_without_its_secret(home: Path, url: str, expected: str) -> None:
    # A separate process: the real exit code and stderr, traceback or not.
    for verbose in ((), ("-v",)):
        r = run_dr_process(*verbose, "--repo", url, "repo", "info")
        assert r.code == 2, r.err
        assert "SuperSecret123" not in r.err + r.out and "Super/Secret123" not in r.err + r.out
        assert expected in r.err
        if not verbose:
            assert r.err.count("\n") == 1 and "Traceback" not in r.err, r.err


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("s3://AKIAXXXX:sekrit/p", "AWS credentials come from the standard chain"),
        ("s3://AKIAXXXX:sek/rit/p", "AWS credentials come from the standard chain"),
        ("gs://GOOGXXXX:sekrit/p", "Google credentials come from Application Default Credentials"),
    ],
)
def test_a_credential_without_its_at_sign_is_not_quoted_as_a_bucket_name(
    home: Path, url: str, hint: str
) -> None:
    # KEY:SECRET pasted without its '@' reads as a bucket named "KEY:SECRET"; the
    # refusal must not quote it, in the error line or in the logs at -vv.
    scheme = url.partition("://")[0]
    for verbose in ((), ("-v",), ("-vv",)):
        r = run_dr_process(*verbose, "--repo", url, "repo", "info")
        assert r.code == 2, r.err
        for part in ("sekrit", "sek/rit", "XXXX"):
            assert part not in r.err + r.out, r.err
        assert f"error: repository URL '{scheme}://***': invalid bucket name (contains ':'" in r.err
        assert hint in r.err
        if not verbose:
            assert r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
    config = home / "creds.yaml"
    config.write_text(f"repositories:\n  - name: main\n    url: '{url}'\n")
    r = run_dr_process("-vv", "config", "validate", str(config))
    assert r.code == 2, r.err
    assert "repositories[0].url: repository URL must not contain credentials" in r.err
    for part in ("sekrit", "sek/rit", "XXXX"):
        assert part not in r.err + r.out, r.err


def test_a_repository_path_that_is_a_file_is_one_line(home: Path) -> None:
    (home / "f").write_text("hi\n")
    r = run_dr_process("--repo", f"file://{home / 'f'}", "repo", "info")
    assert r.code == 1
    assert r.err == f"error: file://{home / 'f'}: read config: Not a directory\n"


def test_world_readable_key_file_is_refused(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    key = home / "config" / "dr" / "repo.key"
    key.chmod(0o644)
    r = run_dr(capsys, "repo", "info")
    assert r.code == 1
    assert "accessible by group or others (mode 0644)" in r.err and "chmod 600" in r.err


def test_no_secret_in_any_stored_object(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import base64

    from dr.cli.context import AppContext
    from dr.cli.repo_access import open_repository

    assert run_dr(capsys, "repo", "init").code == 0
    secret_text = b"password=hunter2-very-secret-value"
    src = home / "src"
    src.mkdir()
    (src / "secret.env").write_bytes(secret_text * 100)
    assert run_dr(capsys, "mover", "backup", str(src)).code == 0
    repo = open_repository(AppContext())
    key_file = base64.b64decode((home / "config" / "dr" / "repo.key").read_text())
    needles = [
        secret_text,
        repo.master.raw[:32],
        repo.master.raw[32:],
        key_file,
        repo.master.raw.hex().encode(),
    ]
    for path in (home / "data" / "dr" / "repo").rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for n in needles:
                assert n not in blob, f"{path} contains a secret"
    assert json.dumps({"repr": repr(repo.master)}).count("hidden") == 1


def test_a_full_snapshot_id_is_loaded_without_listing(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mover Job gets its parent's full id: it loads that one snapshot, not all of them.
    assert run_dr(capsys, "repo", "init").code == 0
    src = _src(home)
    ids = [run_dr(capsys, "mover", "backup", str(src), "-o", "json").json()["id"] for _ in range(3)]
    from dr.repo import snapshots

    loaded: list[str] = []
    real = snapshots.load_snapshot

    def counting(repo: object, name: str) -> snapshots.Snapshot:
        loaded.append(name)
        return real(repo, name)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshots, "load_snapshot", counting)
    monkeypatch.setattr(snapshots, "list_snapshots", lambda *a, **k: pytest.fail("listed every snapshot"))
    r = run_dr(capsys, "mover", "backup", str(src), "--parent", ids[0], "-o", "json")
    assert r.code == 0 and r.json()["unchangedFiles"] == 2
    r = run_dr(capsys, "mover", "restore", ids[1], str(home / "out"), "-o", "json")
    assert r.code == 0 and r.json()["files"] == 2
    assert loaded == [ids[0], ids[1]]


def test_mover_ls_lists_what_a_volume_snapshot_holds(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    src = _src(home)
    (src / "empty").mkdir()
    os.symlink("b.txt", src / "link")
    (src / "sub" / b"caf\xe9".decode("utf-8", "surrogateescape")).write_bytes(b"x")  # not UTF-8
    os.chmod(src / "b.txt", 0o640)
    snap = run_dr(capsys, "mover", "backup", str(src), "-o", "json").json()["id"]

    r = run_dr(capsys, "mover", "ls", snap, "-o", "json")
    assert r.code == 0, r.err
    top = {e["path"]: e for e in r.json()}
    assert sorted(top) == ["b.txt", "empty", "link", "sub"]
    assert top["b.txt"]["permissions"] == "-rw-r-----" and top["b.txt"]["size"] == 6
    assert top["b.txt"]["mode"] == 0o640 and top["b.txt"]["mtime"].endswith("Z")
    assert top["link"]["type"] == "symlink" and top["link"]["target"] == "b.txt"
    assert top["sub"]["permissions"].startswith("d")

    r = run_dr(capsys, "mover", "ls", snap, "-r", "-o", "json")
    assert [e["path"] for e in r.json()] == ["b.txt", "empty", "link", "sub", "sub/a.bin", "sub/caf\\xe9"]
    r = run_dr(capsys, "mover", "ls", snap, "/sub/a.bin", "-o", "json")
    assert [(e["path"], e["size"]) for e in r.json()] == [("sub/a.bin", 2 << 20)]
    r = run_dr(capsys, "mover", "ls", snap, "empty", "-o", "json")
    assert r.code == 0 and r.json() == []

    r = run_dr(capsys, "mover", "ls", "latest", "sub")  # ls -l lines
    assert r.code == 0
    lines = r.out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("-rw-") and lines[0].endswith(" sub/a.bin")
    assert "2,097,152" in lines[0] and lines[1].endswith("sub/caf\\xe9")
    assert run_dr(capsys, "mover", "ls", "latest").out.splitlines()[2].endswith("link -> b.txt")

    r = run_dr(capsys, "mover", "ls", snap, "nope")
    assert r.code == 2 and f"not in snapshot {snap[:8]}: nope" in r.err and r.out == ""
    r = run_dr(capsys, "mover", "ls", snap, "b.txt/x")
    assert r.code == 2 and "(b.txt is not a directory)" in r.err
    r = run_dr(capsys, "mover", "ls", snap, "../etc")
    assert r.code == 2 and "give a path inside the snapshot" in r.err


def test_mover_ls_shows_control_characters_and_bytes_that_are_not_utf8_escaped(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A volume's names are anyone's: a newline split an ls -l line in two, a terminal
    # escape sequence reached the terminal, and a symlink target that is not UTF-8 was
    # written as its raw byte (table) or a lone surrogate (JSON), unlike the paths.
    assert run_dr(capsys, "repo", "init").code == 0
    src = home / "src"
    src.mkdir()
    (src / "new\nline").write_text("x")
    (src / "red\x1b[31mtext").write_text("x")
    os.symlink(b"\xff\x1b[2J".decode("utf-8", "surrogateescape"), src / "link")
    snap = run_dr(capsys, "mover", "backup", str(src), "-o", "json").json()["id"]

    r = run_dr(capsys, "mover", "ls", snap)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].endswith(" link -> \\xff\\x1b[2J")
    assert lines[1].endswith(" new\\x0aline") and lines[2].endswith(" red\\x1b[31mtext")
    assert "\x1b" not in r.out

    r = run_dr(capsys, "mover", "ls", snap, "-o", "json")
    entries = {e["path"]: e for e in r.json()}
    assert sorted(entries) == ["link", "new\nline", "red\x1b[31mtext"]  # JSON escapes these itself
    assert entries["link"]["target"] == "\\xff\x1b[2J"  # as the paths show a byte that is not UTF-8
    r.out.encode("utf-8")  # no lone surrogate


def test_mover_ls_shows_bidi_controls_escaped(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Trojan Source: a right-to-left override made "invoice_\u202etxt.exe" display as
    # "invoice_exe.txt" in the ls -l listing; it reached the terminal as it was.
    assert run_dr(capsys, "repo", "init").code == 0
    src = home / "src"
    src.mkdir()
    (src / "invoice_\u202etxt.exe").write_text("x")
    snap = run_dr(capsys, "mover", "backup", str(src), "-o", "json").json()["id"]
    r = run_dr(capsys, "mover", "ls", snap)
    assert r.code == 0, r.err
    assert r.out.rstrip("\n").endswith(" invoice_\\u202etxt.exe") and "\u202e" not in r.out, ascii(r.out)


def test_paths_inside_a_snapshot(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A name that starts with ".." is an ordinary name; ".." as a component leaves the snapshot.
    assert run_dr(capsys, "repo", "init").code == 0
    src = _src(home)
    (src / "..notes").write_text("kept\n")
    snap = run_dr(capsys, "mover", "backup", str(src), "-o", "json").json()["id"]
    r = run_dr(capsys, "mover", "ls", snap, "..notes", "-o", "json")
    assert r.code == 0, r.err
    assert [e["path"] for e in r.json()] == ["..notes"]
    r = run_dr(capsys, "mover", "restore", snap, str(home / "out"), "--path", "..notes")
    assert r.code == 0, r.err
    assert sorted(p.name for p in (home / "out").iterdir()) == ["..notes"]
    assert (home / "out" / "..notes").read_text() == "kept\n"

    for bad in ("../etc", "sub/../../etc"):
        r = run_dr(capsys, "mover", "restore", snap, str(home / "x"), "--path", bad)
        assert r.code == 2 and f"--path {bad!r}: give a path inside the snapshot" in r.err
        assert not (home / "x").exists()
    r = run_dr(capsys, "mover", "restore", snap, str(home / "x"), "--path", "/")
    assert r.code == 2 and "leave --path out for all of it" in r.err
    r = run_dr(capsys, "mover", "ls", snap, "/sub/../b.txt", "-o", "json")
    assert [e["path"] for e in r.json()] == ["b.txt"]


def test_backup_and_restore_refuse_a_repository_under_an_exclusive_lock(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both load the index while they list the locks (Lock(prefetch_index=True)): a
    # conflict still ends them with one line naming the lock, and nothing written.
    from dr.cli.context import AppContext
    from dr.cli.repo_access import open_repository
    from dr.repo.locks import Lock

    assert run_dr(capsys, "repo", "init").code == 0
    src = _src(home)
    first = json.loads(run_dr(capsys, "mover", "backup", str(src), "-o", "json").out)
    repo = open_repository(AppContext())
    snapshots = sorted(repo.list_objects("snapshots"))
    with Lock(repo, "exclusive", "prune"):
        r = run_dr(capsys, "mover", "restore", first["id"], str(home / "out"))
        assert r.code == 1 and "Traceback" not in r.err, r.err
        assert "repository is locked" in r.err and "exclusive lock by prune" in r.err
        assert not (home / "out").exists()
        r = run_dr(capsys, "mover", "backup", str(src), "--parent", first["id"])
        assert r.code == 1 and "repository is locked" in r.err and "Traceback" not in r.err
        assert sorted(repo.list_objects("snapshots")) == snapshots
    r = run_dr(capsys, "mover", "restore", first["id"], str(home / "out"))
    assert r.code == 0, r.err
    assert describe_tree(home / "out") == describe_tree(src)
    assert repo.list_objects("locks") == []


def test_check_and_verify_report_a_damaged_index_file(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    assert run_dr(capsys, "mover", "backup", str(_src(home))).code == 0
    index = next((home / "data" / "dr" / "repo" / "index").iterdir())
    index.write_bytes(index.read_bytes()[:-1] + bytes([index.read_bytes()[-1] ^ 0xFF]))
    for args in (["repo", "check"], ["verify", "--all"]):
        r = run_dr(capsys, *args)
        assert r.code == 4, (args, r.err)
        assert f"index/{index.name}" in r.err and "Traceback" not in r.err


def _two_snapshots(home: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """Two volume snapshots, the second stored later: their files (older, newer)."""
    assert run_dr(capsys, "repo", "init").code == 0
    src = _src(home)
    ids = [run_dr(capsys, "mover", "backup", str(src), "-o", "json").json()["id"] for _ in range(2)]
    files = tuple(home / "data" / "dr" / "repo" / "snapshots" / i for i in ids)
    for age, f in zip((100, 0), files, strict=True):
        os.utime(f, (f.stat().st_mtime - age,) * 2)
    return files[0], files[1]


def _damage(f: Path) -> None:
    st = f.stat()
    f.write_bytes(f.read_bytes()[:-1] + bytes([f.read_bytes()[-1] ^ 0xFF]))
    os.utime(f, (st.st_atime, st.st_mtime))


def test_verify_is_not_failed_by_an_unrelated_damaged_snapshot(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    older, newer = _two_snapshots(home, capsys)
    _damage(older)
    r = run_dr(capsys, "verify", newer.name[:8])
    assert r.code == 0, r.err
    r = run_dr(capsys, "verify", older.name[:8])
    assert r.code == 4 and f"snapshot {older.name[:8]} cannot be read" in r.err and "Traceback" not in r.err
    # --all: the damaged one is an error, the others are still verified
    r = run_dr(capsys, "verify", "--all", "-o", "json")
    assert r.code == 4
    doc = json.loads(r.out)
    assert doc["snapshots"] == 1 and any(f"snapshots/{older.name}" in e for e in doc["errors"])
    # latest: the damaged one was stored before the newest readable one, so it is not the latest
    r = run_dr(capsys, "verify")
    assert r.code == 0, r.err
    assert "1 older snapshot(s) cannot be read" in r.err


def test_verify_takes_a_damaged_snapshots_id_in_upper_case(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Ids are hex in either case (find_snapshot, resolve): dr verify looks among the unreadable
    # snapshots the same way, naming the damaged one rather than 'no backup with id'.
    older, newer = _two_snapshots(home, capsys)
    _damage(older)
    r = run_dr(capsys, "verify", older.name[:8].upper())
    assert r.code == 4 and f"snapshot {older.name[:8]} cannot be read" in r.err and "Traceback" not in r.err
    r = run_dr(capsys, "verify", newer.name.upper())
    assert r.code == 0, r.err


def test_verify_latest_fails_when_the_newest_snapshot_cannot_be_read(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    older, newer = _two_snapshots(home, capsys)
    _damage(newer)
    r = run_dr(capsys, "verify", "latest")
    assert r.code == 4, r.err
    assert "may be the latest backup" in r.err and newer.name in r.err and "Traceback" not in r.err
    assert run_dr(capsys, "verify", older.name).code == 0


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_verify_prints_its_document_also_when_the_snapshot_to_verify_cannot_be_read(
    home: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    # A monitoring job reads `dr verify -o json`: a verification that fails before the check
    # proper (the snapshot asked for, or a newer one that may be the latest, cannot be read)
    # still answers with the check's document, ok false and the problem named, and exit 4.
    import yaml

    _, newer = _two_snapshots(home, capsys)
    _damage(newer)
    for ref in ([newer.name[:8]], ["latest"], []):
        r = run_dr(capsys, "verify", *ref, "-o", fmt)
        assert r.code == 4, (ref, r.err)
        doc = json.loads(r.out) if fmt == "json" else yaml.safe_load(r.out)
        assert doc["ok"] is False and doc["snapshots"] == 0, (ref, doc)
        assert any(f"snapshots/{newer.name}" in e for e in doc["errors"]), (ref, doc)
        assert "cannot be read" in r.err and "Traceback" not in r.err


def test_forget_prune_dry_run_reports_what_the_real_run_frees(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    src = home / "src"
    src.mkdir()
    for _ in range(2):
        (src / "f.bin").write_bytes(os.urandom(2 << 20))  # nothing shared between the two
        assert run_dr(capsys, "mover", "backup", str(src)).code == 0
    r = run_dr(capsys, "forget", "--keep-last", "1", "--prune", "--dry-run", "-o", "json")
    assert r.code == 0, r.err
    dry = r.json()["prune"]
    assert dry["dryRun"] and dry["bytesFreed"] > 2 << 20
    r = run_dr(capsys, "forget", "--keep-last", "1", "--prune", "-o", "json")
    assert r.code == 0, r.err
    real = r.json()["prune"]
    assert real["bytesFreed"] == dry["bytesFreed"] and real["packsDeleted"] == dry["packsDeleted"]


def test_progress_bars_go_to_the_terminal_on_stderr_not_into_stdout(home: Path) -> None:
    # stderr a terminal, stdout redirected (`dr repo check --read-data -o json > out.json`):
    # the bar is drawn on stderr, and stdout holds the JSON alone.
    import pty
    import subprocess

    from tests.helpers import DR

    assert run_dr_process("repo", "init").code == 0
    (home / "src").mkdir()
    (home / "src" / "a.bin").write_bytes(os.urandom(1 << 20))
    assert run_dr_process("mover", "backup", str(home / "src")).code == 0
    import threading

    primary, secondary = pty.openpty()
    drained = threading.Thread(target=lambda: _drain(primary), daemon=True)  # a full pty would block dr
    drained.start()
    try:
        proc = subprocess.run([DR, "repo", "check", "--read-data", "-o", "json"], stdout=subprocess.PIPE,
                              stderr=secondary, timeout=120, env=os.environ.copy())  # fmt: skip
    finally:
        os.close(secondary)
        drained.join(timeout=10)
        os.close(primary)
    assert proc.returncode == 0
    assert proc.stdout.startswith(b"{") and json.loads(proc.stdout)["ok"], proc.stdout[:200]


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass  # EIO once the last writer is gone


def test_mover_commands_take_repo_after_the_subcommand(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `dr mover backup --repo URL PATH` (the and README's form), not only `dr --repo URL mover …`.
    url = f"file://{home / 'elsewhere'}"
    assert run_dr(capsys, "--repo", url, "repo", "init").code == 0
    (home / "src").mkdir()
    (home / "src" / "a.txt").write_text("a")
    r = run_dr(capsys, "mover", "backup", "--repo", url, str(home / "src"), "-o", "json")
    assert r.code == 0, r.err
    snap = r.json()["id"]
    r = run_dr(capsys, "mover", "ls", "--repo", url, snap, "-o", "json")
    assert r.code == 0 and [e["path"] for e in r.json()] == ["a.txt"]
    r = run_dr(capsys, "mover", "restore", "--repo", url, snap, str(home / "out"))
    assert r.code == 0 and (home / "out" / "a.txt").read_text() == "a"
    r = run_dr(capsys, "mover", "restore", snap, str(home / "out2"))  # the default repository: none here
    assert r.code == 1 and "no repository here" in r.err


def test_a_restore_target_that_cannot_be_made_is_one_line(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    (home / "src").mkdir()
    (home / "src" / "a.txt").write_text("a")
    snap = run_dr(capsys, "mover", "backup", str(home / "src"), "-o", "json").json()["id"]
    (home / "file").write_text("x")
    r = run_dr(capsys, "mover", "restore", snap, str(home / "file" / "below"))
    assert r.code == 2 and r.err.startswith(
        f"error: {home / 'file' / 'below'}: cannot create the restore target"
    )
    assert "Traceback" not in r.err and "run with -v" not in r.err


def test_a_damaged_snapshot_is_passed_over_by_listings_and_restores(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    (home / "src").mkdir()
    (home / "src" / "a.txt").write_text("a")
    good = run_dr(capsys, "mover", "backup", str(home / "src"), "-o", "json").json()["id"]
    bad = run_dr(capsys, "mover", "backup", str(home / "src"), "-o", "json").json()["id"]
    path = home / "data" / "dr" / "repo" / "snapshots" / bad
    raw = bytearray(path.read_bytes())
    raw[40] ^= 0xFF
    path.write_bytes(bytes(raw))

    r = run_dr(capsys, "repo", "info", "-o", "json")  # partial: the rest is listed, the bad one named
    assert r.code == 3 and r.json()["snapshots"] == {"backup": 0, "volume": 1, "unreadable": 1}
    assert f"snapshots/{bad}" in r.err and "Traceback" not in r.err
    r = run_dr(capsys, "backups", "list", "-o", "json")
    assert r.code == 3 and r.json() == [] and f"snapshots/{bad}" in r.err
    # A restore by `latest` goes on with what can be read, and says what it passed over.
    r = run_dr(capsys, "mover", "restore", "latest", str(home / "out"), "-o", "json")
    assert r.code == 0 and r.json()["id"] == good and f"snapshots/{bad}" in r.err and "passed over" in r.err
    r = run_dr(capsys, "mover", "ls", good[:8], "-o", "json")
    assert r.code == 0 and [e["path"] for e in r.json()] == ["a.txt"]
    r = run_dr(capsys, "mover", "restore", bad[:8], str(home / "out2"))
    assert (
        r.code == 1 and f"volume snapshot {bad[:8]}: cannot be read" in r.err and not (home / "out2").exists()
    )
    # forget and prune must see every snapshot: they refuse
    r = run_dr(capsys, "forget", "--keep-last", "1", "--dry-run")
    assert r.code == 1 and f"snapshots/{bad}" in r.err
    r = run_dr(capsys, "backups", "describe", good[:8])
    assert r.code == 2 and "no backup with id" in r.err  # a volume snapshot is not a backup


def test_mover_restore_counts_symlinks_and_special_files(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a restore made is all in its summary: a symlink (or fifo) is not a file, nor is it nothing.
    assert run_dr(capsys, "repo", "init").code == 0
    src = _src(home)
    (src / "link").symlink_to("b.txt")
    os.mkfifo(src / "pipe")
    url = f"file://{home}/data/dr/repo"
    snap = run_dr(capsys, "mover", "backup", "--repo", url, str(src), "-o", "json").json()["id"]

    r = run_dr(capsys, "mover", "restore", "--repo", url, snap, str(home / "one"), "--path", "link")
    assert r.code == 0, r.err
    assert os.readlink(home / "one" / "link") == "b.txt"
    assert r.out.startswith("restored 0 files, 0 dirs, 1 symlink, 0 bytes into "), r.out
    r = run_dr(capsys, "mover", "restore", snap, str(home / "two"), "--path", "link", "-o", "json")
    assert {k: r.json()[k] for k in ("files", "dirs", "symlinks", "specialFiles", "bytes")} == {
        "files": 0, "dirs": 0, "symlinks": 1, "specialFiles": 0, "bytes": 0
    }  # fmt: skip

    r = run_dr(capsys, "mover", "restore", snap, str(home / "all"))
    assert r.code == 0, r.err
    assert r.out.startswith(f"restored 2 files, 1 dir, 1 symlink, 1 special file, {(2 << 20) + 6:,} bytes")
    r = run_dr(capsys, "mover", "restore", snap, str(home / "all2"), "-o", "json")
    assert {k: r.json()[k] for k in ("files", "dirs", "symlinks", "specialFiles")} == {
        "files": 2, "dirs": 1, "symlinks": 1, "specialFiles": 1
    }  # fmt: skip
