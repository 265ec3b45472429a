"""The human runbook (Markdown) and ``dr runbook validate | render``."""

from __future__ import annotations

import json
import re
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr.drill.model import Cleanup, DrillReport, Phases, ReportObjectives
from dr.runbook.model import Runbook, load_runbook
from dr.runbook.render import (
    UNKNOWN_BACKUP,
    UNKNOWN_DRILL,
    BackupSummary,
    checklist_item,
    human_size,
    new_namespace_mapping,
    render_markdown,
    restore_commands,
    wrap_command,
)
from tests.helpers import run_dr, run_dr_process

RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"
SHOP = RUNBOOKS / "webapp-postgres.yaml"
CACHE = RUNBOOKS / "redis-cache.yaml"
SITE = RUNBOOKS / "static-site.yaml"

BACKUP = BackupSummary(
    id="3f9a1c2e", time=datetime(2026, 11, 26, 1, 15, tzinfo=UTC), namespaces=["shop"], size=1_288_490_189
)
DRILL = DrillReport(
    id="drill-7b2",
    app="webapp-postgres",
    runbook="runbooks/webapp-postgres.yaml",
    backup_id="1d0e4b7a",
    backup_time=datetime(2026, 10, 31, 1, 15, tzinfo=UTC),
    started=datetime(2026, 11, 1, 4, 0, tzinfo=UTC),
    phases=Phases(
        restore_resources=timedelta(seconds=40),
        restore_data=timedelta(minutes=6),
        time_to_ready=timedelta(minutes=4),
        verification=timedelta(seconds=80),
    ),
    objectives=ReportObjectives(rpo=timedelta(hours=24), rto=timedelta(minutes=30)),
    outcome="passed",
    cleanup=Cleanup(status="deleted"),
)


def code_lines(md: str) -> list[str]:
    out, inside = [], False
    for line in md.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            out.append(line)
    return out


# --------------------------------------------------------------------------- restore commands


def test_restore_commands_in_place_and_new_namespace() -> None:
    cmds = restore_commands(load_runbook(SHOP))
    # The newest backup of the app's policy, only its namespace, without the types the scope leaves out.
    base = "dr restore latest --policy shop-nightly -n shop --exclude-resources events,pods,replicasets,endpointslices"
    assert cmds == {
        "preview": [f"{base} --dry-run"],
        "in_place": [base],
        "replace": [f"{base} --existing recreate"],
        "new_namespace": [
            f"{base} --namespace-mapping shop=shop-restored --dry-run",
            f"{base} --namespace-mapping shop=shop-restored",
        ],
    }


def test_restore_commands_without_a_backup_policy_name_no_latest() -> None:
    # `latest` alone is the newest backup of the whole repository: maybe another app's.
    cmds = restore_commands(load_runbook(SITE))
    assert cmds["in_place"] == ["dr restore BACKUP_ID -n site"]
    md = render_markdown(load_runbook(SITE))
    assert "Put its ID from the list in place of `BACKUP_ID` below." in md
    assert "dr restore BACKUP_ID -n site --existing recreate" in code_lines(md)


def test_restore_commands_carry_the_scope_filters_and_every_namespace() -> None:
    cache = restore_commands(load_runbook(CACHE), "3f9a1c2e")
    assert cache["in_place"] == [
        # The ID with its policy: that names the repository the policy writes to.
        "dr restore 3f9a1c2e --policy cache-hourly -n cache --selector app.kubernetes.io/name=redis "
        "--include-resources statefulsets,services,configmaps,secrets,persistentvolumeclaims"
    ]
    doc = yaml.safe_load(SHOP.read_text())
    doc["spec"]["scope"]["namespaces"] = ["shop", "shop-db", "shop-*"]
    doc["spec"]["scope"]["selector"] = "part-of in (shop, billing)"
    rb = Runbook.model_validate(doc)
    many = restore_commands(rb)["new_namespace"][1]
    assert shlex.split(many) == [
        "dr",
        "restore",
        "latest",
        "--policy",
        "shop-nightly",
        "-n",
        "shop",
        "-n",
        "shop-db",
        "-n",
        "shop-*",
        "--selector",
        "part-of in (shop, billing)",
        "--exclude-resources",
        "events,pods,replicasets,endpointslices",
        "--namespace-mapping",
        "shop=shop-restored",
        "--namespace-mapping",
        "shop-db=shop-db-restored",
    ]
    md = render_markdown(rb)
    assert "Namespaces matching `shop-*` need their own `--namespace-mapping OLD=NEW` each" in md


