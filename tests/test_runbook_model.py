"""Runbook YAML: the examples, the committed JSON Schema, and every load-time problem with its line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml

from dr.config import Scope
from dr.errors import InvalidInput
from dr.runbook.model import (
    DR_COMMANDS,
    DataStep,
    ExecStep,
    HttpStep,
    JobStep,
    ReadyStep,
    ResourcesStep,
    Runbook,
    json_schema,
    json_schema_text,
    load_runbook,
    parse_json_path,
    workload_ref,
)

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "runbooks"
EXAMPLES = sorted(RUNBOOKS.glob("*.yaml"))

GOOD = """\
apiVersion: dr.dev/v1
kind: Runbook
metadata:
  name: app
spec:
  description: An app.
  contacts:
    - name: Owner
      email: owner@example.com
  scope:
    namespaces: [shop]
  objectives:
    rpo: 24h
    rto: 30m
  verification:
    - name: objects
      type: resources
      expect:
        - kind: Deployment
  procedure:
    - title: Restore
      text: Restore it.
      dr: dr restore latest
"""


def write(tmp_path: Path, text: str, name: str = "rb.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InvalidInput) as e:
        load_runbook(path)
    return e.value.details or [e.value.message]


def with_steps(steps: str) -> str:
    """GOOD with its verification list replaced by ``steps`` (YAML, indented 4)."""
    head, _, rest = GOOD.partition("  verification:\n")
    tail = rest[rest.index("  procedure:") :]
    return head + "  verification:\n" + steps + tail


# --------------------------------------------------------------------------- examples and schema


def test_three_examples_load_and_use_every_step_type() -> None:
    assert [p.name for p in EXAMPLES] == [
        "redis-cache.yaml", "static-site.yaml", "webapp-postgres.yaml", "webapp.yaml"
    ]  # fmt: skip
    runbooks = [load_runbook(p) for p in EXAMPLES]
    types = {s.type for rb in runbooks for s in rb.spec.verification}
    assert types == {"resources", "ready", "http", "exec", "data", "job"}
    shop = runbooks[2]
    assert shop.name == "webapp-postgres"
    assert isinstance(shop.spec.scope, Scope)
    assert shop.spec.objectives.rpo == timedelta(hours=24)
    assert shop.spec.objectives.rto == timedelta(minutes=30)
    assert shop.spec.drill.schedule == "0 4 1 * *"
    assert shop.spec.drill.quota["pods"] == "20"  # ints become quantities
    assert shop.spec.drill.ttl == timedelta(hours=24)
    assert shop.spec.procedure[2].dr == ["backups", "list", "--namespace", "shop"]
    assert shop.spec.procedure[4].dr == [
        "restore",
        "latest",
        "--policy",
        "shop-nightly",
        "-n",
        "shop",
        "--existing",
        "recreate",
    ]
    assert shop.spec.procedure[2].command_line() == "dr backups list --namespace shop"
    http = next(s for s in shop.spec.verification if isinstance(s, HttpStep))
    assert http.expect.json_[0].path == "checks.database" and http.expect.json_[0].equals == "ok"


def test_drill_defaults() -> None:
    rb = load_runbook(RUNBOOKS / "static-site.yaml")
    d = rb.spec.drill
    assert (d.namespace_prefix, d.timeout, d.ttl, d.quota) == (
        "drill",
        timedelta(hours=1),
        timedelta(hours=24),
        {},
    )
    ready = next(s for s in rb.spec.verification if isinstance(s, ReadyStep))
    assert ready.timeout == timedelta(minutes=10)


def test_committed_schema_is_the_generated_one() -> None:
    committed = (RUNBOOKS / "schema.json").read_text()
    assert committed == json_schema_text(), "regenerate: python -m dr.runbook.model > runbooks/schema.json"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_json_schema(path: Path) -> None:
    schema = json.loads((RUNBOOKS / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(yaml.safe_load(path.read_text())))
    assert errors == []


def test_json_schema_rejects_what_the_model_rejects() -> None:
    schema = json_schema()
    doc = yaml.safe_load(with_steps("    - name: x\n      type: teleport\n"))
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    doc = yaml.safe_load(GOOD)
    doc["spec"]["objectivez"] = {}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(doc))


def test_dr_commands_match_the_cli() -> None:
    from dr.cli.main import SUBCOMMANDS

    assert set(DR_COMMANDS) == set(SUBCOMMANDS)


# --------------------------------------------------------------------------- helpers


def test_json_paths() -> None:
    assert parse_json_path("status.db") == ["status", "db"]
    assert parse_json_path("items[0].name") == ["items", 0, "name"]
    assert parse_json_path("$.a[1][2]") == ["a", 1, 2]
    for bad in ("", "a..b", "a[x]", "a.", "[0]"):
        with pytest.raises(ValueError, match="invalid JSON path"):
            parse_json_path(bad)


def test_workload_refs() -> None:
    assert workload_ref("statefulset/postgres") == ("StatefulSet", "postgres")
    assert workload_ref("deploy/web") == ("Deployment", "web")
    assert workload_ref("redis") == (None, "redis")


def test_scratch_namespaces() -> None:
    rb = Runbook.model_validate(yaml.safe_load(GOOD))
    assert rb.scratch_namespaces("a1b2c3") == {"shop": "drill-app-a1b2c3"}
    rid = "20261129-154139-a1b2"
    assert rb.scratch_namespaces(rid) == {"shop": f"drill-app-{rid}"}
    doc = yaml.safe_load(GOOD)
    doc["spec"]["scope"]["namespaces"] = ["shop", "shop-db", "shop-*"]
    many = Runbook.model_validate(doc).scratch_namespaces("a1b2c3")
    assert many == {"shop": "drill-a1b2c3-shop", "shop-db": "drill-a1b2c3-shop-db"}
    assert all(len(n) <= 63 for n in many.values())
    # A long source namespace is cut, the run id never: every run gets names of its own.
    doc["spec"]["scope"]["namespaces"] = ["s" * 63, "t" * 63]
    long = Runbook.model_validate(doc).scratch_namespaces(rid)
    assert long == {"s" * 63: f"drill-{rid}-" + "s" * 36, "t" * 63: f"drill-{rid}-" + "t" * 36}
    assert all(len(n) == 63 for n in long.values())


def test_app_names_too_long_for_a_whole_run_id_are_refused(tmp_path: Path) -> None:
    # drill-<app>-YYYYMMDD-HHMMSS-xxxx: 5 + 1 + 36 + 1 + 20 = 63 characters.
    p = write(tmp_path, GOOD.replace("  name: app\n", "  name: " + "a" * 36 + "\n"))
    assert load_runbook(p).name == "a" * 36
    p = write(tmp_path, GOOD.replace("  name: app\n", "  name: " + "a" * 37 + "\n"))
    [line] = problems_of(p)
    assert line.endswith(
        "spec.drill.namespacePrefix: prefix and app name make scratch namespace names of 64 characters (limit 63)"
    )


def test_step_models_by_type(tmp_path: Path) -> None:
    rb = load_runbook(RUNBOOKS / "webapp-postgres.yaml")
    kinds = [type(s) for s in rb.spec.verification]
    assert kinds == [ResourcesStep, ReadyStep, ExecStep, HttpStep, DataStep, JobStep]
    job = rb.spec.verification[5]
    assert isinstance(job, JobStep) and job.env[1].secret_key_ref is not None
    data = rb.spec.verification[4]
    assert isinstance(data, DataStep) and data.checks[1].min_count == 100


# --------------------------------------------------------------------------- problems, each with file:line:col and field


def test_good_minimal_runbook(tmp_path: Path) -> None:
    rb = load_runbook(write(tmp_path, GOOD))
    assert rb.name == "app" and rb.spec.verification[0].timeout == timedelta(seconds=30)


def test_unknown_step_type(tmp_path: Path) -> None:
    p = write(tmp_path, with_steps("    - name: x\n      type: teleport\n"))
    assert problems_of(p) == [
        f"{p}:17:7: spec.verification[0].type: unknown step type 'teleport' "
        "(known: resources, ready, http, exec, data, job)"
    ]


def test_step_without_type(tmp_path: Path) -> None:
    p = write(tmp_path, with_steps("    - name: x\n"))
    [line] = problems_of(p)
    assert line.startswith(
        f"{p}:16:7: spec.verification[0].type: required field is missing (one of: resources"
    )


def test_bad_regex_in_http_step(tmp_path: Path) -> None:
    steps = (
        "    - name: web\n      type: http\n      service: web\n      port: 80\n"
        "      expect:\n        bodyRegex: '(['\n"
    )
    p = write(tmp_path, with_steps(steps))
    [line] = problems_of(p)
    assert line.startswith(
        f"{p}:21:9: spec.verification[0].expect.bodyRegex: invalid regular expression '(['"
    )


def test_bad_regex_in_exec_step(tmp_path: Path) -> None:
    steps = (
        "    - name: db\n      type: exec\n      workload: statefulset/db\n      command: [ls]\n"
        "      expect:\n        stdoutRegex: 'a{2,1}'\n"
    )
    p = write(tmp_path, with_steps(steps))
    [line] = problems_of(p)
    assert line.startswith(f"{p}:21:9: spec.verification[0].expect.stdoutRegex: invalid regular expression")


def test_bad_json_path(tmp_path: Path) -> None:
    steps = (
        "    - name: web\n      type: http\n      service: web\n      port: 80\n"
        "      expect:\n        json:\n          - path: 'items[x]'\n            equals: 1\n"
    )
    p = write(tmp_path, with_steps(steps))
    [line] = problems_of(p)
    assert line.startswith(
        f"{p}:22:13: spec.verification[0].expect.json[0].path: invalid JSON path 'items[x]'"
    )


def test_missing_required_fields(tmp_path: Path) -> None:
    text = GOOD.replace("    rto: 30m\n", "").replace("  description: An app.\n", "")
    p = write(tmp_path, text)
    assert problems_of(p) == [
        f"{p}:5:1: spec.description: required field is missing",
        f"{p}:11:3: spec.objectives.rto: required field is missing",
    ]


def test_bad_duration(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("rpo: 24h", "rpo: 24hours"))
    assert problems_of(p) == [
        f"{p}:13:5: spec.objectives.rpo: invalid duration '24hours' (examples: 90s, 15m, 1h30m, 7d)"
    ]


@pytest.mark.parametrize(
    ("rto", "shown"),
    [
        ("1000000000d", "'1000000000d'"),  # past timedelta's limit: OverflowError before
        ("36501d", "'36501d'"),  # within it, but a drill's expiry (now + ttl) could overflow
        ("1.0e+400", "inf"),  # YAML reads a float that is infinite
    ],
)
def test_durations_too_long_name_the_field(tmp_path: Path, rto: str, shown: str) -> None:
    p = write(tmp_path, GOOD.replace("rto: 30m", f"rto: {rto}"))
    assert problems_of(p) == [f"{p}:14:5: spec.objectives.rto: duration {shown} is too long (at most 36500d)"]


def test_a_duration_too_long_is_exit_2_in_a_process(tmp_path: Path) -> None:
    from tests.helpers import run_dr_process

    p = write(tmp_path, GOOD.replace("rto: 30m", "rto: 1000000000d"))
    res = run_dr_process("runbook", "validate", str(p))
    assert res.code == 2 and "Traceback" not in res.err
    assert f"{p}:14:5: spec.objectives.rto: duration '1000000000d' is too long" in res.err


def test_zero_duration(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("rto: 30m", "rto: 0s"))
    assert problems_of(p) == [f"{p}:14:5: spec.objectives.rto: must be longer than zero"]


def test_unknown_field_in_a_step(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        GOOD.replace("        - kind: Deployment\n", "        - kind: Deployment\n          mincount: 2\n"),
    )
    assert problems_of(p) == [f"{p}:20:11: spec.verification[0].expect[0].mincount: unknown field"]


def test_bad_cron_and_quota(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  verification:\n",
        "  drill:\n    schedule: '61 * * * *'\n    quota:\n      cpu: lots\n  verification:\n",
    )
    p = write(tmp_path, text)
    found = problems_of(p)
    assert found[0].startswith(f"{p}:16:5: spec.drill.schedule: invalid cron expression '61 * * * *'")
    assert found[1] == f"{p}:18:7: spec.drill.quota.cpu: invalid quantity 'lots' (examples: 2, 500m, 4Gi)"


def test_contact_needs_a_way_to_reach(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("      email: owner@example.com\n", "      role: owner\n"))
    assert problems_of(p) == [
        f"{p}:8:7: spec.contacts[0]: contact 'Owner' needs at least one of email, phone or pager"
    ]


def test_bad_label_selector(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        GOOD.replace(
            "        - kind: Deployment\n", "        - kind: Deployment\n          selector: 'app in (a,b'\n"
        ),
    )
    [line] = problems_of(p)
    assert (
        line
        == f"{p}:20:11: spec.verification[0].expect[0].selector: invalid label selector 'app in (a,b': cannot parse 'app in (a,b'"
    )


def test_exec_needs_exactly_one_target(tmp_path: Path) -> None:
    p = write(tmp_path, with_steps("    - name: db\n      type: exec\n      command: [ls]\n"))
    assert problems_of(p) == [f"{p}:16:7: spec.verification[0]: give exactly one of workload or selector"]
    steps = "    - name: db\n      type: exec\n      workload: cronjob/db\n      command: [ls]\n"
    p = write(tmp_path, with_steps(steps))
    [line] = problems_of(p)
    assert "workload kind 'cronjob' is not one of deployment, statefulset, daemonset, job" in line


def test_data_check_needs_exactly_one_expectation(tmp_path: Path) -> None:
    steps = (
        "    - name: vol\n      type: data\n      pvc: data\n      checks:\n"
        "        - path: a\n          count: 1\n          minCount: 2\n"
        "        - path: ../etc/passwd\n          count: 1\n"
    )
    p = write(tmp_path, with_steps(steps))
    assert problems_of(p) == [
        f"{p}:20:11: spec.verification[0].checks[0]: give exactly one of sha256, count or minCount",
        f"{p}:23:11: spec.verification[0].checks[1].path: path '../etc/passwd' must stay inside the volume (no '..')",
    ]


def test_job_env_needs_one_source(tmp_path: Path) -> None:
    steps = "    - name: smoke\n      type: job\n      image: busybox\n      env:\n        - name: A\n"
    p = write(tmp_path, with_steps(steps))
    assert problems_of(p) == [
        f"{p}:20:11: spec.verification[0].env[0]: env A: give exactly one of value or secretKeyRef"
    ]


def test_http_port_range(tmp_path: Path) -> None:
    p = write(
        tmp_path, with_steps("    - name: web\n      type: http\n      service: web\n      port: 70000\n")
    )
    assert problems_of(p) == [f"{p}:19:7: spec.verification[0].port: port 70000 out of range 1-65535"]


@pytest.mark.parametrize(
    ("port", "problem"),
    [
        ('"70000"', "port 70000 out of range 1-65535"),
        ("http-metrics-endpoint", "'http-metrics-endpoint' is not a port name"),
        ('"8080x"', None),
        ("web--ui", "'web--ui' is not a port name"),
        ("-web", "'-web' is not a port name"),
        ("Web", "'Web' is not a port name"),
        ("http", None),
        ('"80"', None),
    ],
)
def test_http_port_names_and_quoted_numbers(tmp_path: Path, port: str, problem: str | None) -> None:
    # A quoted number was a port "name" and never range-checked; a name Kubernetes
    # cannot give a port (over 15 characters, '--') passed, to fail at drill time.
    p = write(
        tmp_path, with_steps(f"    - name: web\n      type: http\n      service: web\n      port: {port}\n")
    )
    if problem is None:
        step = load_runbook(p).spec.verification[0]
        assert isinstance(step, HttpStep) and step.port == (80 if port == '"80"' else port.strip('"'))
    else:
        problems = problems_of(p)
        assert len(problems) == 1 and problems[0].startswith(
            f"{p}:19:7: spec.verification[0].port: {problem}"
        )


@pytest.mark.parametrize(
    ("steps", "where"),
    [
        ("    - {name: w, type: http, service: web, port: true}\n", "spec.verification[0].port"),
        ("    - {name: w, type: http, service: web, port: 80, expect: {status: true}}\n", "spec.verification[0].expect.status"),
        ("    - {name: r, type: resources, expect: [{kind: Pod, minCount: true}]}\n", "spec.verification[0].expect[0].minCount"),
        ("    - {name: e, type: exec, workload: db, command: [x], expect: {exitCode: false}}\n", "spec.verification[0].expect.exitCode"),
        ("    - {name: d, type: data, pvc: data, checks: [{path: a, count: true}]}\n", "spec.verification[0].checks[0].count"),
        ("    - {name: d, type: data, pvc: data, checks: [{path: a, minCount: true}]}\n", "spec.verification[0].checks[0].minCount"),
        ("    - {name: j, type: job, image: busybox, backoffLimit: true}\n", "spec.verification[0].backoffLimit"),
    ],
)  # fmt: skip
def test_true_and_false_are_not_numbers(tmp_path: Path, steps: str, where: str) -> None:
    # YAML's true is Python's 1: `port: true` was taken for port 1, `exitCode: false` for 0.
    p = write(tmp_path, with_steps(steps))
    [line] = problems_of(p)
    assert line.startswith(f"{p}:16:") and f": {where}: expected " in line and "not true or false" in line, (
        line
    )


def test_drill_time_zone_must_be_known(tmp_path: Path) -> None:
    # The drill CronJob's spec.timeZone: a misspelt zone was rendered as given.
    drill = "  drill:\n    schedule: '0 3 * * 6'\n    timeZone: {}\n  verification:\n"
    p = write(tmp_path, GOOD.replace("  verification:\n", drill.format("Europe/Berln")))
    assert problems_of(p) == [
        f"{p}:17:5: spec.drill.timeZone: unknown time zone 'Europe/Berln' (an IANA name such as "
        "Europe/Berlin or Etc/UTC)"
    ]
    p = write(tmp_path, GOOD.replace("  verification:\n", drill.format("Europe/Berlin")))
    assert load_runbook(p).spec.drill.time_zone == "Europe/Berlin"


def test_procedure_command_must_be_dr(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("dr: dr restore latest", "dr: dr restor latest"))
    [line] = problems_of(p)
    assert line.startswith(f"{p}:23:7: spec.procedure[0].dr: 'restor' is not a dr command (known: backup,")
    p = write(tmp_path, GOOD.replace("dr: dr restore latest", 'dr: "dr restore \'latest"'))
    [line] = problems_of(p)
    assert line.startswith(f"{p}:23:7: spec.procedure[0].dr: cannot split command")


def test_global_options_before_the_command_are_fine(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("dr: dr restore latest", "dr: dr --repo s3://b/p restore latest"))
    assert load_runbook(p).spec.procedure[0].dr == ["--repo", "s3://b/p", "restore", "latest"]


def test_duplicate_step_names_and_unknown_namespace(tmp_path: Path) -> None:
    steps = (
        "    - name: objects\n      type: resources\n      expect: [{kind: Service}]\n"
        "    - name: objects\n      type: ready\n      namespace: other\n"
    )
    p = write(tmp_path, with_steps(steps))
    assert problems_of(p) == [
        f"{p}:19:7: spec.verification[1].name: duplicate step name 'objects' (also step 1)",
        f"{p}:21:7: spec.verification[1].namespace: namespace 'other' is not a named namespace of spec.scope",
    ]


def test_scope_needs_a_named_namespace(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("namespaces: [shop]", "namespaces: ['shop-*']"))
    assert problems_of(p) == [
        f"{p}:11:5: spec.scope.namespaces: at least one namespace must be a name, not a glob "
        "(drills restore named namespaces)"
    ]
    p = write(tmp_path, GOOD.replace("namespaces: [shop]", "namespaces: []"))
    assert problems_of(p) == [f"{p}:11:5: spec.scope.namespaces: a runbook needs at least one namespace"]


def test_prefix_too_long_for_namespace_names(tmp_path: Path) -> None:
    text = GOOD.replace("  name: app\n", "  name: " + "a" * 40 + "\n").replace(
        "  verification:\n", "  drill:\n    namespacePrefix: drill-namespaces-x\n  verification:\n"
    )
    p = write(tmp_path, text)
    [line] = problems_of(p)
    assert line.startswith(
        f"{p}:16:5: spec.drill.namespacePrefix: prefix and app name make scratch namespace names of 80"
    )


def test_wrong_kind_and_api_version(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("kind: Runbook", "kind: Config").replace("dr.dev/v1", "dr.dev/v2"))
    found = problems_of(p)
    assert found[0].startswith(f"{p}:1:1: apiVersion: Input should be 'dr.dev/v1'")
    assert found[1].startswith(f"{p}:2:1: kind: Input should be 'Runbook'")


def test_yaml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    p = write(tmp_path, "spec: [unclosed\n")
    [line] = problems_of(p)
    assert line.startswith(f"{p}:2:1: invalid YAML")
    assert problems_of(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_steps_accept_models_in_code() -> None:
    # Building a runbook in code (the drill orchestrator's tests) goes through the same dispatch.
    doc = yaml.safe_load(GOOD)
    rb = Runbook.model_validate(doc)
    again = Runbook.model_validate(rb.model_dump(by_alias=True))
    assert again.spec.verification == rb.spec.verification


@pytest.mark.parametrize(
    ("old", "new", "where", "reason"),
    [
        ("dr: dr restore latest", "dr: dr", "spec.procedure[0].dr", "the dr command is empty"),
        (
            "dr: dr restore latest",
            "dr: {restore: latest}",
            "spec.procedure[0].dr",
            "expected a command line or a list",
        ),
        ("dr: dr restore latest", "dr: [dr, --repo, x]", "spec.procedure[0].dr", "the dr command is empty"),
        ("email: owner@example.com", "email: owner", "spec.contacts[0].email", "String should match pattern"),
        (
            "namespaces: [shop]",
            "namespaces: [Shop_1]",
            "spec.scope.namespaces[0]",
            "'Shop_1' is not a namespace name",
        ),
        # A name is matched whole and is at most 63 characters: both were valid ("$" matches
        # before a last newline, and the length was not checked).
        (
            "namespaces: [shop]",
            'namespaces: ["shop\\n"]',
            "spec.scope.namespaces[0]",
            "'shop\\n' is not a namespace name",
        ),
        (
            "namespaces: [shop]",
            f"namespaces: [{'a' * 64}]",
            "spec.scope.namespaces[0]",
            f"'{'a' * 64}' is not a namespace name",
        ),
        ("  scope:\n", "  scope:\n    selector: 'a=b,,c'\n", "spec.scope.selector", "empty term"),
        (
            "    - name: objects\n",
            "    - name: Objects!\n",
            "spec.verification[0].name",
            "String should match pattern",
        ),
        (
            "        - kind: Deployment\n",
            "        - kind: Deployment\n          minCount: -1\n",
            "spec.verification[0].expect[0].minCount",
            "greater than or equal to 0",
        ),
    ],
)
def test_field_problems(tmp_path: Path, old: str, new: str, where: str, reason: str) -> None:
    assert old in GOOD
    p = write(tmp_path, GOOD.replace(old, new))
    [line] = problems_of(p)
    assert f": {where}: " in line and reason in line, line
    assert line.startswith(f"{p}:")


@pytest.mark.parametrize(
    ("steps", "where", "reason"),
    [
        (
            "    - {name: w, type: http, service: Web_1, port: 80}\n",
            "spec.verification[0].service",
            "'Web_1' is not a DNS label",
        ),
        (
            "    - {name: w, type: http, service: web, port: 80, method: POST, body: 'not json'}\n",
            "spec.verification[0]",
            "body is not valid JSON",
        ),
        (
            "    - {name: w, type: http, service: web, port: 80, path: healthz}\n",
            "spec.verification[0].path",
            "String should match pattern '^/'",
        ),
        (
            "    - {name: d, type: data, pvc: data, checks: [{path: a, sha256: abc}]}\n",
            "spec.verification[0].checks[0].sha256",
            "String should match pattern",
        ),
        (
            "    - {name: j, type: job, image: busybox, env: [{name: '1=x', value: a}]}\n",
            "spec.verification[0].env[0].name",
            "String should match pattern",
        ),
        ("    - [not, a, mapping]\n", "spec.verification[0]", "a verification step is a mapping with a type"),
        (
            "    - {name: r, type: ready, kinds: [CronJob]}\n",
            "spec.verification[0].kinds[0]",
            "Input should be",
        ),
    ],
)
def test_step_problems(tmp_path: Path, steps: str, where: str, reason: str) -> None:
    p = write(tmp_path, with_steps(steps))
    [line] = problems_of(p)
    assert f": {where}: " in line and reason in line, line


def test_http_body_with_its_own_content_type(tmp_path: Path) -> None:
    steps = (
        "    - {name: w, type: http, service: web, port: 80, method: POST, body: 'a=1',"
        " headers: {content-type: application/x-www-form-urlencoded}}\n"
    )
    rb = load_runbook(write(tmp_path, with_steps(steps)))
    step = rb.spec.verification[0]
    assert isinstance(step, HttpStep) and step.content_type() == "application/x-www-form-urlencoded"


def test_quota_values_must_be_scalars(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        GOOD.replace("  verification:\n", "  drill:\n    quota:\n      pods: [1]\n  verification:\n"),
    )
    assert problems_of(p) == [f"{p}:17:7: spec.drill.quota.pods: expected a quantity such as 2, 500m, 4Gi"]


def test_scope_uses_the_config_rules_inside_a_runbook(tmp_path: Path) -> None:
    # spec.scope is dr.yaml's Scope (a dataclass that pydantic validates here): an
    # unknown field is named like any other, and true/false flags read as text.
    p = write(
        tmp_path, GOOD.replace("    namespaces: [shop]\n", "    namespaces: [shop]\n    namespace: shop\n")
    )
    assert problems_of(p) == [f"{p}:12:5: spec.scope.namespace: unknown field"]
    p = write(
        tmp_path,
        GOOD.replace(
            "    namespaces: [shop]\n", "    namespaces: [shop]\n    includeClusterResources: true\n"
        ),
    )
    assert load_runbook(p).spec.scope.include_cluster_resources == "true"


def test_a_ttl_no_longer_than_the_timeout_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("  verification:\n", "  drill:\n    timeout: 2h\n    ttl: 1h\n  verification:\n")
    p = write(tmp_path, text)
    [found] = problems_of(p)
    assert found.endswith(
        "spec.drill: ttl (1:00:00) must be longer than the drill's timeout (2:00:00): "
        "gc would delete a running drill's scratch namespace"
    ), found
    assert found.startswith(f"{p}:")


@pytest.mark.parametrize(
    ("mapping", "where", "reason"),
    [
        ("{Standard: fast}", "storageClassMapping.Standard", "'Standard' is not a storage class name"),
        ("{standard: 'fa st'}", "storageClassMapping.standard", "'fa st' is not a storage class name"),
        (
            "{standard: true}",
            "storageClassMapping.standard",
            "expected a storage class name, not true or false",
        ),
        ("[standard]", "storageClassMapping", "Input should be a valid dictionary"),
    ],
)
def test_bad_storage_class_mapping(tmp_path: Path, mapping: str, where: str, reason: str) -> None:
    text = GOOD.replace(
        "  verification:\n", f"  drill:\n    storageClassMapping: {mapping}\n  verification:\n"
    )
    [found] = problems_of(write(tmp_path, text))
    assert found.startswith(f"{tmp_path / 'rb.yaml'}:16:") and f": spec.drill.{where}: {reason}" in found, (
        found
    )


def test_storage_class_mapping_of_a_drill(tmp_path: Path) -> None:
    from tests.helpers import run_dr_process

    assert load_runbook(write(tmp_path, GOOD)).spec.drill.storage_class_mapping == {}
    text = GOOD.replace(
        "  verification:\n", "  drill:\n    storageClassMapping:\n      fast-a: standard.b\n  verification:\n"
    )
    assert load_runbook(write(tmp_path, text)).spec.drill.storage_class_mapping == {"fast-a": "standard.b"}
    p = write(tmp_path, text.replace("standard.b", "Standard_B"))
    res = run_dr_process("runbook", "validate", str(p))
    assert res.code == 2 and "Traceback" not in res.err
    assert (
        f"{p}:17:7: spec.drill.storageClassMapping.fast-a: 'Standard_B' is not a storage class name"
        in res.err
    )


def test_quota_resource_names_and_the_backup_policy_must_be_names(tmp_path: Path) -> None:
    # Any text was taken: a quota key the API server refuses stopped the drill (its ResourceQuota
    # could not be made) at 3 a.m. instead of failing validation, and a backupPolicy no dr.yaml
    # policy can be named went into the page's `dr restore latest --policy …` lines.
    text = GOOD.replace(
        "  verification:\n",
        "  backupPolicy: nightly | <b>x</b>\n  drill:\n    quota:\n      requests.cpu: 2\n"
        "      count/deployments.apps: 3\n      requests.nvidia.com/gpu: 1\n      cpu limit: 2\n"
        "  verification:\n",
    )
    p = write(tmp_path, text)
    found = problems_of(p)
    assert len(found) == 2, found
    assert found[0].startswith(f"{p}:15:3: spec.backupPolicy: "), found
    assert found[1].startswith(f"{p}:21:7: spec.drill.quota.cpu limit: "), found
    assert "is not a resource name" in found[1], found


def test_a_scope_glob_that_matches_no_namespace_is_refused(tmp_path: Path) -> None:
    from dr.backup.scope import NAME_RULE

    # Names were checked, globs not: `Shop_*` or `shop-[|]*` (no namespace name can match) were
    # valid, and the page's restore lines passed them to `dr restore -n`, restoring nothing of them.
    p = write(tmp_path, GOOD.replace("namespaces: [shop]", "namespaces: [shop, 'Shop_*', 'db-[|]', 'web-*']"))
    assert problems_of(p) == [
        f"{p}:11:24: spec.scope.namespaces[1]: glob 'Shop_*' matches no namespace name ({NAME_RULE})",
        f"{p}:11:34: spec.scope.namespaces[2]: glob 'db-[|]' matches no namespace name ({NAME_RULE})",
    ]


def _headers_problem(tmp_path: Path, headers: str) -> str:
    """The one problem of a runbook whose http step has ``headers`` (the YAML lines under
    ``headers:``): it must be that of the step's headers."""
    steps = (
        "    - name: web\n      type: http\n      service: web\n      port: 80\n      headers:\n" + headers
    )
    p = write(tmp_path, with_steps(steps))
    found = problems_of(p)
    assert len(found) == 1 and found[0].startswith(f"{p}:20:7: spec.verification[0].headers: "), found
    return found[0]


