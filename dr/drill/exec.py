"""Moved to ``dr.kube.exec`` (hooks and drills share one ``Exec`` seam); re-exported for older imports."""

from dr.kube.exec import Exec, ExecError, ExecResult, ExecTimeout, KubernetesExec, exit_code_from_status

__all__ = ["Exec", "ExecError", "ExecResult", "ExecTimeout", "KubernetesExec", "exit_code_from_status"]