def test_wrap_command_keeps_options_with_values() -> None:
    line = (
        "dr restore 3f9a1c2e --selector app.kubernetes.io/name=redis --include-resources "
        "statefulsets,services,configmaps,secrets,persistentvolumeclaims --namespace-mapping 'a=b c' --dry-run"
    )
    lines = wrap_command(line)
    assert lines == [
        "dr restore 3f9a1c2e --selector app.kubernetes.io/name=redis \\",
        "    --include-resources statefulsets,services,configmaps,secrets,persistentvolumeclaims \\",
        "    --namespace-mapping 'a=b c' --dry-run",
    ]
    assert shlex.split(" ".join(ln.removesuffix("\\") for ln in lines)) == shlex.split(line)
    assert wrap_command("dr restore latest") == ["dr restore latest"]


# --------------------------------------------------------------------------- checklist


def test_checklist_items_per_step_type() -> None:
    rb = load_runbook(SHOP)
    items = {s.name: checklist_item(s, "shop") for s in rb.spec.verification}
    assert items["objects-restored"] == (
        "These objects exist in `shop`: Deployment `web`; StatefulSet `postgres`; at least 2 services; "
        "Secret `postgres-credentials`; at least 2 persistentvolumeclaims.",
        ["kubectl -n shop get deployment,statefulset,services,secret,persistentvolumeclaims"],
    )
    assert items["workloads-ready"] == (
        "All Deployments and StatefulSets in `shop` are ready: every replica ready (the drill waits up to 15m).",
        ["kubectl -n shop get deployments,statefulsets"],
    )
    assert items["database-has-orders"][1] == [
        "kubectl -n shop exec statefulset/postgres -c postgres -- psql -U shop -d shop -tAc "
        "'select count(*) > 0 from orders'"
    ]
    assert items["storefront-health"] == (
        '`GET http://web:8080/healthz` in `shop` answers 200, the body matches `"status":\\s*"ok"`, '
        '`checks.database` is `"ok"`, `checks.uploads` is `"ok"`.',
        ["kubectl get --raw /api/v1/namespaces/shop/services/web:8080/proxy/healthz"],
    )
    assert items["uploads-intact"] == (
        "Volume `uploads` in `shop`: `canary/canary.txt` has sha256 `5f70bf18a0860070…`; "
        "`products` holds at least 100 files.",
        [],
    )
    text, cmds = items["checkout-smoke-test"]
    assert text.endswith("succeeds (environment: SMOKE_USER, SMOKE_PASSWORD).")
    assert "secret" not in text.lower() or "SMOKE_PASSWORD" in text  # names only, never values
    assert cmds == [
        "kubectl -n shop run check-checkout-smoke-test --image=ghcr.io/acme/shop-smoke-tests:2.3.1 "
        "--restart=Never --attach --rm --quiet --command -- /smoke --base-url http://web:8080 --checkout"
    ]


def test_ready_steps_of_named_workloads_by_hand_wait_and_say_whether_they_are_ready() -> None:
    # `kubectl get deployments` lists them; whether they are ready is a column to read (and
    # the test cluster, like any API server without tables, shows none): `rollout status`
    # waits as the drill does and says so, its exit status too.
    rb = load_runbook(RUNBOOKS / "webapp.yaml")
    step = next(s for s in rb.spec.verification if s.type == "ready")
    assert checklist_item(step, "webapp")[1] == [
        "kubectl -n webapp rollout status deployment/web --timeout=300s"
    ]
    jobs = step.model_copy(update={"kinds": ["Job"], "names": ["migrate", "seed"]})
    assert checklist_item(jobs, "webapp")[1] == [
        "kubectl -n webapp wait --for=condition=complete job/migrate --timeout=300s",
        "kubectl -n webapp wait --for=condition=complete job/seed --timeout=300s",
    ]
    # A name of one of several kinds, or all of a kind: which object is not known, so the list.
    both = step.model_copy(update={"kinds": ["Deployment", "StatefulSet"]})
    assert checklist_item(both, "webapp")[1] == ["kubectl -n webapp get deployments,statefulsets"]


