"""Capture logging the way ``dr -vvv`` sets it up, to prove secrets never reach a log.

Three views are kept: the lines dr's own handler writes (JSON, after its
redaction filter), pytest's caplog records, and a snapshot of every record as
the library or module made it — taken by a handler placed *before* dr's,
because dr's redaction rewrites records in place and later handlers (caplog
among them) only see the rewritten text. A secret must appear in none.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from dr.cli.logs import setup_logging

# The client-library loggers setup_logging turns up at -vvv (restored afterwards).
LIBRARY_LOGGERS = ("urllib3", "botocore", "boto3", "google", "kubernetes", "hvac", "s3transfer")


class RawRecords(logging.Handler):
    """Snapshots each record's message and attributes (args, extras) when it is emitted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.names: list[str] = []
        self.dumps: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.names.append(record.name)
        self.dumps.append(f"{record.getMessage()}\n{vars(record)!r}")


@dataclass
class DebugLogs:
    caplog: pytest.LogCaptureFixture
    stream: io.StringIO
    raw: RawRecords = field(default_factory=RawRecords)

    def dumps(self) -> list[str]:
        cap = [f"{r.getMessage()}\n{vars(r)!r}" for r in self.caplog.records]
        return self.raw.dumps + cap

    def loggers(self) -> set[str]:
        return set(self.raw.names) | {r.name for r in self.caplog.records}

    def assert_clean(self, secrets: list[str]) -> None:
        out = self.stream.getvalue()
        dumps = self.dumps()
        assert self.raw.dumps and out, "nothing was logged: the capture would prove nothing"
        for s in secrets:
            assert s, "empty secret"
            assert s not in out, "a secret reached dr's log output"
            for d in dumps:
                assert s not in d, "a secret reached a log record"


@contextlib.contextmanager
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[DebugLogs]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_levels = {n: logging.getLogger(n).level for n in LIBRARY_LOGGERS}
    logs = DebugLogs(caplog, io.StringIO())
    setup_logging(verbose=3, json_logs=True, stream=logs.stream)
    # setup_logging removed pytest's handlers; pytest appends them again for the test's call
    # phase, after dr's handler. The raw snapshot goes first and stays first.
    root.handlers.insert(0, logs.raw)
    caplog.set_level(logging.DEBUG)
    try:
        yield logs
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for n, level in saved_levels.items():
            logging.getLogger(n).setLevel(level)
