"""Error types that carry dr's exit-code contract.

Every layer raises one of these for conditions the user can act on; the CLI
turns them into one line on stderr and the matching exit code (no traceback
unless ``-v``). Anything else that escapes is a bug and exits 1 with its
traceback shown only when verbose.

Exit codes (architecture doc, "Outside contracts"):
  0 success · 1 failed · 2 invalid input or configuration · 3 partially failed
  · 4 verification failed
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    INVALID = 2
    PARTIAL = 3
    VERIFY_FAILED = 4


class DrError(Exception):
    """A failure with a message meant for the user; exit code 1."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Extra lines printed after the message (e.g. one per key slot tried).
        self.details: list[str] = details or []


class InvalidInput(DrError):
    """Bad input or configuration: exit 2. The message names file, line and field."""

    exit_code = ExitCode.INVALID

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message, details=problems)


class PartialFailure(DrError):
    """Some items failed, all others done: exit 3. ``details`` lists each failure."""

    exit_code = ExitCode.PARTIAL


class VerificationFailed(DrError):
    """An integrity check or a drill step said no: exit 4."""

    exit_code = ExitCode.VERIFY_FAILED


class NotImplementedYet(DrError):
    """A command whose issue has not landed yet; exit 1."""

    def __init__(self, command: str) -> None:
        super().__init__(f"{command}: not implemented yet")