def test_job_steps_by_hand_keep_the_images_entrypoint_when_they_give_only_args() -> None:
    from dr.drill.steps import job_manifest

    rb = load_runbook(RUNBOOKS / "webapp.yaml")
    step = next(s for s in rb.spec.verification if s.type == "job")
    assert step.args == ["--version"] and not step.command
    _, cmds = checklist_item(step, "webapp")
    # The line's output and exit status say whether it passed, and it leaves no pod behind in the
    # app's namespace (a detached `run` only said "created", and a second try hit AlreadyExists).
    assert cmds == [
        "kubectl -n webapp run check-dr-image-runs --image=ghcr.io/dr-project/dr:latest --restart=Never "
        "--attach --rm --quiet -- --version"
    ]
    # What the drill runs: args, no command (the image's entrypoint `dr` stays).
    container = job_manifest(step, "x", {})["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--version"] and "command" not in container
    bare = step.model_copy(update={"args": []})
    assert checklist_item(bare, "webapp")[1] == [
        "kubectl -n webapp run check-dr-image-runs --image=ghcr.io/dr-project/dr:latest --restart=Never "
        "--attach --rm --quiet"
    ]


def test_checklist_for_selector_and_bare_workload_exec() -> None:
    rb = load_runbook(CACHE)
    by = {s.name: checklist_item(s, "cache") for s in rb.spec.verification}
    assert by["redis-answers"] == (
        "`redis-cli ping` in a running pod labelled `app.kubernetes.io/name=redis` exits 0 and prints "
        "output matching `PONG`.",
        [
            "kubectl -n cache get pods -l app.kubernetes.io/name=redis",
            "kubectl -n cache exec POD -c redis -- redis-cli ping",
        ],
    )
    assert (
        by["sessions-loaded"][0]
        == "`sh -c 'test \"$(redis-cli dbsize)\" -gt 0'` in workload `redis` exits 0."
    )


# --------------------------------------------------------------------------- the page


def test_page_without_repository_data() -> None:
    md = render_markdown(load_runbook(SHOP), source="runbooks/webapp-postgres.yaml")
    assert md.startswith("# Runbook: webapp-postgres\n\nThe online shop:")
    assert f"| Latest good backup | {UNKNOWN_BACKUP} |" in md
    assert "| Repository |" not in md  # not known offline
    assert f"| Latest passing drill | {UNKNOWN_DRILL} |" in md
    assert UNKNOWN_BACKUP == "unknown — run `dr backups list`"
    assert "| Recovery point objective (RPO) | 24h: at most 24h of changes may be lost |" in md
    assert "| Recovery time objective (RTO) | 30m: from starting the restore to a working app |" in md
    assert "- **Shop on-call** (first responder): pager pagerduty:shop-primary" in md
    assert "    --namespace-mapping shop=shop-restored" in code_lines(md)
    assert "`latest --policy shop-nightly` below is the newest backup of the app's backup policy" in md
    # The procedure in order, with its commands and expected outcomes.
    assert (
        md.index("### 1. Confirm the incident")
        < md.index("### 3. Find the backup")
        < md.index("### 5. Restore in place")
    )
    assert "dr restore latest --policy shop-nightly -n shop --existing recreate --dry-run" in code_lines(md)
    assert "**Expected:** Every item reported as restored; exit code 0." in md
    # The checklist is checkboxes, one per verification step, with human wording first.
    boxes = [ln for ln in md.splitlines() if ln.startswith("- [ ] ")]
    assert [b.split("**")[1] for b in boxes] == [s.name for s in load_runbook(SHOP).spec.verification]
    assert (
        "- [ ] **objects-restored**: The web front end, the database and their configuration are back." in md
    )
    assert "## How to tell it worked" in md and "within the RTO (30m)" in md
    assert "- Schedule: `0 4 1 * *` (Europe/Berlin)" in md
    assert "Scratch namespaces like `drill-webapp-postgres-ID`" in md


