"""dr.yaml: models, line-accurate errors, defaults, and `dr config validate`."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dr import config as cfgmod
from dr.config import default_config, load_config, load_config_file
from dr.errors import InvalidInput
from tests.helpers import run_dr, run_dr_process

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "dr.yaml"

BAD = """\
repositories:
  - name: primary
    url: file:///var/backups/dr
backupPolicies:
  - name: nightly
    schedule: "0 25 * * *"
    retention:
      keepDialy: 7
keyProviders:
  - name: k
    uri: ftp://keys.example.com/k
"""


def test_example_config_uses_every_section() -> None:
    c = load_config_file(EXAMPLE)
    schemes = {r.url.split(":")[0] for r in c.repositories}
    assert {"s3", "file"} <= schemes
    providers = {k.uri.split(":")[0] for k in c.key_providers}
    assert {"vault", "awskms"} <= providers
    assert len(c.backup_policies) >= 2 and all(p.schedule for p in c.backup_policies)
    assert all(any(vars(p.retention).values()) for p in c.backup_policies)
    assert c.drill_policies and c.drill_policies[0].backup_policy == "shop-nightly"
    assert c.backup_policies[0].rpo == timedelta(hours=24)
    assert (
        c.repositories[0].s3
        and c.repositories[0].s3.object_lock
        and c.repositories[0].s3.object_lock.days == 30
    )


def test_three_problems_each_with_its_line(tmp_path: Path) -> None:
    f = tmp_path / "dr.yaml"
    f.write_text(BAD)
    with pytest.raises(InvalidInput) as e:
        load_config_file(f)
    problems = e.value.details
    assert len(problems) == 3, problems
    assert problems[0].startswith(
        f"{f}:6:5: backupPolicies[0].schedule: invalid cron expression '0 25 * * *'"
    )
    assert "hour 25 out of range 0-23" in problems[0]
    assert problems[1] == f"{f}:8:7: backupPolicies[0].retention.keepDialy: unknown field"
    assert problems[2].startswith(f"{f}:11:5: keyProviders[0].uri: unsupported key provider URL")


def test_a_misspelt_top_level_section_is_a_problem_not_a_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The only problem in the document is at the top level: with no other problem
    # beside it, it must still fail the file, or `repositorys:` silently means none.
    f = tmp_path / "dr.yaml"
    f.write_text("apiVersion: dr.dev/v1\nkind: Config\nrepositorys: []\n")
    with pytest.raises(InvalidInput) as e:
        load_config_file(f)
    assert e.value.details == [f"{f}:3:1: repositorys: unknown field"]
    r = run_dr(capsys, "config", "validate", str(f))
    assert r.code == 2 and r.out == ""
    assert f"{f}:3:1: repositorys: unknown field" in r.err
    r = run_dr(capsys, "--config", str(f), "config", "show")
    assert r.code == 2 and r.out == ""


def _nested_aliases(levels: int) -> str:
    """The "billion laughs": each anchor is a list of nine aliases of the one before."""
    doc = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, levels + 1):
        doc += f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n"
    return doc


def _refused_by_both_validators(capsys: pytest.CaptureFixture[str], f: Path, text: str, pattern: str) -> None:
    """Every reader of YAML (dr.yaml, runbooks) goes through load_yaml: ``text`` in ``f`` is exit 2
    from both validators, with an error matching ``pattern``, no traceback, nothing on stdout."""
    f.write_text(text)
    for cmd in (["config", "validate"], ["runbook", "validate"]):
        r = run_dr(capsys, *cmd, str(f))
        assert r.code == 2 and r.out == "", (cmd, r.err)
        assert re.search(pattern, r.err), (cmd, r.err)
        assert "Traceback" not in r.err and "Error" not in r.err, (cmd, r.err)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &a [1, *a]\n", ":1:4: invalid YAML: an alias inside its own anchor"),
        ("repositories: &r\n  - name: main\n    keys: *r\n", ":1:15: invalid YAML: an alias inside its own anchor"),
        # The column is where the parser ran out of stack (it depends on the stack's depth).
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", r":1:\d+: invalid YAML: nested too deeply"),
        # 9**9 strings if each alias were walked apart: it must take no longer than the plain document.
        (_nested_aliases(9), ":1:1: a0: unknown field"),
    ],
    ids=["recursive-alias", "recursive-alias-in-a-field", "deep-nesting", "billion-laughs"],
)  # fmt: skip
@pytest.mark.timeout(60)  # the bound on the billion laughs (the suite's own is 600 s)
def test_hostile_yaml_is_one_located_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    # Every reader of YAML (dr.yaml, runbooks) goes through load_yaml: exit 2 and the
    # file's line, not a RecursionError (exit 1) or a parse that never ends.
    _refused_by_both_validators(
        capsys, tmp_path / "hostile.yaml", text, re.escape(str(tmp_path / "hostile.yaml")) + expected
    )


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "repositories:\n  - name: r\n    url: 'file:///srv/dr?x=1'\n",
            ":3:5: repositories[0].url: repository URL 'file:///srv/dr?x=***': a file:// URL takes no '?' or '#'",
        ),
        (
            "repositories:\n  - name: r\n    url: 's3://bkt/p?endpiont=http://s3.local'\n",
            ":3:5: repositories[0].url: repository URL 's3://bkt/p?endpiont=***': unknown query parameter 'endpiont'",
        ),
        (
            "repositories:\n  - name: r\n    url: 's3://bkt/p?endpoint=s3.local'\n",
            ":3:5: repositories[0].url: repository URL 's3://bkt/p?endpoint=***': endpoint 's3.local' must be",
        ),
        (
            "repositories:\n  - name: r\n    url: 's3://bkt/p?region=eu-west-1'\n    s3: {region: us-east-1}\n",
            ":3:5: repositories[0].url: repository URL 's3://bkt/p?region=***': region='eu-west-1' in the URL "
            "contradicts region='us-east-1' in the config",
        ),
        (
            "repositories:\n  - name: r\n    url: 'gs://bkt/p?projekt=x'\n",
            ":3:5: repositories[0].url: repository URL 'gs://bkt/p?projekt=***': unknown query parameter 'projekt'",
        ),
        (
            "keyProviders:\n  - name: k\n    uri: 'vault://transit'\n",
            ":3:5: keyProviders[0].uri: key provider 'vault://transit': use vault://<transit mount>/keys/<key name>",
        ),
        (
            "keyProviders:\n  - name: k\n    uri: 'awskms://'\n",
            ":3:5: keyProviders[0].uri: key provider 'awskms://': use awskms://<key id",
        ),
        (
            "keyProviders:\n  - name: k\n    uri: 'gcpkms://projects/p'\n",
            ":3:5: keyProviders[0].uri: key provider 'gcpkms://projects/p': use gcpkms://projects/P/locations/L/",
        ),
    ],
    ids=["file-query", "s3-unknown-setting", "s3-bad-endpoint", "s3-contradiction", "gs-unknown-setting",
         "vault-key-name", "awskms-key-name", "gcpkms-key-name"],
)  # fmt: skip
def test_cli_validate_refuses_the_locations_the_stores_and_key_providers_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, expected: str
) -> None:
    # Found by `dr config validate`, with the file's line, not first by a scheduled
    # backup (whose message has no line) after validate said "valid".
    f = tmp_path / "dr.yaml"
    f.write_text(section)
    r = run_dr(capsys, "config", "validate", str(f))
    assert r.code == 2 and r.out == "", r.err
    assert f"  {f}{expected}" in r.err, r.err
    r = run_dr(capsys, "config", "validate", str(f), "-o", "json")
    assert r.code == 2
    assert [p for p in r.json()["problems"] if p.startswith(f"{f}{expected}")], r.out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("? [a, b]\n: c\n", ":1:3: invalid YAML: a key must be text, not a list or mapping"),
        ("? {a: 1}\n: c\n", ":1:3: invalid YAML: a key must be text, not a list or mapping"),
        # 1 and true were one key to Python ("duplicate key 'True'"); on: is true in YAML 1.1.
        ("1: x\ntrue: z\n", ":1:1: invalid YAML: key '1' is not text (quote it: '1')"),
        (
            "apiVersion: dr.dev/v1\nmover:\n  on: x\n",
            ":3:3: invalid YAML: key 'on' is not text (quote it: 'on')",
        ),
        ("null: y\n", ":1:1: invalid YAML: key 'null' is not text (quote it: 'null')"),
    ],
    ids=["list-key", "mapping-key", "int-and-bool-keys", "yaml-1.1-boolean-key", "null-key"],
)
def test_a_key_that_is_not_text_is_one_located_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    # A list or mapping as a key was "TypeError: unhashable type" (exit 1).
    _refused_by_both_validators(
        capsys, tmp_path / "keys.yaml", text, re.escape(f"{tmp_path / 'keys.yaml'}{expected}")
    )


def _validate_refuses(capsys: pytest.CaptureFixture[str], f: Path, text: str) -> list[str]:
    """Write ``text`` to ``f``; `dr config validate` refuses it (exit 2, nothing on stdout): its error lines."""
    f.write_text(text)
    r = run_dr(capsys, "config", "validate", str(f))
    assert (r.code, r.out) == (2, ""), r.err
    return r.err.splitlines()


def test_cli_validate_refuses_a_policy_selector_the_backup_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The scheduled backup refused them (exit 2, no line); validate said "valid".
    f = tmp_path / "dr.yaml"
    lines = _validate_refuses(
        capsys,
        f,
        "backupPolicies:\n"
        "  - name: a\n"
        "    schedule: '@daily'\n"
        "    scope: {namespaces: [shop], selector: 'app in (web'}\n"
        "    hooks:\n"
        "      - selector: app=web\n"
        "      - selector: '!!app'\n",
    )
    assert lines[1:] == [
        f"  {f}:4:33: backupPolicies[0].scope.selector: label selector 'app in (web': unbalanced '('",
        f"  {f}:7:9: backupPolicies[0].hooks[1].selector: label selector '!!app': invalid label key '!app'",
    ]


def test_cli_validate_refuses_policy_namespaces_the_backup_never_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Validate said "valid"; the scheduled backup then warned "does not exist" each night, or
    # (for "") backed up every namespace: an empty entry is no namespace given.
    f = tmp_path / "dr.yaml"
    lines = _validate_refuses(
        capsys,
        f,
        "backupPolicies:\n"
        "  - name: a\n"
        "    schedule: '@daily'\n"
        "    scope:\n"
        "      namespaces:\n"
        "        - shop\n"
        "        - Bad_NS\n"
        "        - '['\n"
        "        - ''\n"
        "        - 'team-*, Team-*'\n"
        "        - '*-db'\n"
        "        - 'app-?'\n"
        "        - '[a-c]*'\n",
    )
    rule = "(a-z, 0-9 and '-', a letter or digit at each end, at most 63 characters)"
    assert lines == [
        f"error: {f}: 4 problems",
        f"  {f}:7:11: backupPolicies[0].scope.namespaces[1]: 'Bad_NS' is not a namespace name {rule}",
        f"  {f}:8:11: backupPolicies[0].scope.namespaces[2]: glob '[': a '[' without its ']' matches only "
        "a '[', which no namespace name holds",
        f"  {f}:9:11: backupPolicies[0].scope.namespaces[3]: '' names no namespace (the backup skips it: "
        "with the other entries, it backs up only theirs)",
        f"  {f}:10:11: backupPolicies[0].scope.namespaces[4]: glob 'Team-*' matches no namespace name {rule}",
    ]
    # Only when no entry names a namespace does the backup take every one.
    lines = _validate_refuses(
        capsys,
        f,
        "backupPolicies:\n  - name: a\n    schedule: '@daily'\n    scope:\n      namespaces: ['', ' , ']\n",
    )
    every = "names no namespace (the backup would take it for none, and back up every namespace)"
    assert lines == [
        f"error: {f}: 2 problems",
        f"  {f}:5:20: backupPolicies[0].scope.namespaces[0]: '' {every}",
        f"  {f}:5:24: backupPolicies[0].scope.namespaces[1]: ' , ' {every}",
    ]


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("shop", True),
        ("team-*", True),
        ("*-db", True),  # a-db
        ("a-*", True),  # a-a
        ("*", True),
        ("app-?", True),
        ("[!a-z]", True),  # 0
        ("a[-]b", True),
        ("-*", False),  # every name starts with a letter or digit
        ("*-", False),
        ("[-]", False),
        ("[!a-z0-9]", False),
        ("[z-a]", False),
        ("x" * 64, False),
        ("?" * 64, False),
        ("*" + "a" * 63, True),
        ("Shop", False),
        ("sh_op", False),
    ],
)
def test_namespace_patterns_that_no_namespace_matches(pattern: str, matches: bool) -> None:
    from dr.backup.scope import namespace_pattern_problem

    assert (namespace_pattern_problem(pattern) is None) is matches


def test_cli_validate_checks_drill_policies_runbooks_as_deploy_render_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Validate said "valid" for a runbook that is not there or not valid; `dr deploy render`
    # (and each scheduled drill) refused it. Relative paths: to the config's folder, then the
    # current one, as render looks them up.
    conf = tmp_path / "conf"
    (conf / "rb").mkdir(parents=True)
    good = (Path(__file__).resolve().parent.parent / "runbooks" / "redis-cache.yaml").read_text()
    (conf / "rb" / "good.yaml").write_text(good)
    (tmp_path / "here.yaml").write_text(good)
    bad = conf / "rb" / "bad.yaml"
    bad.write_text(good.replace("name: redis-cache", "name: Redis_Cache").replace("rpo: 2h", "rpo: soon"))
    monkeypatch.chdir(tmp_path)
    f = conf / "dr.yaml"
    policies = [("missing.yaml", 1), ("rb/bad.yaml", 2), ("rb/good.yaml", 3), ("here.yaml", 4)]
    f.write_text(
        "drillPolicies:\n"
        + "".join(f"  - name: d{n}\n    schedule: '@monthly'\n    runbook: {rb}\n" for rb, n in policies)
    )
    r = run_dr(capsys, "runbook", "validate", str(bad))
    assert r.code == 2
    runbook_lines = r.err.splitlines()[1:]
    assert len(runbook_lines) == 2 and all(line.startswith(f"  {bad}:") for line in runbook_lines)

    r = run_dr(capsys, "config", "validate", str(f))
    assert r.code == 2 and r.out == "", r.err
    missing = f"{f}:4:5: drillPolicies[0].runbook: missing.yaml: no such file (looked for {conf / 'missing.yaml'}, missing.yaml)"
    assert r.err.splitlines() == [
        f"error: {f}: 4 problems",
        f"  {missing}",
        f"  {f}:7:5: drillPolicies[1].runbook: rb/bad.yaml: invalid runbook (2 problems below)",
        *runbook_lines,
    ]
    # The line for a missing runbook is render's own.
    r = run_dr(capsys, "deploy", "render", "--config", str(f))
    assert (r.code, r.err) == (2, f"error: {missing}\n")


def test_cli_validate_bad_config_exit_2_without_traceback(tmp_path: Path) -> None:
    f = tmp_path / "dr.yaml"
    f.write_text(BAD)
    r = run_dr_process("config", "validate", str(f))
    assert r.code == 2
    assert "Traceback" not in r.err
    lines = [ln.strip() for ln in r.err.splitlines()]
    assert any(ln.startswith(f"{f}:6:5:") for ln in lines)
    assert any(ln.startswith(f"{f}:8:7:") for ln in lines)
    assert any(ln.startswith(f"{f}:11:5:") for ln in lines)
    assert r.out == ""


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_cli_validate_bad_config_prints_its_problems_as_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    # -o json printed nothing at all for an invalid file: a script saw only the exit code.
    f = tmp_path / "dr.yaml"
    f.write_text(BAD)
    r = run_dr(capsys, "config", "validate", str(f), "-o", fmt)
    assert r.code == 2
    doc = json.loads(r.out) if fmt == "json" else yaml.safe_load(r.out)
    assert (doc["file"], doc["valid"]) == (str(f), False)
    assert [p.split(":")[1:3] for p in doc["problems"]] == [["6", "5"], ["8", "7"], ["11", "5"]]
    # The data carries the problems; stderr says only that the file is invalid (as runbook validate).
    assert r.err == f"error: {f}: 3 problems\n"
    r = run_dr(capsys, "config", "validate", str(tmp_path / "nope.yaml"), "-o", fmt)
    assert r.code == 2
    doc = json.loads(r.out) if fmt == "json" else yaml.safe_load(r.out)
    assert doc == {
        "file": str(tmp_path / "nope.yaml"),
        "valid": False,
        "problems": [f"{tmp_path / 'nope.yaml'}: no such file"],
    }


def test_cli_validate_example(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_dr(capsys, "config", "validate", str(EXAMPLE))
    assert r.code == 0, r.err
    assert "valid" in r.out
    r = run_dr(capsys, "config", "validate", str(EXAMPLE), "-o", "json")
    assert r.json()["backupPolicies"] == ["shop-nightly", "platform-hourly"]
    assert (r.json()["valid"], r.json()["problems"]) == (True, [])


MERGED = """\
backupPolicies:
  - &base
    name: a
    schedule: "15 1 * * *"
    scope: &scope
      namespaces: [site]
      selector: app=web
    retention: &ret {keepDaily: 14, keepWeekly: 4}
  - <<: *base
    name: b
    scope:
      <<: *scope
      namespaces: [shop]
  - <<: [*base, {rpo: 1h}]
    name: c
    retention: {<<: *ret, keepDaily: 7}
