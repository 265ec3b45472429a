"""Logging setup: human lines on a terminal, JSON lines otherwise, secrets redacted.

JSON when stderr is not a terminal, so CronJob logs are machine-readable. The
redaction filter (``dr.redact``) is a last line of defence: code must not log
secrets in the first place (tests check both).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import IO, Any

from dr.redact import redact


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


class RedactingFormatter(logging.Formatter):
    """Tracebacks and stacks redacted too: ``RedactingFilter`` sees the message only.

    Without ``tracebacks`` (a terminal without ``-v``), a record logged with its exception
    (``log.exception`` where dr catches what it did not expect, so a drill still writes its
    report) shows the exception in one line: no traceback unless ``-v``, as for dr's errors.
    """

    def __init__(self, fmt: str | None = None, *, tracebacks: bool = True) -> None:
        super().__init__(fmt)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks or not record.exc_info:
            return super().format(record)
        saved = record.exc_info, record.exc_text
        e = record.exc_info[1]
        record.exc_info, record.exc_text = None, None
        try:
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text = saved
        if e is not None:
            line += f": {type(e).__name__}: {redact(str(e))} (-v shows the traceback)"
        return line

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))


class JSONFormatter(RedactingFormatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in getattr(record, "fields", {}).items():
            out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not when set up.

    A progress bar swaps ``sys.stderr`` for a proxy that prints lines above the
    bar; a handler bound at start-up would write through the bar instead. (And
    in-process callers, tests among them, replace and close streams.) An
    explicit ``stream`` is used as given.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._fixed = stream
        super().__init__()

    @property
    def stream(self) -> Any:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # StreamHandler.__init__ and setStream: the stream is decided at emit time


def setup_logging(
    verbose: int = 0, quiet: bool = False, *, json_logs: bool | None = None, stream: IO[str] | None = None
) -> None:
    # --quiet: "only errors and requested data" (warnings are in -o json's data where they matter).
    level = logging.ERROR if quiet else logging.INFO if verbose < 2 else logging.DEBUG
    if json_logs is None:
        env = os.environ.get("DR_LOG_FORMAT")
        json_logs = env == "json" if env else not sys.stderr.isatty()
    handler = StderrHandler(stream)
    handler.addFilter(RedactingFilter())
    if json_logs:
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            RedactingFormatter(
                "%(levelname)s %(message)s" if verbose else "%(message)s", tracebacks=verbose > 0
            )
        )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # Client libraries log request details (headers with tokens) at DEBUG.
    for noisy in ("urllib3", "botocore", "boto3", "google", "kubernetes", "hvac", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose < 3 else logging.DEBUG)
    # urllib3 warns at each retry of a connection ("Retrying (Retry(total=1, ...)) after connection
    # broken by ..."): an unreachable API server printed ten of them before dr's own one-line error,
    # which has the last reason. Shown with -v. Set on the pool's own logger: the kubernetes client
    # sets "urllib3" back to WARNING whenever it makes a Configuration.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR if not verbose else logging.NOTSET)
    # Likewise google.auth's search for Application Default Credentials: without any it warned
    # "Authentication failed using Compute Engine authentication due to unavailable metadata
    # server." (and, where the metadata address answers slowly, once per attempt) before dr's
    # own error, which names what is missing and where credentials come from. Shown with -v.
    for finder in ("google.auth._default", "google.auth.compute_engine._metadata"):
        logging.getLogger(finder).setLevel(logging.ERROR if not verbose else logging.NOTSET)