def test_the_checklist_names_the_one_command_that_checks_it_after_a_real_restore() -> None:
    md = render_markdown(load_runbook(SHOP), source="runbooks/webapp-postgres.yaml")
    checklist = md[md.index("## Verification checklist") : md.index("## How to tell it worked")]
    # Before the boxes: in place, and in the namespace the new-namespace restore lines above restore to.
    assert code_lines(checklist) == [
        "dr runbook verify runbooks/webapp-postgres.yaml",
        "dr runbook verify runbooks/webapp-postgres.yaml --namespace shop-restored",
    ]
    assert checklist.index("dr runbook verify") < checklist.index("- [ ] ")
    assert "exit 0 when every step passed, 4 when one failed" in checklist
    assert "the data checks too" in checklist
    # The file as the page names it (and the drill line with it); a placeholder when not known.
    assert "from `runbooks/webapp-postgres.yaml`" in md
    assert "run by hand with `dr drill run runbooks/webapp-postgres.yaml`" in md
    md = render_markdown(load_runbook(SHOP))
    assert "dr runbook verify RUNBOOK.yaml" in code_lines(md)
    assert "run by hand with `dr drill run RUNBOOK.yaml`" in md
    # Several namespaces: each mapped, as the restore line maps them; a path that needs quoting, quoted.
    doc = yaml.safe_load(SHOP.read_text())
    doc["spec"]["scope"]["namespaces"] = ["shop", "shop-db", "shop-*"]
    md = render_markdown(Runbook.model_validate(doc), source="my runbooks/shop.yaml")
    checklist = md[md.index("## Verification checklist") : md.index("## How to tell it worked")]
    lines = " ".join(ln.strip() for ln in code_lines(checklist)).split(" \\ ")
    assert [shlex.split(ln) for ln in " ".join(lines).split(" dr ")] == [
        ["dr", "runbook", "verify", "my runbooks/shop.yaml"],
        ["runbook", "verify", "my runbooks/shop.yaml", "--namespace-mapping", "shop=shop-restored",
         "--namespace-mapping", "shop-db=shop-db-restored"],
    ]  # fmt: skip


def test_the_page_names_every_exit_code_of_dr_restore() -> None:
    # The contract (README, Exit codes): a restore in which every item failed exits 1. The page
    # named 0, 3 and 2 only, so the on-call engineer who got 1 found nothing about it.
    md = render_markdown(load_runbook(SHOP))
    (line,) = [ln for ln in md.splitlines() if ln.startswith("`dr restore` exits ")]
    codes = [int(c) for c in re.findall(r"(?:exits |, )(\d) (?:when|for)", line)]
    assert sorted(codes) == [0, 1, 2, 3], line
    assert "1 when nothing was restored (every item failed" in line


def test_page_with_latest_backup_and_drill() -> None:
    md = render_markdown(
        load_runbook(SHOP),
        latest_backup=BACKUP,
        latest_drill=DRILL,
        generated=datetime(2026, 11, 27, 9, 30, tzinfo=UTC),
    )
    assert "| Latest good backup | `3f9a1c2e`, taken 2026-11-26 01:15 UTC; namespaces shop; 1.2 GiB |" in md
    assert (
        "| Latest passing drill | 2026-11-01 04:00 UTC (drill `drill-7b2`); RTO 12m; restored backup `1d0e4b7a` |"
        in md
    )
    assert "on 2026-11-27 09:30 UTC. Edit the runbook YAML" in md
    lines = " ".join(ln.removesuffix("\\").strip() for ln in code_lines(md))
    exclude = "--exclude-resources events,pods,replicasets,endpointslices"
    assert f"dr restore 3f9a1c2e --policy shop-nightly -n shop {exclude} --dry-run" in lines
    assert f"dr restore 3f9a1c2e --policy shop-nightly -n shop {exclude} --existing recreate" in lines
    assert "dr backups list --namespace shop --policy shop-nightly" in lines
    assert "The latest passing drill took 12m." in md


def test_page_prints_well() -> None:
    for path in (SHOP, CACHE, SITE):
        md = render_markdown(load_runbook(path), latest_backup=BACKUP)
        too_wide = [ln for ln in code_lines(md) if len(ln) > 90]
        assert too_wide == [], path.name
        prose = re.sub(r"`[^`]*`", "", "\n".join(ln for ln in md.splitlines() if ln not in code_lines(md)))
        assert "<" not in prose  # no raw HTML, which printers of Markdown drop


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 1023, 1024, 1_288_490_189, 5 * 1024**5)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.2 GiB",
        "5120.0 TiB",
    ]


# --------------------------------------------------------------------------- CLI