def test_http_headers_that_cannot_be_sent_are_refused_without_their_values(tmp_path: Path) -> None:
    # A header value written as a YAML '|' block keeps its final newline: valid, and at the drill the
    # step failed with "internal error: ValueError: Invalid header value b'k3y-…\n'" — the API key
    # in the report and on the terminal.
    found = _headers_problem(
        tmp_path, "        X-Api-Key: |\n          k3y-v4lu3-s3cr3t\n        Bad Name: x\n"
    )
    assert "X-Api-Key: its value holds a line break or another control character" in found
    assert "'Bad Name' is not a header name" in found
    assert "k3y" not in found


def test_http_header_values_the_client_cannot_encode_are_refused_without_them(tmp_path: Path) -> None:
    # The HTTP client sends a header's value as Latin-1: a value with a character outside it (a
    # token pasted with a '€', a name in Greek) was valid, and the step failed at every drill with
    # "internal error: UnicodeEncodeError: 'latin-1' codec can't encode character…" — a character
    # of the value in the report. Latin-1 values ('é') are sent as ever.
    found = _headers_problem(tmp_path, "        X-Api-Key: k3y€s3cr3t\n        X-Team: équipe\n")
    assert "X-Api-Key: its value holds a character outside Latin-1" in found, found
    assert "X-Team" not in found and "k3y" not in found and "€" not in found
