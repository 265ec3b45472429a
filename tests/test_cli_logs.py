"""dr's log handler: where lines go and in which format (redaction: the *_logs_hold_no_* tests)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from dr.cli.logs import setup_logging
from tests.helpers import run_dr_process


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_quiet_logs_errors_only(restore_root_logger: None) -> None:
    # --quiet is "only errors and requested data": logged warnings went through as well.
    out = io.StringIO()
    setup_logging(quiet=True, json_logs=False, stream=out)
    logging.getLogger("dr.test").warning("a warning")
    logging.getLogger("dr.test").error("an error")
    assert out.getvalue() == "an error\n"


def test_lines_go_to_stderr_of_the_moment(restore_root_logger: None) -> None:
    # A progress bar swaps sys.stderr for a proxy that prints above the bar; a handler
    # bound to the stream of start-up would write through the bar (or to a closed file).
    first, second = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(first):
        setup_logging(json_logs=True)
        logging.getLogger("dr.test").warning("one")
    first.close()
    with contextlib.redirect_stderr(second):
        logging.getLogger("dr.test").warning("two")
    [line] = second.getvalue().splitlines()
    assert json.loads(line)["msg"] == "two"


def test_text_format_on_request(restore_root_logger: None) -> None:
    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        setup_logging(verbose=1, json_logs=False)
        logging.getLogger("dr.test").info("restored %d objects", 3)
    assert out.getvalue() == "INFO restored 3 objects\n"


def test_error_lines_are_redacted_like_logs(capsys: pytest.CaptureFixture[str]) -> None:
    # The one-line error report goes to stderr past the log handler and its filter:
    # a secret quoted into a message by mistake is still masked.
    from dr.cli.main import _report
    from dr.errors import DrError

    _report(DrError("cannot reach http://admin:SuperSecret123@minio:9000", details=["token=SuperSecret456"]))
    err = capsys.readouterr().err
    assert err == "error: cannot reach http://[REDACTED]@minio:9000\n  token=[REDACTED]\n"


SESSION_TOKEN = "FwoGZXIvYXdzEJr//////////wEaDHRva2VuK3dpdGgvY2hhcnM+Sesh=="


def test_redaction_masks_aws_session_tokens() -> None:
    # The forms botocore logs at -vvv, made by botocore itself: a signed request's
    # repr (header values as str, and as bytes once encoded for sending), the
    # canonical request that is signed, a presigned URL.
    from botocore.auth import S3SigV4QueryAuth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from dr.redact import redact

    creds = Credentials("ASIAEXAMPLEEXAMPLE12", "not-logged-anyway", SESSION_TOKEN)
    request = AWSRequest(method="PUT", url="http://127.0.0.1:9/bkt/repo/config", data=b"x")
    signer = SigV4Auth(creds, "s3", "us-east-1")
    signer.add_auth(request)
    prepared = request.prepare()
    texts = [repr(prepared), signer.canonical_request(request)]
    prepared.headers["X-Amz-Security-Token"] = SESSION_TOKEN.encode()
    texts.append(repr(prepared))
    texts.append(repr(list(prepared.headers.items())))  # ('X-Amz-Security-Token', b'...') pairs
    presign = AWSRequest(method="GET", url="http://127.0.0.1:9/bkt/repo/config")
    S3SigV4QueryAuth(creds, "s3", "us-east-1", expires=60).add_auth(presign)
    texts.append(presign.url)
    for text in texts:
        assert "FwoGZXIvYXdz" in text or "FwoGZXIvYXdz" in text.replace("%2F", "/")  # the token is there
        clean = redact(text)
        assert "FwoGZXIvYXdz" not in clean, clean
        assert "[REDACTED]" in clean


def test_s3_debug_logs_hold_no_session_token(s3_env: dict[str, str], s3_bucket: str) -> None:
    # dr -vvv turns botocore's DEBUG logs on; with temporary credentials every
    # request carries X-Amz-Security-Token, which must not reach the log.
    url = f"s3://{s3_bucket}/repo?endpoint={s3_env['endpoint']}&addressingStyle=path"
    r = run_dr_process(
        "-vvv",
        "--repo",
        url,
        "repo",
        "info",
        env={"AWS_SESSION_TOKEN": SESSION_TOKEN, "DR_LOG_FORMAT": "json"},
    )
    assert r.code != 0  # no repository there (or the token refused): the requests were made and logged
    assert "X-Amz-Security-Token" in r.err or "x-amz-security-token" in r.err
    assert "FwoGZXIvYXdz" not in r.err + r.out


def test_gcs_debug_logs_hold_no_upload_session(
    gcs_env: dict[str, str], gcs_bucket: str, isolated_home: Path
) -> None:
    # A pack above 8 MiB goes up as a resumable upload; at -vvv urllib3 logs each
    # request line, and the session's upload_id= is a bearer credential.
    src = isolated_home / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(10 << 20))
    repo = f"gs://{gcs_bucket}/repo"
    assert run_dr_process("--repo", repo, "repo", "init").code == 0
    r = run_dr_process("-vvv", "--repo", repo, "mover", "backup", str(src), env={"DR_LOG_FORMAT": "json"})
    assert r.code == 0, r.err[-2000:]
    assert "uploadType=resumable" in r.err  # the upload was logged
    assert re.search(r"upload_id=(?!\[REDACTED\])", r.err) is None


@pytest.mark.parametrize("json_logs", [False, True], ids=["text", "json"])
def test_a_logged_traceback_is_redacted_in_either_format(restore_root_logger: None, json_logs: bool) -> None:
    # A hook's unexpected failure logs its traceback at -vv (dr.backup.hooks.unexpected):
    # the exception's text may quote a request, with its bearer token.
    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        setup_logging(verbose=2, json_logs=json_logs)
        try:
            raise RuntimeError("Authorization: Bearer s3cr3t-token")
        except RuntimeError as e:
            logging.getLogger("dr.test").debug("hook failed unexpectedly", exc_info=e)
    assert "RuntimeError" in out.getvalue() and "[REDACTED]" in out.getvalue()
    assert "s3cr3t-token" not in out.getvalue()


@pytest.mark.parametrize("verbose", [0, 1])
def test_a_logged_exception_is_one_line_unless_verbose(restore_root_logger: None, verbose: int) -> None:
    # Where dr catches what it did not expect so that work goes on (a drill still writes its
    # report, a restore its other objects), log.exception printed the whole traceback on a
    # terminal without -v: no traceback unless -v, as for dr's own errors.
    out = io.StringIO()
    setup_logging(verbose=verbose, json_logs=False, stream=out)
    try:
        raise KeyError("Authorization: Bearer s3cr3t-token")
    except KeyError:
        logging.getLogger("dr.test").exception("drill %s failed", "shop")
    text = out.getvalue()
    assert "s3cr3t-token" not in text
    if verbose:
        assert "Traceback (most recent call last)" in text and text.startswith("ERROR drill shop failed\n")
    else:
        assert text == (
            "drill shop failed: KeyError: 'Authorization: Bearer [REDACTED]' (-v shows the traceback)\n"
        )


def test_no_google_credentials_is_one_error_line_without_the_auth_library_warnings(
    capsys: pytest.CaptureFixture[str], isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # google.auth logged "Authentication failed using Compute Engine authentication due to
    # unavailable metadata server." (and, where the metadata address answers slowly, one line
    # per attempt of its own) before dr's error, which says what is missing. -v still shows them.
    from tests.helpers import run_dr

    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "true")  # no metadata server is asked (conftest sets it too)
    res = run_dr(capsys, "--repo", "gs://bkt/repo?project=p", "repo", "info")
    assert (res.code, res.out) == (1, "")
    assert len(res.err.splitlines()) == 1, res.err
    assert res.err.startswith("error: gs://bkt/repo?project=p: no usable Google credentials")
    res = run_dr(capsys, "-v", "--repo", "gs://bkt/repo?project=p", "repo", "info")
    assert "Compute Engine" in res.err
