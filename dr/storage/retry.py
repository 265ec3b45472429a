"""When and how the bucket backends (s3, gs) retry a failed request.

Owns the retry policy both backends share: which failures are retried, how
long to wait between attempts, when to give up, and how a create-only put is
retried without ever replacing an object.

What is retried. A backend maps every client exception to one of dr's
storage errors before it reaches this module (``s3._map_error``,
``gcs._map_error``). Only ``TransientError`` is retried: throttling (S3
``SlowDown``/503/429, GCS 429), 5xx answers, connection errors and timeouts.
Everything else — not found, exists, access denied, a missing bucket, a
malformed request — fails at once: repeating it cannot change the answer and
would only delay a clear error by the whole retry budget. The clients' own
retry loops are switched off (botocore ``total_max_attempts=1``, google
``retry=None``) so that one policy decides and attempts do not multiply.

How long. Exponential backoff with full jitter (``wait_random_exponential``:
each wait is uniform in [0, min(max_backoff, initial·2ⁿ)]), which spreads out
the four workers of one process and the processes of a cluster that all hit
the same throttled prefix. Two bounds, whichever comes first: ``max_attempts``,
and ``max_elapsed`` seconds since the first attempt — no new attempt starts,
and no wait is begun, that would end past it. So a dead endpoint surfaces as a
``StorageError`` naming the attempts and the last reason within
``max_elapsed`` plus one request's own timeout (the clients' connect/read
timeouts bound that).

Idempotency, and the one call that is not. Gets, ranged gets, stat, list
pages and deletes are idempotent: repeating them is harmless. A plain
overwrite (``if_absent=False``) writes the same bytes again: also harmless.
A create-only put is not: an attempt that timed out, lost its connection or
got a 5xx *may have been applied* by the server. Its retry then finds the
name taken and would report ``ObjectExists`` for the object that we wrote
ourselves — the caller would treat its own successful write as a conflict
(for a pack: think it is a duplicate; for a lock: think someone else holds
it). A blind retry without the condition would be worse: it could replace
another writer's object, the one thing create-only exists to prevent.
``put_if_absent`` therefore remembers whether any failed attempt may have
landed (``TransientError.maybe_applied``: false for a refused connection or
throttling, which the server did not act on). If a later attempt gets
``ObjectExists`` and an earlier one may have landed, it asks the backend
whether the existing object has exactly the bytes we were writing (size,
then content); equal means our write landed and the put succeeds, anything
else is a genuine ``ObjectExists``. When no attempt may have landed,
``ObjectExists`` is raised as is, even for equal content, so create-only
keeps its mutual-exclusion meaning. The one case this cannot tell apart —
another writer stored byte-identical content under the same name while our
attempt was in flight — is harmless: repository names are content hashes or
random ids, so identical bytes under one name are the same object.

S3 answers 409 ``ConditionalRequestConflict`` when a concurrent conditional
write to the same key is in progress; AWS documents it as "retry". It is a
``TransientError`` whose ``exhausted`` error is ``ObjectExists``: the retry
usually sees the other writer's result (412 → ``ObjectExists``) or succeeds
if that writer failed, and if the conflict persists through the budget the
name is reported taken.

Logging. Each retry is logged at INFO with the store URL, the operation, the
object name, the reason and the wait; the reason is built by the backend from
error codes and messages, never from credentials or signed headers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential

from dr.storage.base import ObjectExists, StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")


class TransientError(StorageError):
    """A failure that may go away on retry.

    ``maybe_applied``: the server may have carried the request out (a read
    timeout, a reset connection, a 5xx) — matters only for create-only puts.
    ``exhausted``: what to raise instead when the retry budget runs out
    (default: a ``StorageError`` naming the attempts and this reason).
    """

    def __init__(self, reason: str, *, maybe_applied: bool, exhausted: StorageError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_applied = maybe_applied
        self.exhausted = exhausted


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter; see the module docstring."""

    max_attempts: int = 8
    max_elapsed: float = 60.0  # seconds from the first attempt
    initial_backoff: float = 0.25
    max_backoff: float = 8.0
    # Injected so the policy can be tested without waiting.
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_elapsed < 0 or self.initial_backoff < 0 or self.max_backoff < 0:
            raise ValueError("retry times must not be negative")

    def run(self, op: Callable[[], T], *, what: str) -> T:
        """``op()``, retried on ``TransientError`` within the bounds; ``what`` names
        the operation in logs and errors (``s3://bucket/prefix: get data/ab/…``)."""
        start = self.clock()
        attempts = 1
        try:
            # Most calls succeed at once: try before building tenacity's machinery,
            # which costs ~0.1 ms of CPU per call (a restore reads ~1,000 blobs per GiB,
            # each a call).
            return op()
        except TransientError as e:
            first: TransientError | None = e

        def stop(state: RetryCallState) -> bool:
            # Runs after the wait was chosen: refuse a wait that would end past the bound.
            if state.attempt_number >= self.max_attempts:
                return True
            return self.clock() - start + state.upcoming_sleep > self.max_elapsed

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.info(
                "%s; retrying in %.2fs (attempt %d of at most %d)",
                _about(what, exc),
                state.upcoming_sleep,
                state.attempt_number + 1,
                self.max_attempts,
            )

        retrying = Retrying(
            stop=stop,
            wait=wait_random_exponential(multiplier=self.initial_backoff, max=self.max_backoff),
            retry=retry_if_exception_type(TransientError),
            before_sleep=before_sleep,
            sleep=self.sleep,
            reraise=True,
        )

        def counted() -> T:
            nonlocal attempts, first
            if first is not None:
                # Tenacity's attempt 1 is the one made above: hand it its outcome, so
                # that it waits, logs and counts from there.
                e, first = first, None
                raise e
            attempts += 1
            return op()

        try:
            return retrying(counted)
        except TransientError as e:
            elapsed = self.clock() - start
            if e.exhausted is not None:
                log.info("%s; giving up after %d attempts", _about(what, e), attempts)
                raise e.exhausted from e
            plural = "s" if attempts != 1 else ""
            reason = e.reason.removeprefix(f"{what}: ")
            raise StorageError(
                f"{what}: failed after {attempts} attempt{plural} in {elapsed:.1f}s: {reason}"
            ) from e

    def put_if_absent(
        self, write: Callable[[], None], matches_existing: Callable[[], bool], *, what: str
    ) -> None:
        """Run a create-only ``write`` under the policy. ``write`` raises ``ObjectExists``
        when the name is taken; ``matches_existing`` says whether the object now
        stored under the name has exactly the bytes ``write`` sends (it must not
        retry by itself: it runs inside an attempt)."""
        maybe_landed = False

        def attempt() -> None:
            nonlocal maybe_landed
            try:
                write()
            except ObjectExists:
                if maybe_landed and matches_existing():
                    log.info("%s: an earlier attempt had stored it; done", what)
                    return
                raise
            except TransientError as e:
                maybe_landed = maybe_landed or e.maybe_applied
                raise

        self.run(attempt, what=what)


def _about(what: str, exc: BaseException | None) -> str:
    """``what: reason`` without repeating ``what`` (backend messages start with it)."""
    text = str(exc) if exc is not None else "failed"
    return text if text.startswith(what) else f"{what}: {text}"
