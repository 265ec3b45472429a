"""Fakes of ``dr.kube.exec.Exec`` for tests: the test cluster serves no ``pods/exec``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dr.kube.exec import ExecError, ExecResult, ExecTimeout, Sink, Stdin, stdin_chunks


@dataclass
class Script:
    """What one command does when run."""

    exit_code: int = 0
    stdout: bytes | list[bytes] = b""
    stderr: bytes = b""
    seconds: float = 0.0  # simulated run time: longer than the hook's timeout means ExecTimeout
    cannot_run: str | None = None  # ExecError: the command could not be started
    reads: int | None = None  # how many stdin bytes the command reads before it exits (None: all)
    # Raised after the command ran: what escapes an Exec other than ExecError (a bug, a client library).
    raises: Exception | None = None


@dataclass
class ScriptedExec:
    """An ``Exec`` whose commands follow ``scripts`` (keyed by ``" ".join(argv)``); it records every call."""

    scripts: dict[str, Script]
    events: list[tuple[str, str]] | None = None  # shared with the node agent for ordering checks
    calls: list[tuple[str, str, str | None, list[str], float]] = field(default_factory=list)
    stdin: dict[str, bytes] = field(default_factory=dict)

    def run(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        command: list[str],
        timeout: float,
        stdin: Stdin = None,
        stdout_sink: Sink | None = None,
    ) -> ExecResult:
        key = " ".join(command)
        self.calls.append((namespace, pod, container, command, timeout))
        if self.events is not None:
            self.events.append(("exec", key))
        script = self.scripts.get(key)
        if script is None:
            raise ExecError(f'command did not run: exec: "{command[0]}": executable file not found in $PATH')
        if script.cannot_run:
            raise ExecError(script.cannot_run)
        if script.seconds > timeout:
            raise ExecTimeout(f"command in pod {namespace}/{pod} did not finish within {timeout:g}s")
        if stdin is not None:
            got = bytearray()
            for chunk in stdin_chunks(stdin):
                got += chunk
                if script.reads is not None and len(got) >= script.reads:
                    break
            self.stdin[f"{namespace}/{pod}"] = bytes(got[: script.reads] if script.reads is not None else got)
        chunks = script.stdout if isinstance(script.stdout, list) else [script.stdout]
        if stdout_sink is not None:
            for c in chunks:
                stdout_sink(c)
        if script.raises is not None:
            raise script.raises
        if stdout_sink is not None:
            return ExecResult(script.exit_code, b"", script.stderr)
        return ExecResult(script.exit_code, b"".join(chunks), script.stderr)


class LoggingExec:
    """An ``Exec`` whose commands all succeed, each appended to the file ``log`` (readable from another process)."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def run(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        command: list[str],
        timeout: float,
        stdin: Stdin = None,
        stdout_sink: Sink | None = None,
    ) -> ExecResult:
        with self.log.open("a") as f:
            f.write(" ".join(command) + "\n")
        return ExecResult(0, b"", b"")
