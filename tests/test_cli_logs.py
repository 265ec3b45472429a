"""dr's log handler: where lines go and in which format (redaction: the *_logs_hold_no_* tests)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator

import pytest

from dr.cli.logs import setup_logging


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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
