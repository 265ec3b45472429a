"""Moved to ``dr.kube.exec`` (hooks and drills share one ``Exec`` seam); re-exported for older imports."""

from dr.kube import exec as _exec
from dr.kube.exec import Exec, ExecError, ExecResult, ExecTimeout, exit_code_from_status


class KubernetesExec(_exec.KubernetesExec):
    """``dr.kube.exec.KubernetesExec`` with the ``close()`` of the former drill version (nothing to close now)."""

    def close(self) -> None:
        """Each call uses a client of its own, closed after the call."""


__all__ = ["Exec", "ExecError", "ExecResult", "ExecTimeout", "KubernetesExec", "exit_code_from_status"]