"""


def test_a_problem_inside_an_alias_is_placed_where_its_value_is_written(tmp_path: Path) -> None:
    # An alias's value is built once (load_yaml); a problem in it, reached through the alias,
    # is at the line that holds the bad value, as for the anchor, not at the alias.
    f = tmp_path / "dr.yaml"
    f.write_text(
        "backupPolicies:\n"
        "  - name: a\n    schedule: '@daily'\n    retention: &ret\n      keepDaily: 14\n      keepWeekly: -1\n"
        "  - name: b\n    schedule: '@daily'\n    retention: *ret\n"
    )
    with pytest.raises(InvalidInput) as e:
        load_config_file(f)
    assert e.value.details == [
        f"{f}:6:7: backupPolicies[0].retention.keepWeekly: must be at least 0",
        f"{f}:6:7: backupPolicies[1].retention.keepWeekly: must be at least 0",
    ]
    # A merged alias overridden by a value written beside it: that value's own lines.
    f.write_text(
        "backupPolicies:\n"
        "  - &a\n    name: a\n    schedule: '@daily'\n    retention: {keepDaily: 14}\n"
        "  - <<: *a\n    name: b\n    retention:\n      keepWeekly: -1\n"
    )
    with pytest.raises(InvalidInput) as e:
        load_config_file(f)
    assert e.value.details == [f"{f}:9:7: backupPolicies[1].retention.keepWeekly: must be at least 0"]


def test_merge_keys_take_overrides_and_a_key_given_twice_is_still_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A merge key's point is the keys given beside it, which override the merged ones (YAML's
    # merge type, as yaml.safe_load reads it): those were refused as "duplicate key 'name'".
    f = tmp_path / "dr.yaml"
    f.write_text(MERGED)
    policies = load_config_file(f).backup_policies
    assert [(p.name, p.schedule, p.scope.namespaces, p.scope.selector) for p in policies] == [
        ("a", "15 1 * * *", ["site"], "app=web"),
        ("b", "15 1 * * *", ["shop"], "app=web"),
        ("c", "15 1 * * *", ["site"], "app=web"),
    ]
    assert (policies[2].retention.keep_daily, policies[2].retention.keep_weekly) == (7, 4)
    assert policies[2].rpo == timedelta(hours=1)
    r = run_dr(capsys, "config", "validate", str(f))
    assert r.code == 0, r.err
    # A key given twice beside the merge is the document's mistake, as without one.
    f.write_text(MERGED + "    name: d\n")
    r = run_dr(capsys, "config", "validate", str(f))
    assert r.code == 2 and f"{f}:17:5: duplicate key 'name'" in r.err, r.err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("repositories: [\n  {name: a, url: 'file:///x'\n", ":3:1: invalid YAML"),
        ("a: 1\na: 2\n", ":2:1: duplicate key 'a'"),
        ("- 1\n- 2\n", ":1:1: (document): expected a mapping"),
        (
            "repositories:\n  - name: r\n    url: s3:///nobucket\n",
            ":3:5: repositories[0].url: repository URL 's3:///nobucket' names no bucket",
        ),
        ("repositories:\n  - name: r\n    url: relative/path\n", "scheme"),
        ("repositories:\n  - name: r\n    url: s3://user:pw@bucket/p\n", "must not contain credentials"),
        ("repositories:\n  - name: r\n", ":2:5: repositories[0].url: required field is missing"),
        ("defaultRepository: x\n", ":1:1: defaultRepository: 'x' is not a repository name"),
        ("mover:\n  deadline: soon\n", ":2:3: mover.deadline: invalid duration 'soon'"),
        ("mover:\n  deadline: 1000000000d\n", ":2:3: mover.deadline: duration '1000000000d' is too long"),
        (
            "backupPolicies:\n  - {name: a, schedule: '@daily'}\n  - {name: a, schedule: '@hourly'}\n",
            ":3:6: backupPolicies[1].name: duplicate name 'a'",
        ),
        (
            "keyProviders:\n  - name: v\n    uri: vault://transit/keys/k\n    vault: {auth: {method: approle}}\n",
            "approle auth needs roleIdFile and secretIdFile",
        ),
        ("repositories: {name: r}\n", ":1:1: repositories: expected a list"),
        ("repositories:\n  - name: 7\n    url: file:///x\n", ":2:5: repositories[0].name: expected a string"),
        ("repositories:\n  - name: Bad_Name\n    url: file:///x\n", "'Bad_Name' is not a valid name"),
        ("repositories:\n  - name: " + "a" * 53 + "\n    url: file:///x\n", "is longer than 52 characters"),
        ("mover:\n  parallelism: 0\n", ":2:3: mover.parallelism: must be at least 1"),
        ("mover:\n  parallelism: 65\n", ":2:3: mover.parallelism: must be at most 64"),
        ("mover:\n  parallelism: true\n", ":2:3: mover.parallelism: expected an integer"),
        (
            "backupPolicies:\n  - name: a\n    schedule: '@daily'\n    retention: {keepLast: true}\n",
            ":4:17: backupPolicies[0].retention.keepLast: expected an integer",
        ),
        (
            "mover:\n  resources: {limits: {memory: [1]}}\n",
            "mover.resources.limits.memory: expected a string",
        ),
        ("kind: Other\n", ":1:1: kind: expected one of 'Config'"),
        (
            "backupPolicies:\n  - name: a\n    schedule: '@daily'\n    hooks: [{pre: [{command: []}]}]\n",
            "backupPolicies[0].hooks[0].pre[0].command: needs at least 1 item(s)",
        ),
        (
            "backupPolicies:\n  - name: a\n    schedule: '@daily'\n    retention: {keepDaily: -1}\n",
            ":4:17: backupPolicies[0].retention.keepDaily: must be at least 0",
        ),
        (
            "backupPolicies:\n  - name: a\n    schedule: '@daily'\n    retention: {keepWithin: 7days}\n",
            ":4:17: backupPolicies[0].retention.keepWithin: invalid duration '7days'",
        ),
        (
            "backupPolicies:\n  - name: a\n    schedule: '@daily'\n    retention: {keepWithin: 0s}\n",
            ":4:17: backupPolicies[0].retention.keepWithin: duration '0s' must be longer than 0",
        ),
        (
            "repositories:\n  - name: r\n    url: file:///x\n    s3: {region: x}\n",
            ":2:5: repositories[0]: s3 options given for a file:// repository",
        ),
        (
            "repositories:\n  - name: r\n    url: s3://bkt/p\n    s3: {objectLock: {days: 0}}\n",
            "repositories[0].s3.objectLock.days: must be at least 1",
        ),
        (
            "keyProviders:\n  - name: k\n    uri: vault://t/k\n    vault: {auth: {method: ldap}}\n",
            "keyProviders[0].vault.auth.method: expected one of 'token', 'approle', 'kubernetes'",
        ),
        ("mover:\n  deadline: [1]\n", ":2:3: mover.deadline: expected a duration such as 90s"),
        # values the rendered manifests or the runs could not use
        ("mover:\n  deadline: 0s\n", ":2:3: mover.deadline: duration '0s' must be longer than 0"),
        ("mover:\n  namespace: Dr System\n", "mover.namespace: 'Dr System' is not a valid name"),
        # '$' also matches before a last newline: re.match let a name ending in one through.
        ('mover:\n  namespace: "dr-system\\n"\n', "mover.namespace: 'dr-system\\n' is not a valid name"),
        (
            "mover:\n  resources: {requests: {cpu: lots}}\n",
            "mover.resources.requests: cpu: invalid quantity 'lots'",
        ),
        (
            "backupPolicies:\n  - name: a\n    schedule: '@daily'\n    timeZone: Europe/Berln\n",
            ":4:5: backupPolicies[0].timeZone: unknown time zone 'Europe/Berln'",
        ),
        # Files of the local tz database that are no IANA zone names: the API server's and the
        # CronJob controller's Go tzdata have none of them ('localtime' is this machine's zone).
        *(
            (
                f"backupPolicies:\n  - name: a\n    schedule: '@daily'\n    timeZone: {tz}\n",
                f":4:5: backupPolicies[0].timeZone: unknown time zone '{tz}'",
            )
            for tz in ("localtime", "posixrules", "right/UTC", "posix/Europe/Berlin")
        ),
        # Passed on to each mover Job's --tag, which would refuse it there (dr.tags).
        (
            "backupPolicies:\n  - name: a\n    schedule: '@daily'\n    tags: {'bad key!': v}\n",
            ":4:5: backupPolicies[0].tags: key 'bad key!' is not a label key",
        ),
        (
            "backupPolicies:\n  - name: a\n    schedule: '@daily'\n    tags: {team: ''}\n",
            ":4:5: backupPolicies[0].tags: key 'team': empty value",
        ),
        (
            "backupPolicies:\n  - name: a\n    schedule: '@daily'\n    rpo: 0s\n",
            "backupPolicies[0].rpo: duration '0s' must be longer than 0",
        ),
        (
            "backupPolicies:\n  - name: a\n    schedule: '@daily'\n    volumes: {snapshotTimeout: 0s}\n",
            "backupPolicies[0].volumes.snapshotTimeout: duration '0s' must be longer than 0",
        ),
        (
            "backupPolicies:\n  - name: a\n    schedule: '@daily'\n    hooks: [{pre: [{command: [x], timeout: 0s}]}]\n",
            "backupPolicies[0].hooks[0].pre[0].timeout: duration '0s' must be longer than 0",
        ),
        ("repositories:\n  - name: r\n    url: file://rel/x\n", "needs an absolute path (file:///abs/path)"),
        ("repositories:\n  - name: r\n    url: file:rel\n", "needs an absolute path (file:///abs/path)"),
        (
            "keyProviders:\n  - name: k\n    uri: local://host/k.key\n",
            "keyProviders[0].uri: key provider URL 'local://host/k.key' needs an absolute path",
        ),
        ("mover:\n  resources: {limits: [1]}\n", ":2:15: mover.resources.limits: expected a mapping"),
        ("mover:\n  tmpSizeLimit: lots\n", ":2:3: mover.tmpSizeLimit: invalid quantity 'lots' (examples:"),
        ("mover:\n  tmpSizeLimit: 0Gi\n", ":2:3: mover.tmpSizeLimit: quantity '0Gi' must be more than 0"),
        ("mover:\n  tmpSizeLimit: -4Gi\n", ":2:3: mover.tmpSizeLimit: quantity '-4Gi' must be more than 0"),
        (
            "repositories:\n  - name: r\n    url: s3://bkt/p\n    gcs: {endpoint: 'http://x'}\n",
            ":2:5: repositories[0]: gcs options given for a s3:// repository",
        ),
        (
            "keyProviders:\n  - name: v\n    uri: vault://t/k\n    vault: {auth: {method: kubernetes}}\n",
            "kubernetes auth needs role",
        ),
        (
            "keyProviders:\n  - name: k\n    uri: awskms://alias/k\n    vault: {}\n",
            ":2:5: keyProviders[0]: vault options given for a awskms:// key provider",
        ),
        (
            "repositories:\n  - name: r\n    url: file:///x\n    keys: [nokey]\n",
            ":4:12: repositories[0].keys[0]: key provider 'nokey' is not defined",
        ),
        (
            "backupPolicies:\n  - {name: a, schedule: '@daily', repository: nope}\n",
            "backupPolicies[0].repository: repository 'nope' is not defined",
        ),
        (
            "drillPolicies:\n  - {name: d, runbook: r.yaml, schedule: '@monthly', repository: nope,"
            " backupPolicy: gone}\n",
            "drillPolicies[0].repository: repository 'nope' is not defined",
        ),
        (
            "drillPolicies:\n  - {name: d, runbook: r.yaml, schedule: '@monthly', backupPolicy: gone}\n",
            "drillPolicies[0].backupPolicy: backup policy 'gone' is not defined",
        ),
    ],
)
def test_problems_name_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(InvalidInput) as e:
        load_config_file(f)
    everything = "\n".join([e.value.message, *e.value.details])
    assert expected in everything, everything


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://ab/x", "invalid bucket name 'ab': S3 bucket names are 3-63"),
        (
            "s3://Bad_Bucket!/x?region=topsecret",
            "'s3://Bad_Bucket!/x?region=***': invalid bucket name 'Bad_Bucket!'",
        ),
        ("gs://ab/x", "invalid bucket name 'ab': GCS bucket names are 3-63 characters long"),
        ("gs://My_Bucket/x", "invalid bucket name 'My_Bucket': GCS bucket names are lower case"),
    ],
)
def test_cli_validate_checks_bucket_names_as_the_stores_do(tmp_path: Path, url: str, expected: str) -> None:
    # Found by `dr config validate`, with its line, not only when a command opens the store;
    # the message is the store's own (dr.urls.bucket_problem). No store is opened: no network.
    f = tmp_path / "dr.yaml"
    f.write_text(f"repositories:\n  - name: r\n    url: '{url}'\n")
    r = run_dr_process("config", "validate", str(f))
    assert r.code == 2, r.err
    assert "Traceback" not in r.err and "topsecret" not in r.err
    assert f"{f}:3:5: repositories[0].url: repository URL " in r.err and expected in r.err, r.err


def test_validate_accepts_the_bucket_names_the_stores_accept(tmp_path: Path) -> None:
    # An older us-east-1 bucket may hold capitals and '_' (the s3 store accepts them, and so does the config).
    f = tmp_path / "dr.yaml"
    f.write_text(
        "repositories:\n  - {name: a, url: 's3://My_Bucket/x'}\n  - {name: b, url: 'gs://my-bkt.example/x'}\n"
    )
    assert [r.url for r in load_config_file(f).repositories] == ["s3://My_Bucket/x", "gs://my-bkt.example/x"]


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_bytes(b"repositories: []\n# caf\xe9\n")
    # Where the byte is, as a line and column, not as Python's codec says it ("position 20-21").
    with pytest.raises(InvalidInput) as e:
        load_config_file(f)
    assert e.value.message == f"{f}:2:6: not UTF-8 text (byte 0xe9)"
    # The column counts characters: the line's "é" (two bytes in UTF-8) is one.
    f.write_bytes(b"a: 1\nrepositories: [caf\xc3\xa9, \xff]\n")
    with pytest.raises(InvalidInput) as e:
        load_config_file(f)
    assert e.value.message == f"{f}:2:22: not UTF-8 text (byte 0xff)"
    # A file that cannot be read: its reason, not Python's "[Errno 21] Is a directory: 'path'".
    with pytest.raises(InvalidInput) as e:
        load_config_file(tmp_path)
    assert e.value.message == f"{tmp_path}: cannot read: Is a directory"


def test_missing_file_is_invalid_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = run_dr(capsys, "config", "validate", str(tmp_path / "nope.yaml"))
    assert r.code == 2
    assert "nope.yaml: no such file" in r.err


def test_embedded_defaults_use_xdg_dirs(isolated_home: Path) -> None:
    loaded = load_config(None)
    assert loaded.source == "built-in defaults"
    repo = loaded.config.repository()
    assert repo is not None and repo.url == f"file://{isolated_home}/data/dr/repo"
    assert loaded.config.key_providers[0].uri == f"local://{isolated_home}/config/dr/repo.key"
    assert default_config().repository() is not None


def test_config_resolution_order(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated_home / "dr.yaml").write_text("repositories: [{name: here, url: 'file:///here'}]\n")
    env = isolated_home / "env.yaml"
    env.write_text("repositories: [{name: env, url: 'file:///env'}]\n")
    assert load_config(None).config.repositories[0].name == "here"
    monkeypatch.setenv("DR_CONFIG", str(env))
    assert load_config(None).config.repositories[0].name == "env"
    explicit = isolated_home / "x.yaml"
    explicit.write_text("repositories: [{name: explicit, url: 'file:///x'}]\n")
    assert load_config(str(explicit)).config.repositories[0].name == "explicit"


def test_schemes_match_registries() -> None:
    assert set(cfgmod.REPOSITORY_SCHEMES) == {"file", "s3", "gs"}
    assert set(cfgmod.KEY_PROVIDER_SCHEMES) == {"local", "vault", "awskms", "gcpkms"}


def test_config_show_output_loads_back_as_the_same_config(tmp_path: Path) -> None:
    # What `dr config show` prints (camelCase, no nulls, durations as 90s/6h) is a valid dr.yaml.
    import yaml

    original = load_config_file(EXAMPLE)
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(cfgmod.to_doc(original)))
    assert load_config_file(again) == original
    assert cfgmod.to_doc(original)["mover"]["deadline"] == "6h"


def test_models_built_in_code_convert_like_documents() -> None:
    # deadline="1s" in code is a timedelta, as in a document; true/false scope flags are text.
    assert cfgmod.MoverOptions(deadline="1s").deadline == timedelta(seconds=1)  # type: ignore[arg-type]
    assert cfgmod.Scope(include_cluster_resources=True).include_cluster_resources == "true"  # type: ignore[arg-type]
    lm = cfgmod.LineMap("policy")
    assert (
        cfgmod.validate(cfgmod.Scope, {"includeClusterResources": False}, lm).include_cluster_resources
        == "false"
    )
    with pytest.raises(InvalidInput) as e:
        cfgmod.validate(cfgmod.BackupPolicy, {"name": "a", "schedule": "nope", "bogus": 1}, lm)
    assert e.value.message == "policy: 2 problems"
    assert "policy:1:1: bogus: unknown field" in e.value.details
    assert any(d.startswith("policy:1:1: schedule: invalid cron expression 'nope'") for d in e.value.details)


@given(st.integers(min_value=0, max_value=10**8), st.integers(min_value=0, max_value=999))
def test_durations_print_as_they_parse(seconds: int, millis: int) -> None:
    from dr.cron import parse_duration

    for d in (timedelta(seconds=seconds), timedelta(seconds=seconds, milliseconds=millis)):
        assert parse_duration(cfgmod.duration_text(d)) == d


@pytest.mark.parametrize(
    "url",
    ["ftp://user:topsecret@host/x", "file://u:topsecret@/rel", "s3://u:topsecret@", "local://:topsecret@h/k"],
)
def test_a_url_with_credentials_is_never_quoted(tmp_path: Path, url: str) -> None:
    # Whatever else is wrong with it, the error says only that credentials do not belong there.
    f = tmp_path / "c.yaml"
    f.write_text(
        f"repositories:\n  - name: r\n    url: '{url}'\nkeyProviders:\n  - name: k\n    uri: '{url}'\n"
    )
    with pytest.raises(InvalidInput) as e:
        load_config_file(f)
    assert len(e.value.details) == 2
    assert all(d.endswith("URL must not contain credentials") for d in e.value.details), e.value.details
    assert "topsecret" not in "\n".join([e.value.message, *e.value.details])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://host/x?token=topsecret", "unsupported repository URL 'ftp://host/x?token=***'"),
        ("file://h/x?password=topsecret", "repository URL 'file://h/x?password=***' needs an absolute path"),
        ("s3://[bkt/p?region=topsecret", "repository URL 's3://[bkt/p?region=***' is malformed"),
    ],
)
def test_a_refused_url_is_quoted_without_its_query_values(tmp_path: Path, url: str, expected: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(f"repositories:\n  - name: r\n    url: '{url}'\n")
    with pytest.raises(InvalidInput) as e:
        load_config_file(f)
    assert any(expected in d for d in e.value.details), e.value.details
    assert "topsecret" not in "\n".join([e.value.message, *e.value.details])


def test_the_repository_of_an_apps_drills(tmp_path: Path) -> None:
    # One rule for `dr drill run`, `dr status`, `dr report drills` and `dr runbook render`:
    # the drill policy's repository, else its backup policy's, else the runbook's backup policy's.
    path = tmp_path / "dr.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "repositories": [{"name": n, "url": f"file://{tmp_path / n}"} for n in ("main", "a", "b", "c")],
                "backupPolicies": [
                    {"name": "in-a", "schedule": "0 1 * * *", "repository": "a"},
                    {"name": "in-b", "schedule": "0 1 * * *", "repository": "b"},
                    {"name": "default", "schedule": "0 1 * * *"},
                ],
                "drillPolicies": [
                    {"name": "own", "runbook": "x.yaml", "schedule": "0 4 1 * *", "repository": "c",
                     "backupPolicy": "in-a"},
                    {"name": "by-policy", "runbook": "x.yaml", "schedule": "0 4 1 * *", "backupPolicy": "in-a"},
                    {"name": "bare", "runbook": "x.yaml", "schedule": "0 4 1 * *"},
                ],
            }
        )
    )  # fmt: skip
    cfg = load_config_file(path)
    own, by_policy, bare = cfg.drill_policies
    assert cfg.backup_repository("in-b") == "b"
    assert cfg.backup_repository("default") is None and cfg.backup_repository("nope") is None
    assert cfg.backup_repository(None) is None
    assert cfg.drill_repository(own, "in-b") == "c"
    assert cfg.drill_repository(by_policy, "in-b") == "a"
    assert cfg.drill_repository(bare, "in-b") == "b" and cfg.drill_repository(None, "in-b") == "b"
    assert cfg.drill_repository(bare) is None and cfg.drill_repository(None, "default") is None


def _policies(tmp_path: Path, *schedules: tuple[str, str | None]) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["backupPolicies"] = [
        {"name": f"p{i}", "schedule": s, **({"timeZone": z} if z else {})}
        for i, (s, z) in enumerate(schedules)
    ]
    doc.pop("drillPolicies")
    f = tmp_path / "dr.yaml"
    f.write_text(yaml.safe_dump(doc))
    return f


def test_cli_validate_warns_of_a_schedule_the_clocks_skip_or_repeat(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A nightly backup at 02:30 Europe/Berlin is valid for Kubernetes and never runs on the
    # spring-forward day (and twice on the fall-back day); dr said nothing.
    monkeypatch.setenv("DR_LOG_FORMAT", "text")
    f = _policies(
        tmp_path, ("30 2 * * *", "Europe/Berlin"), ("30 3 * * *", "Europe/Berlin"), ("30 2 * * *", None)
    )
    r = run_dr(capsys, "config", "validate", str(f))
    assert r.code == 0, r.err
    warnings = r.err.splitlines()
    assert len(warnings) == 2, r.err
    assert warnings[0].startswith(
        "backup policy p0: schedule '30 2 * * *' (Europe/Berlin) skips its run at 02:30 on the day the clocks "
        "go forward from 02:00 to 03:00 (next "
    )
    assert "the CronJob controller does not run it" in warnings[0]
    assert warnings[1].startswith(
        "backup policy p0: schedule '30 2 * * *' (Europe/Berlin) runs twice at 02:30 on the day the clocks "
        "go back from 03:00 to 02:00 (next "
    )
    r = run_dr(capsys, "config", "validate", str(f), "-o", "json")
    assert r.code == 0
    assert r.json()["valid"] is True
    assert r.json()["warnings"] == warnings
    # UTC (and a time the change does not touch) says nothing.
    r = run_dr(
        capsys,
        "config",
        "validate",
        str(_policies(tmp_path, ("30 2 * * *", "Etc/UTC"), ("30 3 * * *", "Europe/Berlin"))),
    )
    assert (r.code, r.err) == (0, "")