def test_cli_validate_examples(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_dr(capsys, "runbook", "validate", str(SHOP), str(CACHE), str(SITE))
    assert r.code == 0, r.err
    assert r.out.splitlines() == [
        f"{SHOP}: valid (webapp-postgres: 6 verification steps, 6 procedure steps)",
        f"{CACHE}: valid (redis-cache: 4 verification steps, 3 procedure steps)",
        f"{SITE}: valid (static-site: 4 verification steps, 2 procedure steps)",
    ]


BAD = """\
apiVersion: dr.dev/v1
kind: Runbook
metadata:
  name: bad
spec:
  description: x
  contacts: [{name: a, email: a@example.com}]
  scope: {namespaces: [x]}
  objectives: {rpo: 1h, rto: soon}
  verification:
    - {name: a, type: teleport}
  procedure: [{title: t, text: t}]
"""


def test_cli_validate_checks_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    missing = tmp_path / "missing.yaml"
    r = run_dr(capsys, "runbook", "validate", str(bad), str(SHOP), str(missing))
    assert r.code == 2
    assert r.out == f"{SHOP}: valid (webapp-postgres: 6 verification steps, 6 procedure steps)\n"
    assert r.err.splitlines() == [
        "error: 2 of 3 runbooks invalid",
        f"  {bad}:9:25: spec.objectives.rto: invalid duration 'soon' (examples: 90s, 15m, 1h30m, 7d)",
        f"  {bad}:11:17: spec.verification[0].type: unknown step type 'teleport' "
        "(known: resources, ready, http, exec, data, job)",
        f"  {missing}: no such file",
    ]


def test_cli_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    r = run_dr(capsys, "runbook", "validate", "-o", "json", str(SITE), str(bad))
    assert r.code == 2
    doc = r.json()
    assert doc["valid"] is False
    assert doc["files"][0] == {
        "file": str(SITE),
        "valid": True,
        "problems": [],
        "app": "static-site",
        "verificationSteps": ["site-objects", "site-ready", "home-page", "content-files"],
        "procedureSteps": 2,
        "warnings": [],
    }
    assert doc["files"][1]["valid"] is False and len(doc["files"][1]["problems"]) == 2
    assert r.err == "error: 1 of 2 runbooks invalid\n"
    ok = run_dr(capsys, "runbook", "validate", "-o", "json", str(SITE))
    assert ok.code == 0 and json.loads(ok.out)["valid"] is True


def test_validate_warns_of_a_step_timeout_the_drills_timeout_cuts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Valid, but the drill's timeout bounds every step (a step is cut to what is left of it):
    # a step written to wait 2h in a 20m drill never waits that long, and validate says so.
    text = SITE.read_text().replace('schedule: "0 5 1 */3 *"        # quarterly',
                                    'schedule: "0 5 1 */3 *"\n    timeout: 20m', 1)  # fmt: skip
    text = text.replace("type: resources\n", "type: resources\n      timeout: 2h\n", 1)
    rb = tmp_path / "site.yaml"
    rb.write_text(text)
    r = run_dr(capsys, "runbook", "validate", str(rb))
    assert r.code == 0, r.err
    assert r.err == (
        f"warning: {rb}: verification step 'site-objects': its timeout (2h) is longer than "
        "spec.drill.timeout (20m), which cuts it\n"
    )
    j = run_dr(capsys, "runbook", "validate", "-o", "json", str(rb))
    assert j.code == 0 and j.json()["files"][0]["warnings"] == [
        "verification step 'site-objects': its timeout (2h) is longer than spec.drill.timeout (20m), which cuts it"
    ]
    assert j.err.count("warning:") == 1
    # --quiet: "only errors and requested data", as dr config validate's schedule warnings;
    # -o json still carries them.
    q = run_dr(capsys, "--quiet", "runbook", "validate", str(rb))
    assert (q.code, q.err) == (0, "")
    q = run_dr(capsys, "--quiet", "runbook", "validate", "-o", "json", str(rb))
    assert (q.code, q.err, len(q.json()["files"][0]["warnings"])) == (0, "", 1)
    # The example as it is: every step within its drill's timeout, nothing said.
    assert run_dr(capsys, "runbook", "validate", str(SITE)).err == ""


def test_cli_validate_no_traceback_in_a_process(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    r = run_dr_process("runbook", "validate", str(bad))
    assert r.code == 2 and "Traceback" not in r.err and f"{bad}:9:25: spec.objectives.rto" in r.err


def test_cli_render(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = run_dr(capsys, "runbook", "render", str(CACHE))
    assert r.code == 0, r.err
    assert r.out.startswith("# Runbook: redis-cache\n") and UNKNOWN_BACKUP in r.out
    out = tmp_path / "cache.md"
    r = run_dr(capsys, "runbook", "render", str(CACHE), "--out", str(out))
    assert r.code == 0 and r.out == ""
    assert out.read_text().startswith("# Runbook: redis-cache\n")


def test_cli_render_says_once_that_the_repository_is_not_available(isolated_home: Path) -> None:
    r = run_dr_process("runbook", "render", str(CACHE))  # no repository in this home
    assert r.code == 0 and UNKNOWN_BACKUP in r.out and UNKNOWN_DRILL in r.out, r.err
    # Once, not once for the latest backup and again for the latest drill.
    assert r.err.count("repository not available") == 1, r.err
    assert "no repository here" in r.err
    # The page still says where it looked: the repository the built-in defaults name.
    assert (
        f"| Repository | `file://{isolated_home}" in r.out and "(configuration: built-in defaults)" in r.out
    )


def test_cli_render_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    r = run_dr(capsys, "runbook", "render", str(bad))
    assert (
        r.code == 2 and f"{bad}:11:17: spec.verification[0].type: unknown step type" in r.err and r.out == ""
    )
    r = run_dr(capsys, "runbook", "render", str(CACHE), "--out", str(tmp_path / "no" / "dir" / "x.md"))
    assert r.code == 2 and "cannot write: No such file or directory" in r.err


def test_cli_render_refuses_to_write_over_its_runbook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    # `--out` naming the runbook itself (or a link to it) replaced the YAML with the page.
    runbook = tmp_path / "cache.yaml"
    runbook.write_bytes(CACHE.read_bytes())
    (tmp_path / "link.md").symlink_to(runbook)
    for out in (runbook, tmp_path / "link.md"):
        r = run_dr(capsys, "runbook", "render", str(runbook), "--out", str(out))
        assert (r.code, r.out) == (2, ""), r.err
        assert r.err == f"error: --out {out}: that is the runbook {runbook} itself; give another file\n"
        assert runbook.read_bytes() == CACHE.read_bytes()


def test_the_pages_restore_lines_restore_only_the_app(
    capsys: pytest.CaptureFixture[str], kube_client: Any, kube: Any, isolated_home: Path, unique: str
) -> None:
    """One backup policy covers shop and billing, a newer manual backup only billing: shop's page
    restores shop from its policy's backup and leaves billing alone (also with --existing recreate)."""
    from tests.cli_support import shop_and_billing_nightly, write_runbook

    with shop_and_billing_nightly(kube_client, isolated_home, unique) as (shop, billing, config):

        def dr(*args: str) -> Any:
            return run_dr(capsys, "--config", str(config), "--kubeconfig", kube.kubeconfig, *args)

        assert dr("repo", "init").code == 0
        res = dr("backup", "--policy", "nightly", "--no-data", "-o", "json")
        assert res.code == 0, res.err
        nightly = res.json()["id"]
        assert dr("backup", "-n", billing, "--no-data").code == 0  # newer: `latest` of the repository
        rb = write_runbook(isolated_home / "shop.yaml", "shop", shop, backup_policy="nightly")

        online = run_dr(capsys, "--config", str(config), "runbook", "render", str(rb))
        assert online.code == 0, online.err
        offline = render_markdown(load_runbook(rb))  # without the repository: the policy's latest
        for page, backup in (
            (online.out, f"{nightly} --policy nightly"),
            (offline, "latest --policy nightly"),
        ):
            lines = [ln for ln in page.replace(" \\\n    ", " ").splitlines() if ln.startswith("dr restore")]
            replace = next(ln for ln in lines if ln.endswith("--existing recreate"))
            assert replace == f"dr restore {backup} -n {shop} --existing recreate"
            res = dr(*shlex.split(replace)[1:], "--dry-run", "-o", "json")
            assert res.code == 0, res.err
            plan = res.json()
            assert plan["backupId"].endswith("-nightly")  # not the newer manual backup of billing
            assert {i["item"].get("namespace") or i["item"]["name"] for i in plan["items"]} == {shop}
        missing = dr("restore", "latest", "--policy", "weekly", "-n", shop, "--dry-run")
        assert missing.code == 2 and "no backup of policy 'weekly' found in file://" in missing.err


def test_a_policy_with_its_own_repository_the_page_shows_its_backup_and_the_line_restores_it(
    capsys: pytest.CaptureFixture[str], kube_client: Any, kube: Any, isolated_home: Path, unique: str
) -> None:
    """The backup policy writes to a repository that is not the default: the page looked
    for the app's backup in the default one (none), and `dr restore latest --policy P`
    found none there either."""
    from tests.cli_support import small_namespace, write_config, write_runbook

    shop = f"shop-{unique}"
    small_namespace(kube_client, shop)
    config = write_config(isolated_home, backup_policies=[
        {"name": "nightly", "schedule": "0 2 * * *", "repository": "offsite", "scope": {"namespaces": [shop]}}],
        drill_policies=[{"name": "monthly", "runbook": "shop.yaml", "schedule": "0 4 1 * *", "repository": "offsite"}])  # fmt: skip
    doc = yaml.safe_load(config.read_text())
    main = doc["repositories"][0]
    doc["repositories"].append({**main, "name": "offsite", "url": f"file://{isolated_home / 'offsite'}"})
    config.write_text(yaml.safe_dump(doc, sort_keys=False))

    def dr(*args: str) -> Any:
        return run_dr(capsys, "--config", str(config), "--kubeconfig", kube.kubeconfig, *args)

    try:
        assert dr("repo", "init").code == 0
        assert dr("--repo", f"file://{isolated_home / 'offsite'}", "repo", "init").code == 0
        res = dr("backup", "--policy", "nightly", "--no-data", "-o", "json")
        assert res.code == 0, res.err
        nightly = res.json()["id"]
        rb = write_runbook(isolated_home / "shop.yaml", "shop", shop, backup_policy="nightly")
        # A passing drill of the app, saved where its drill policy saves reports.
        from dr.crypto.providers.local import LocalKeyProvider
        from dr.drill.run import save_report
        from dr.storage.file import FileStore
        from tests.repo_helpers import open_with

        offsite = open_with(
            FileStore(isolated_home / "offsite"), LocalKeyProvider(isolated_home / "repo.key")
        )
        save_report(offsite, DRILL.model_copy(update={"id": "drill-offsite", "app": "shop"}))
        page = dr("runbook", "render", str(rb))
        assert page.code == 0 and nightly in page.out, page.err
        # Where the backups are, and with which configuration: not the default repository.
        assert (
            f"| Repository | `file://{isolated_home / 'offsite'}` (configuration: `{config.resolve()}`); "
            "run the `dr` lines below with the same configuration" in page.out
        ), page.out
        assert "drill-offsite" in page.out and "unknown — run `dr report drills`" not in page.out
        res = dr("restore", "latest", "--policy", "nightly", "-n", shop, "--dry-run", "-o", "json")
        assert res.code == 0, res.err
        assert res.json()["backupId"].endswith("-nightly")
        # The page's own lines, copied as they are: with the backup's ID they looked in the
        # default repository ("no backup ... found"), and its list showed no backup at all.
        lines = [ln for ln in page.out.replace(" \\\n    ", " ").splitlines() if ln.startswith("dr ")]
        preview = next(ln for ln in lines if ln.startswith("dr restore") and ln.endswith("--dry-run"))
        res = dr(*shlex.split(preview)[1:], "-o", "json")
        assert res.code == 0, (preview, res.err)
        assert res.json()["backupId"].endswith("-nightly")
        listing = next(ln for ln in lines if ln.startswith("dr backups list"))
        res = dr(*shlex.split(listing)[1:], "-o", "json")
        assert res.code == 0 and len(res.json()) == 1 and nightly in res.out, (listing, res.out, res.err)
    finally:
        kube_client.request("DELETE", f"/api/v1/namespaces/{shop}")


def test_contacts_and_code_render_as_written(tmp_path: Path) -> None:
    # A contact's name, role and ways are the author's free text: "<on-call>" was read as an
    # HTML tag (and vanished), "*" as emphasis; a command holding "``" broke out of its span.
    doc = yaml.safe_load(SITE.read_text())
    doc["spec"]["contacts"] = [
        {
            "name": "*Ops* <on-call>",
            "role": "lead_ops | [pager](x)",
            "email": "ops@example.com",
            "phone": "+1 555",
        }
    ]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    md = render_markdown(load_runbook(path), source="a``b`c")
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable(["table"]).parse(md)
    inline = [t for t in tokens if t.type == "inline"]
    contact = next(t for t in inline if "on-call" in t.content)
    kinds = {c.type for c in contact.children or []}
    assert not kinds & {"html_inline", "em_open", "link_open"}, kinds
    shown = "".join(c.content for c in contact.children or [] if c.type == "text")
    assert "*Ops* <on-call>" in shown and "lead_ops | [pager](x)" in shown and "+1 555" in shown
    spans = [c.content for t in inline for c in t.children or [] if c.type == "code_inline"]
    assert "a``b`c" in spans


def test_kinds_quota_names_and_env_names_render_as_written(tmp_path: Path) -> None:
    # A resources step's kind and a job's environment names went into the page as they were:
    # "<script>…" as raw HTML in a wiki that renders it, "Config*Map*" and "_SECRET_" as emphasis.
    # (The quota's resource names, shown the same way, are names since: see test_runbook_model.)
    doc = yaml.safe_load(SITE.read_text())
    doc["spec"]["verification"] = [
        {"name": "objs", "type": "resources",
         "expect": [{"kind": "<script>alert(1)</script>"}, {"kind": "Config*Map*", "names": ["a"]}]},
        {"name": "job", "type": "job", "image": "busybox", "env": [{"name": "_SECRET_", "value": "a"}]},
    ]  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    md = render_markdown(load_runbook(path))
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable(["table"]).parse(md)
    children = [c for t in tokens if t.type == "inline" for c in t.children or []]
    assert not {c.type for c in children} & {"html_inline", "em_open"}
    shown = "".join(c.content for c in children if c.type == "text")
    for text in ("<script>alert(1)</script>", "Config*Map*", "_SECRET_"):
        assert text in shown, text


def test_long_namespaces_get_new_namespaces_of_their_own() -> None:
    # The new namespace is the name cut to fit "-restored": two namespaces alike in their first 54
    # characters got the same one, and the page's lines restored both into it (and its verify
    # line checked one namespace for both).
    doc = yaml.safe_load(SHOP.read_text())
    head = "team-payments-settlement-reconciliation-batch-processor"  # 54 characters
    doc["spec"]["scope"]["namespaces"] = [f"{head}-eu", f"{head}-us", "shop"]
    rb = Runbook.model_validate(doc)
    args = shlex.split(restore_commands(rb)["new_namespace"][1])
    mapped = [args[i + 1] for i, a in enumerate(args) if a == "--namespace-mapping"]
    new = [m.split("=")[1] for m in mapped]
    assert len(set(new)) == 3 and all(len(n) <= 63 and n.endswith("-restored") for n in new), new
    assert new[2] == "shop-restored"
    from dr.config import is_dns_label

    assert all(is_dns_label(n) for n in new), new


def test_render_warns_of_a_backup_policy_the_config_does_not_define(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A misspelt spec.backupPolicy rendered silently: the page's restore lines say
    # `dr restore latest --policy shop-nigthly`, which refuses to run during the incident.
    from tests.cli_support import two_repository_config

    config = two_repository_config(isolated_home, capsys, backup_policies=[
        {"name": "shop-nightly", "schedule": "0 2 * * *", "scope": {"namespaces": ["shop"]}}])  # fmt: skip
    doc = yaml.safe_load(SHOP.read_text())
    doc["spec"]["backupPolicy"] = "shop-nigthly"
    rb = isolated_home / "shop.yaml"
    rb.write_text(yaml.safe_dump(doc))
    r = run_dr(capsys, "--config", str(config), "runbook", "render", str(rb))
    assert r.code == 0, r.err
    assert "--policy shop-nigthly" in r.out
    assert (
        f"backup policy 'shop-nigthly' (spec.backupPolicy) is not defined in {config}: "
        "the page's dr lines that name it will not run"
    ) in r.err, r.err
    doc["spec"]["backupPolicy"] = "shop-nightly"
    rb.write_text(yaml.safe_dump(doc))
    r = run_dr(capsys, "--config", str(config), "runbook", "render", str(rb))
    assert r.code == 0 and "is not defined" not in r.err, r.err


def test_a_namespace_told_apart_takes_no_name_another_already_has() -> None:
    # Two namespaces cut alike got '-<position>-restored'; that name could be the one a namespace
    # before them already got (its own first 54 characters ending in '-1'): both restored into one.
    doc = yaml.safe_load(SHOP.read_text())
    head = "a" * 52 + "-1"  # 54 characters: the cut keeps them whole
    doc["spec"]["scope"]["namespaces"] = [f"{head}x", f"{head}y"]
    rb = Runbook.model_validate(doc)
    new = list(new_namespace_mapping(rb).values())
    assert len(set(new)) == 2 and all(len(n) <= 63 and n.endswith("-restored") for n in new), new


def test_contacts_keep_their_spaces_and_joiners(tmp_path: Path) -> None:
    # A name is written as its owner writes it: a no-break space ('Équipe : …' in French), a
    # zero-width non-joiner (Persian names), a zero-width joiner (an emoji family) showed as
    # '\xa0', '\u200c', '\u200d' on the page. Terminal controls and bidi overrides still do not pass.
    doc = yaml.safe_load(SITE.read_text())
    name = "Équipe\u00a0: Mohammad\u200cReza 👨\u200d👩\u200d👧"
    doc["spec"]["contacts"] = [{"name": name, "role": "\x1b[2J\u202eevil", "email": "ops@example.com"}]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    md = render_markdown(load_runbook(path))
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(md)
    contact = next(t for t in tokens if t.type == "inline" and "Mohammad" in t.content)
    shown = "".join(c.content for c in contact.children or [] if c.type == "text")
    assert name in shown and "\\x1b[2J\\u202eevil" in shown, shown
