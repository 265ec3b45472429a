"""The README's first command (``scripts/quickstart``): dr's main job, end to end, on embedded defaults.

What it does, printing each step and the exact ``dr`` command lines a user
would type (each run as a subprocess of this Python environment):

1. find a cluster: the current kubeconfig context (``$KUBECONFIG``, else
   ``~/.kube/config``) when it answers ``/version`` within a few seconds;
   otherwise start the throw-away test cluster of the checkout
   (``../shared/testcluster/testcluster start DIR``) and the test node agent
   (``dr.testkit.agent.NodeAgent``, in a thread) that plays kubelet, Job
   controller, PV and snapshot controllers for it;
2. deploy the web-app example (``examples/webapp/webapp.yaml``) and put its
   canary files (``examples/webapp/content``) onto its volume;
3. ``dr repo init`` (only if there is no repository yet), ``dr backup -n
   webapp``, delete the namespace, ``dr restore latest``, and show the
   restored objects and files;
4. ``dr drill run runbooks/webapp.yaml --report-dir DIR``, ``dr runbook
   render``, ``dr report drills --format html``; print where they are.

It cleans up what it started (the test cluster and the agent, the example's
namespace on a real cluster) and keeps the reports (``--out``, default
``$XDG_STATE_HOME/dr/demo/<time>``).

Embedded defaults and volume data. With no dr.yaml, the repository is a
``file://`` directory under ``$XDG_DATA_HOME/dr/repo`` and the key a local
file under ``$XDG_CONFIG_HOME/dr/`` (``dr repo init`` creates both). Volume
data is copied by mover Jobs, which open the repository themselves:

* On the test cluster the agent runs each mover Job as a local process of
  this machine (the same ``dr`` executable), so the movers can reach that
  very directory and key file: the demo puts a ``dr-config`` ConfigMap into
  dr's namespace (``dr-system``) whose dr.yaml names the same ``file://``
  URL and ``local://`` key path, installs the CSI snapshot CRDs, a default
  StorageClass and a VolumeSnapshotClass the agent serves, and the volume's
  files are written straight into the agent's directory for the PVC. The
  backup then snapshots the PVC and copies it through a mover Job, the
  restore and the drill write it back through mover Jobs, and the drill's
  data check probes it through a Job — the same code paths as in a real
  cluster.
* On a real cluster a ``file://`` repository on this machine cannot be
  reached by mover Jobs running on the cluster's nodes. The demo then says
  so and runs with ``--no-data`` (objects only; the drill runs a copy of the
  runbook without its data and image checks); for volume data, configure an
  S3 or GCS repository in dr.yaml and give the movers ``dr-config`` and
  credentials (see the README). The canary files are written by a Job there.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dr.kube.client import KubeClient

if TYPE_CHECKING:
    from dr.testkit.agent import NodeAgent

ROOT = Path(__file__).resolve().parent.parent
TESTCLUSTER = ROOT.parent / "shared" / "testcluster" / "testcluster"
NAMESPACE = "webapp"
DR_NAMESPACE = "dr-system"
REACH_TIMEOUT = 4.0


class DemoError(Exception):
    """A step failed: the message says which and why."""


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def note(text: str) -> None:
    print(f"    {text}", flush=True)


def dr_argv() -> list[str]:
    script = Path(sys.executable).parent / "dr"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dr.cli.main"]


def run_dr(
    env: dict[str, str], *args: str, quiet: bool = False, trouble: Callable[[], str | None] | None = None
) -> int:
    """Run ``dr ARGS`` as a user would, printing the command line (and its output unless ``quiet``).

    ``trouble()`` is asked while it runs: a message (the test agent failed)
    stops the command — it would wait for Jobs nobody runs — with that message.
    """
    if not quiet:
        print(f"$ dr {shlex.join(args)}", flush=True)
    out = subprocess.DEVNULL if quiet else None
    with subprocess.Popen([*dr_argv(), *args], cwd=ROOT, env=env, stdout=out, stderr=out) as proc:
        while proc.poll() is None:
            problem = trouble() if trouble is not None else None
            if problem:
                proc.terminate()
                proc.wait()
                raise DemoError(f"dr {args[0]}: the test agent failed: {problem}")
            time.sleep(0.2)
    return proc.returncode


def must(code: int, what: str) -> None:
    if code != 0:
        raise DemoError(f"{what} failed with exit code {code}")


def wait_for(check: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


# --------------------------------------------------------------------------- the cluster


def reachable_kubeconfig() -> str | None:
    """The current kubeconfig if its cluster answers ``/version`` within a few seconds, else None."""
    from dr.errors import DrError
    from dr.kube.client import ApiError, RetryPolicy, connect

    path = os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    if not all(Path(p).is_file() for p in path.split(os.pathsep) if p):
        return None
    try:
        with connect(path, None, retry=RetryPolicy(attempts=1), timeout=REACH_TIMEOUT) as kube:
            status, _ = kube.request("GET", "/version", timeout=REACH_TIMEOUT)
    except (DrError, ApiError, OSError):
        return None
    return path if status == 200 else None


@contextmanager
def test_cluster(work: Path) -> Iterator[str]:
    """The checkout's throw-away test cluster in ``work/cluster``; its admin kubeconfig. Stopped afterwards."""
    if not TESTCLUSTER.exists():
        raise DemoError(
            f"no reachable Kubernetes cluster ($KUBECONFIG / ~/.kube/config) and no test cluster at {TESTCLUSTER} "
            "(the demo expects the checkout next to ../shared): point KUBECONFIG at a cluster"
        )
    cluster_dir = work / "cluster"
    note(f"starting the test cluster: {TESTCLUSTER} start {cluster_dir}")
    res = subprocess.run([sys.executable, str(TESTCLUSTER), "start", str(cluster_dir)],
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    try:
        if res.returncode != 0:
            raise DemoError(f"the test cluster did not start: {res.stderr.strip()[-2000:]}")
        yield str(cluster_dir / "admin.kubeconfig")
    finally:
        subprocess.run(
            [sys.executable, str(TESTCLUSTER), "stop", str(cluster_dir)], capture_output=True, timeout=60
        )
        shutil.rmtree(cluster_dir, ignore_errors=True)


def mover_config() -> str:
    """dr.yaml for the movers: the embedded defaults, spelled out (the same repository URL and key file)."""
    from dr.config import default_config

    cfg = default_config()
    repo, key = cfg.repositories[0], cfg.key_providers[0]
    return yaml.safe_dump({
        "apiVersion": "dr.dev/v1", "kind": "Config", "defaultRepository": repo.name,
        "repositories": [{"name": repo.name, "url": repo.url, "keys": [key.name]}],
        "keyProviders": [{"name": key.name, "uri": key.uri}],
    }, sort_keys=False)  # fmt: skip


def prepare_test_cluster(kube: KubeClient) -> None:
    """What the agent's cluster needs for volume data: snapshot CRDs, classes, dr's namespace and dr-config."""
    from dr.testkit.cluster import install_snapshot_crds, install_storage

    install_snapshot_crds(kube)
    install_storage(kube, "dr-demo", default=True)
    kube.request("POST", "/api/v1/namespaces",
                 body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DR_NAMESPACE}})  # fmt: skip
    status, data = kube.request(
        "POST",
        f"/api/v1/namespaces/{DR_NAMESPACE}/configmaps",
        body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dr-config"},
              "data": {"dr.yaml": mover_config()}},
    )  # fmt: skip
    if status not in (201, 409):
        raise DemoError(f"cannot create {DR_NAMESPACE}/dr-config: {status} {data[:200]!r}")


