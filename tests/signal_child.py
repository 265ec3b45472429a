"""Run as a process by ``test_hooks``: a volume backup whose pod has freeze/thaw hooks, to be stopped by a signal.

``python -m tests.signal_child KUBECONFIG CTX.json PVC.json LOG``: backs up the
PVC with ``backup_volumes`` under ``dr.interrupt.signals_handled()`` (what
``dr``'s main installs) and exits like ``dr`` does on an interrupt. Hooks run
through an ``Exec`` that appends each command to LOG (the test cluster serves
no ``pods/exec``), so the test sees whether the application was thawed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dr.backup.volumes import VolumeBackupContext, backup_volumes
from dr.interrupt import INTERRUPTED_EXIT, Terminated, signals_handled
from dr.kube.client import connect
from tests.exec_fakes import LoggingExec


def main() -> int:
    kubeconfig, ctx_file, pvc_file, log = sys.argv[1:5]
    ctx = VolumeBackupContext.model_validate_json(Path(ctx_file).read_text())
    pvc = json.loads(Path(pvc_file).read_text())
    kube = connect(kubeconfig, None)
    try:
        with signals_handled():
            (res,) = backup_volumes(kube, [pvc], ctx, lambda job: None, exec_=LoggingExec(Path(log)))
    except Terminated as e:  # 143 for SIGTERM, 129 for SIGHUP, as dr exits
        return e.exit_code
    except KeyboardInterrupt:
        return INTERRUPTED_EXIT
    print(res.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
