"""Test-only crash injection: a process whose store SIGKILLs it just before a chosen write.

``DR_TEST_KILL_BEFORE="OP:PREFIX:N"`` (OP ``put`` or ``delete``): the process kills
itself with SIGKILL — no cleanup, no lock release, as a crash or the OOM killer
would — just before its N-th ``OP`` of an object whose name starts with PREFIX,
so after N-1 of them. ``delete:index/:3`` stops a prune after it deleted two
superseded index files. The crash tests (tests/test_prune_crash.py) stop real
``dr prune`` and ``dr forget`` processes this way at points they choose, the
same on every backend and every run. Unset (everywhere outside those tests), the
store is handed back untouched.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

from dr.errors import InvalidInput
from dr.storage.base import ObjectRetained, ObjectStore

ENV = "DR_TEST_KILL_BEFORE"


def armed(store: ObjectStore) -> ObjectStore:
    """``store``, made to kill this process where ``DR_TEST_KILL_BEFORE`` says (if set)."""
    spec = os.environ.get(ENV)
    if not spec:
        return store
    op, prefix, n = _parse(spec)
    real: Callable[..., None] = getattr(store, op)
    seen = itertools.count(1)
    lock = threading.Lock()  # packs are written from several threads
    # Each name counts once, whichever way it goes: a store's delete_many may delete
    # one by one through the (guarded) delete. Names are never reused (FORMAT.md §1).
    counted: set[str] = set()

    def reached(name: str) -> bool:
        """Whether ``name`` is the N-th write of the kind (counted now)."""
        if not name.startswith(prefix):
            return False
        with lock:
            if name in counted:
                return False
            counted.add(name)
            return next(seen) == n

    def guarded(name: str, *args: Any, **kwargs: Any) -> None:
        if reached(name):
            os.kill(os.getpid(), signal.SIGKILL)
        real(name, *args, **kwargs)

    setattr(store, op, guarded)  # this instance only: the class stays as it is
    if op == "delete":
        real_many: Callable[[Sequence[str]], dict[str, ObjectRetained]] = store.delete_many

        def guarded_many(names: Sequence[str]) -> dict[str, ObjectRetained]:
            # A batch is killed as the deletes one by one would be: after the N-1st.
            for i, name in enumerate(names):
                if reached(name):
                    real_many(names[:i])
                    os.kill(os.getpid(), signal.SIGKILL)
            return real_many(names)

        setattr(store, "delete_many", guarded_many)  # noqa: B010 (an instance's method, as above)
    return store


def _parse(spec: str) -> tuple[str, str, int]:
    op, _, rest = spec.partition(":")
    prefix, _, count = rest.rpartition(":")
    if op not in ("put", "delete") or not count.isdigit() or int(count) < 1:
        raise InvalidInput(
            f"{ENV}={spec!r}: expected OP:PREFIX:N with OP put or delete and N a count from 1 (delete:index/:3)"
        )
    return op, prefix, int(count)