# --------------------------------------------------------------------------- the app


def pvc_bound(kube: KubeClient) -> bool:
    status, data = kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/uploads")
    return status == 200 and b'"phase":"Bound"' in data.replace(b" ", b"")


def namespace_gone(kube: KubeClient) -> bool:
    status, _ = kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}")
    return status == 404


def load_content_with_job(kube: KubeClient) -> None:
    """On a real cluster: a ConfigMap of the content and a Job copying it onto the PVC."""
    from dr.testkit import webapp

    webapp.deploy(kube, webapp.content_loader())
    path = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/webapp-content"

    def done() -> bool:
        status, data = kube.request("GET", path)
        text = data.replace(b" ", b"")
        if b'"type":"Failed","status":"True"' in text:
            raise DemoError(
                "the Job writing the canary files failed (kubectl -n webapp logs job/webapp-content)"
            )
        return status == 200 and b'"type":"Complete","status":"True"' in text

    wait_for(done, "the Job writing the canary files", timeout=300)
    kube.request("DELETE", path, body={"propagationPolicy": "Background"})
    kube.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/configmaps/webapp-content")


def show_restored(kube: KubeClient, volume: Path | None) -> None:
    from dr.testkit import webapp

    for kind, path in (
        ("deployment", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"),
        ("service", f"/api/v1/namespaces/{NAMESPACE}/services"),
        ("configmap", f"/api/v1/namespaces/{NAMESPACE}/configmaps"),
        ("secret", f"/api/v1/namespaces/{NAMESPACE}/secrets"),
        ("persistentvolumeclaim", f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims"),
        ("networkpolicy", f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies"),
    ):
        names = [i["metadata"]["name"] for i in kube.get(path).get("items", [])]
        note(f"{kind}: {', '.join(names) or '-'}")
    if volume is None:
        return
    same = 0
    for rel in webapp.content_files():
        restored = volume / rel
        ok = restored.is_file() and _sha256(restored) == _sha256(webapp.CONTENT / rel)
        same += ok
        note(f"uploads/{rel}: {'identical' if ok else 'MISSING OR DIFFERENT'}")
    if same != len(webapp.content_files()):
        raise DemoError("the restored volume does not hold the files that were backed up")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def runbook_without_data(out: Path) -> Path:
    """The runbook without the checks a --no-data drill on a real cluster cannot pass (data, dr's image)."""
    from dr.testkit import webapp

    doc = yaml.safe_load(webapp.RUNBOOK.read_text())
    doc["spec"]["verification"] = [s for s in doc["spec"]["verification"] if s["type"] not in ("data", "job")]
    path = out / "webapp-no-data.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# --------------------------------------------------------------------------- the demo


@contextmanager
def given(kubeconfig: str) -> Iterator[str]:
    yield kubeconfig


def demo(out: Path, work: Path) -> None:
    from dr.kube.client import connect

    say("Looking for a Kubernetes cluster")
    kubeconfig = reachable_kubeconfig()
    real = kubeconfig is not None
    with given(kubeconfig) if kubeconfig else test_cluster(work) as config_path:
        note(f"using the current context of {config_path}" if real else "using the test cluster")
        # Human log lines: the demo's output is read by a person, not collected by a log system.
        env = {**os.environ, "KUBECONFIG": config_path, "DR_LOG_FORMAT": "text"}
        env.pop("DR_CONFIG", None)
        kube = connect(config_path, None)
        agent = None
        try:
            if real:
                if not namespace_gone(kube):
                    raise DemoError(f"namespace {NAMESPACE} exists in this cluster; the demo deletes and restores it: "
                                    "remove it first or use another cluster")  # fmt: skip
                note(
                    "a file:// repository on this machine cannot be reached by mover Jobs on the cluster's nodes:"
                )
                note(
                    "running with --no-data (objects only); configure an S3/GCS repository in dr.yaml for volume data"
                )
            else:
                from dr.testkit.agent import ALL_NAMESPACES, NodeAgent

                prepare_test_cluster(kube)
                agent = NodeAgent(kube, work / "node", namespace_pattern=ALL_NAMESPACES, interval=0.1).start()
                note(
                    "the test node agent runs Jobs of dr's image, binds volumes and cuts snapshots (dr.testkit.agent)"
                )
            try:
                steps(env, kube, agent, out, ["--no-data"] if real else [])
            finally:
                if real:  # the example's namespace, created (and restored) by the demo
                    kube.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}")
        finally:
            if agent is not None:
                agent.stop()
                if agent.errors:
                    print("warning: the test agent reported: " + "; ".join(agent.errors[:5]), file=sys.stderr)
            kube.close()


def steps(
    env: dict[str, str], kube: KubeClient, agent: NodeAgent | None, out: Path, no_data: list[str]
) -> None:
    from dr.testkit import webapp

    def trouble() -> str | None:
        return "; ".join(agent.errors[:3]) if agent is not None and agent.errors else None

    def dr(*args: str, quiet: bool = False) -> int:
        return run_dr(env, *args, quiet=quiet, trouble=trouble)

    say("Deploying the web-app example (like: kubectl apply -f examples/webapp/webapp.yaml)")
    for what in webapp.deploy(kube):
        note(f"created {what}")
    wait_for(lambda: pvc_bound(kube), "the PVC uploads to be bound")
    say("Writing the canary files (examples/webapp/content) onto the volume uploads")
    if agent is not None:
        written = webapp.write_content(agent.volume_dir(NAMESPACE, webapp.PVC))
        note(
            f"{len(written)} files into the agent's directory for the PVC: {agent.volume_dir(NAMESPACE, webapp.PVC)}"
        )
    else:
        load_content_with_job(kube)
        note(f"{len(webapp.content_files())} files written by the Job webapp-content")

    say("Creating the repository (embedded defaults: a local directory and a local key)")
    if dr("repo", "info", quiet=True) == 0:
        note("a repository exists already: using it")
    else:
        must(dr("repo", "init"), "dr repo init")

    say("Backing up the namespace webapp: its objects and the data of its volume")
    must(dr("backup", "-n", NAMESPACE, *no_data), "dr backup")

    say(f"Disaster: deleting the namespace {NAMESPACE} (like: kubectl delete namespace {NAMESPACE})")
    kube.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}")
    wait_for(lambda: namespace_gone(kube), f"namespace {NAMESPACE} to be gone", timeout=300)
    if agent is not None:
        volume = agent.volume_dir(NAMESPACE, webapp.PVC)
        wait_for(lambda: not volume.exists(), "the volume to be reclaimed")
        note("the namespace and the volume's files are gone")

    say("Restoring the latest backup")
    must(dr("restore", "latest", *no_data), "dr restore")
    say("What came back")
    show_restored(kube, agent.volume_dir(NAMESPACE, webapp.PVC) if agent is not None else None)

    runbook = runbook_without_data(out) if no_data else webapp.RUNBOOK
    runbook_arg = str(runbook.relative_to(ROOT) if runbook.is_relative_to(ROOT) else runbook)
    say("Checking the restored app with the runbook's checks, as the on-call page says (dr runbook verify)")
    must(dr("runbook", "verify", runbook_arg), "dr runbook verify")

    say("Drill: restore into a scratch namespace and run the runbook's checks")
    must(dr("drill", "run", runbook_arg, "--report-dir", str(out), *no_data), "dr drill run")

    say("The human runbook and the monthly drill report")
    must(dr("runbook", "render", "runbooks/webapp.yaml", "--out", str(out / "webapp-runbook.md")),
         "dr runbook render")  # fmt: skip
    must(
        dr("report", "drills", "--format", "html", "--out", str(out / "drills.html")),
        "dr report drills",
    )

    say("Done")
    drills = sorted(p.name for p in out.glob("webapp-*.*") if p.suffix in (".json", ".md", ".html"))
    note(f"reports in {out}:")
    for name in [*(d for d in drills if d != "webapp-runbook.md"), "drills.html"]:
        note(f"  {out / name}")
    note(f"the generated runbook: {out / 'webapp-runbook.md'}")


def default_out() -> Path:
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "dr" / "demo" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dr.demo", description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--out", type=Path, help="where the reports go (default: $XDG_STATE_HOME/dr/demo/<time>)"
    )
    args = parser.parse_args(argv)
    out: Path = (args.out or default_out()).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dr-demo-") as tmp:
        try:
            demo(out, Path(tmp))
        except DemoError as e:
            print(f"\ndemo failed: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted; cleaned up", file=sys.stderr)
            return 130
    note(f"({time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
