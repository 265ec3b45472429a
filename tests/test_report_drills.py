"""The monthly drill report: building it, JSON/Markdown/HTML, the CLI, and the DrillReport format."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dr.config import Config, LineMap, validate
from dr.drill.model import (
    Cleanup,
    DrillReport,
    Phases,
    ReportObjectives,
    RestoreProblems,
    StepResult,
    human_duration,
    outcome_of,
)
from dr.errors import InvalidInput
from dr.printable import BIDI_CONTROLS
from dr.report.drills import (
    Month,
    MonthlyReport,
    apps_with_backup_policy,
    build_monthly_report,
    read_report_dir,
    render_json,
    render_markdown,
)
from dr.report.html import render_html
from tests.helpers import run_dr

NOV = Month(2026, 11)
GENERATED = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def drill(
    app: str,
    started: datetime,
    outcome: str = "passed",
    *,
    phases: tuple[float, float, float, float] = (60, 300, 120, 60),
    backup_age: timedelta = timedelta(hours=5),
    rto: timedelta = timedelta(minutes=30),
    rpo: timedelta = timedelta(hours=24),
    error: str | None = None,
    suffix: str = "",
) -> DrillReport:
    steps = [
        StepResult(
            name="objects",
            type="resources",
            passed=True,
            message="in ns: 1 deployments.apps",
            duration=timedelta(seconds=1),
        ),
        StepResult(
            name="health",
            type="http",
            passed=outcome == "passed",
            message="GET http://web:8080/healthz: status 200"
            if outcome == "passed"
            else 'GET http://web:8080/healthz: checks.database is "down", expected "ok"',
            duration=timedelta(seconds=2.5),
        ),
    ]
    return DrillReport(
        id=f"{app}-{started:%Y%m%d%H%M}{suffix}",
        app=app,
        runbook=f"runbooks/{app}.yaml",
        backup_id=None if error else f"b{started:%m%d}",
        backup_time=None if error else started - backup_age,
        started=started,
        finished=started + timedelta(seconds=sum(phases)),
        namespace=f"drill-{app}-x1",
        phases=Phases()
        if error
        else Phases(
            restore_resources=timedelta(seconds=phases[0]),
            restore_data=timedelta(seconds=phases[1]),
            time_to_ready=timedelta(seconds=phases[2]),
            verification=timedelta(seconds=phases[3]),
        ),
        objectives=ReportObjectives(rpo=rpo, rto=rto),
        steps=[] if error else steps,
        outcome=outcome,  # type: ignore[arg-type]
        error=error,
        cleanup=Cleanup(status="deleted"),
    )


def history() -> list[DrillReport]:
    """A year of drills for three apps, with this month's failures and errors."""
    out: list[DrillReport] = []
    for i in range(12):
        m = NOV.shift(-i)
        t = datetime(m.year, m.month, 1, 4, 0, tzinfo=UTC)
        out.append(
            drill(
                "webapp-postgres",
                t,
                "failed" if i in (3, 7) else "passed",
                phases=(60, 300 + 20 * i, 120, 60),
            )
        )
        if i % 2 == 0:
            out.append(
                drill(
                    "redis-cache", t + timedelta(hours=1), rto=timedelta(minutes=15), phases=(20, 40, 30, 10)
                )
            )
    # November: webapp passed after an earlier failure; redis missed its RTO; static-site could not run.
    out.append(drill("webapp-postgres", datetime(2026, 11, 15, 4, tzinfo=UTC), "failed", suffix="b"))
    out.append(
        drill(
            "redis-cache",
            datetime(2026, 11, 8, 4, tzinfo=UTC),
            rto=timedelta(minutes=15),
            phases=(60, 600, 300, 60),
        )
    )
    out.append(
        drill(
            "static-site",
            datetime(2026, 11, 2, 5, tzinfo=UTC),
            "error",
            error="backup not found: no backup of namespace site",
        )
    )
    out.append(drill("webapp-postgres", datetime(2026, 12, 1, 4, tzinfo=UTC)))  # next month: ignored
    return out


def report() -> MonthlyReport:
    return build_monthly_report(
        history(), NOV, ["webapp-postgres", "redis-cache", "billing"], generated=GENERATED
    )


# --------------------------------------------------------------------------- months


def test_months() -> None:
    assert Month.parse("2026-11") == NOV and str(NOV) == "2026-11"
    assert NOV.shift(2) == Month(2027, 1) and NOV.shift(-11) == Month(2025, 12)
    assert NOV.last(3) == [Month(2026, 9), Month(2026, 10), NOV]
    assert Month.of(datetime(2026, 11, 30, 23, 30, tzinfo=UTC)) == NOV
    assert NOV.title == "November 2026"
    for bad, why in (
        ("2026-13", "month 13 out of range"),
        ("26-11", "is not a month"),
        ("2026/11", "is not a month"),
        ("0000-05", "year 0000 out of range 1970-9999"),
        ("1969-12", "year 1969 out of range 1970-9999"),
    ):
        with pytest.raises(ValueError, match=why):
            Month.parse(bad)
    assert Month.parse("1970-01").last(12)[0] == Month(1969, 2)  # the trend may reach back before it


def test_a_month_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Year 0 was a ValueError from datetime (exit 1) once the report was being built.
    r = run_dr(capsys, "report", "drills", "--month", "0000-05", "--from-dir", str(tmp_path))
    assert (r.code, r.out) == (2, "")
    assert r.err.startswith("error: Invalid value for '--month': '0000-05': year 0000 out of range"), r.err


# --------------------------------------------------------------------------- building


def test_monthly_report_verdicts() -> None:
    r = report()
    by = {a.app: a for a in r.apps}
    assert [a.app for a in r.apps] == ["billing", "redis-cache", "static-site", "webapp-postgres"]
    # The latest drill of the month decides: webapp's second drill failed.
    assert by["webapp-postgres"].status == "failed"
    assert [d.outcome for d in by["webapp-postgres"].drills] == ["failed", "passed"]  # newest first
    assert by["redis-cache"].status == "passed" and by["redis-cache"].latest is not None
    assert (
        by["redis-cache"].latest.rto_measured == timedelta(minutes=17)
        and by["redis-cache"].latest.rto_met is False
    )
    assert by["static-site"].status == "error" and not by["static-site"].has_backup_policy
    assert by["billing"].status == "missing" and by["billing"].drills == [] and r.missing == ["billing"]
    assert r.totals.model_dump() == {
        "apps": 4,
        "passed": 1,
        "failed": 1,
        "error": 1,
        "missing": 1,
        "drills": 5,
    }
    latest = by["webapp-postgres"].latest
    assert latest is not None
    assert latest.rpo_measured == timedelta(hours=5) and latest.rpo_met is True
    assert [s.passed for s in latest.steps] == [True, False]


def test_attention_worst_first() -> None:
    lines = [(a.app, why) for a, why in report().attention()]
    assert lines == [
        ("static-site", "drill could not run: backup not found: no backup of namespace site"),
        (
            "webapp-postgres",
            'step health: GET http://web:8080/healthz: checks.database is "down", expected "ok"',
        ),
        ("billing", "no drill this month, although it has a backup policy"),
        ("redis-cache", "passed, but missed RTO 17m > 15m"),
    ]


def test_trend_over_twelve_months() -> None:
    r = report()
    assert [p.month for p in r.trend] == [str(m) for m in NOV.last(12)]
    nov = r.trend[-1]
    assert (nov.drills, nov.passed) == (5, 3)  # webapp 1 of 2, redis 2 of 2, static-site's error
    oct_ = r.trend[-2]
    assert (oct_.drills, oct_.passed, oct_.pass_rate) == (1, 1, 1.0)
    aug = r.trend[-4]
    assert (aug.drills, aug.passed, aug.pass_rate) == (1, 0, 0.0)
    web = next(a for a in r.apps if a.app == "webapp-postgres")
    assert web.trend[-2].rto == timedelta(seconds=60 + 320 + 120 + 60)  # October's drill
    assert web.trend[-1].rto == timedelta(seconds=540)  # November: the latest drill's RTO
    assert next(a for a in r.apps if a.app == "redis-cache").trend[-2].drills == 0


def test_november_pass_rate_and_median_rto() -> None:
    nov = report().trend[-1]
    assert nov.pass_rate == pytest.approx(3 / 5)
    assert nov.rto == timedelta(seconds=540)  # median of 540, 540, 100, 1020 (the error measured none)


def test_empty_month() -> None:
    r = build_monthly_report([], NOV, [], generated=GENERATED)
    assert r.apps == [] and r.totals.apps == 0 and all(p.drills == 0 for p in r.trend)
    assert "Nothing: every app" in render_markdown(r)
    assert "No apps with drills or backup policies." in render_html(r)


# --------------------------------------------------------------------------- formats


def test_json_round_trip() -> None:
    r = report()
    text = render_json(r)
    doc = json.loads(text)
    assert doc["kind"] == "DrillMonthlyReport" and doc["month"] == "2026-11"
    assert doc["apps"][1]["latest"]["rtoMeasured"] == 1020.0  # seconds
    assert MonthlyReport.model_validate_json(text) == r


def test_markdown() -> None:
    md = render_markdown(report())
    assert md.startswith("# Restore drills — November 2026\n")
    assert "4 apps: 1 passed, 1 failed, 1 could not run, 1 without a drill; 5 drills this month." in md
    assert "| webapp-postgres | FAILED | 2 (1) | 9m / 30m ok | 5h / 24h ok | 2026-11-15 04:00 UTC |" in md
    assert "| redis-cache | passed | 2 (2) | 17m / 15m MISSED | 5h / 24h ok | 2026-11-08 04:00 UTC |" in md
    assert (
        "| billing | no drill | 0 (0) | - / 30m |" not in md
    )  # billing has never been drilled: no objective known
    assert "| billing | no drill | 0 (0) | - | - | - |" in md
    assert "The drill could not run: backup not found: no backup of namespace site" in md
    assert "| health | http | FAILED | 2.5s |" in md
    assert "RTO 9m / 30m ok: restore resources 1m + restore data 5m + ready 2m + verification 1m." in md
    assert "| 2026-11 | 5 | 3 | 60% | 9m |" in md


def test_html_is_self_contained_and_escaped() -> None:
    reports = history()
    reports.append(drill("evil<script>", datetime(2026, 11, 3, tzinfo=UTC), "failed"))
    page = render_html(build_monthly_report(reports, NOV, ["billing"], generated=GENERATED))
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "evil&lt;script&gt;" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "no external assets"
    assert "<link" not in page and "@import" not in page
    assert page.count("<svg") >= 5 and "@media print" in page and "break-inside: avoid" in page


HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "a | b || c",
    "`code` and ``more``",
    "**bold** _em_ ~~gone~~ [link](http://evil.example) ![img](x.png) $x^2$",
    "# heading",
    "- not a list",
    "1. not a list",
    "> not a quote",
    "```",
    "    indented",
    "&lt;already escaped&gt; &amp; &#60;tag&#62;",
    "back\\slash\\ at the end\\",
    "two\nlines\r\nand <b>bold</b>",
    "closing #",
    "_em_ a_b_c x__y__z __init__ é_ü 1_2_",
    # Terminal escapes (clear, set the title, a C1 CSI) and a bidi override, e.g. in an API
    # server's message quoting a restored object's field: `dr report drills` prints to a terminal.
    "\x1b[2J\x1b]0;owned\x07 \x9b31m red \u202eevil",
]


def _hostile_report(text: str) -> MonthlyReport:
    d = drill("shop", datetime(2026, 11, 20, 4, tzinfo=UTC), "failed")
    steps = [s.model_copy(update={"name": text, "type": text, "message": text}) for s in d.steps]
    d = d.model_copy(update={"app": text, "id": text, "backup_id": text, "namespace": text, "steps": steps,
                             "warnings": [text], "restore": RestoreProblems(dump_errors=[text]),
                             "cleanup": Cleanup(status="failed", message=text)})  # fmt: skip
    return build_monthly_report([d], NOV, generated=GENERATED)


def _acts_on_a_terminal(c: str) -> bool:
    """A control character (a tab apart), a bidi control, a line or paragraph separator, a lone
    surrogate: what the Markdown must not hold as itself. Other characters Python does not call
    printable (a no-break space, a zero-width joiner, an unassigned code point) are text."""
    return c != "\t" and (unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in BIDI_CONTROLS)


def _printable(text: str) -> str:
    """``text`` with its control characters (a tab apart) as escapes (``\\x1b``)."""
    return "".join(repr(c)[1:-1] if _acts_on_a_terminal(c) else c for c in text)


def _visible(text: str) -> str:
    """What the report shows of ``text``: one line (a line break would end a table row), with
    control characters escaped (they would reach the terminal the report is printed to)."""
    return _printable(" ".join(text.splitlines()).strip())


def _inline_texts(md: str) -> dict[str, list[list[str]]]:
    """Parsed Markdown (CommonMark with GFM tables, as GitHub and most viewers have it): the plain
    text of each table cell (by the table's first header) and of each list item, where every part
    of it is text — markup anywhere in it (HTML, code, emphasis, a link) shows as ``<markup: …>``."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(md)
    out: dict[str, list[list[str]]] = {}
    table: list[list[str]] | None = None
    row: list[str] = []
    in_item = 0
    for t in tokens:
        if t.type == "table_open":
            table = []
        elif t.type == "tr_open":
            row = []
        elif t.type == "tr_close" and table is not None:
            table.append(row)
        elif t.type == "table_close" and table is not None:
            out[table[0][0]] = table[1:]
            table = None
        elif t.type == "list_item_open":
            in_item += 1
        elif t.type == "list_item_close":
            in_item -= 1
        elif t.type == "inline" and t.content.startswith("Latest drill "):
            out["code"] = [[k.content] for k in t.children or [] if k.type == "code_inline"]
        elif t.type == "inline":
            kids = t.children or []
            text = "".join(k.content if k.type == "text" else f"<markup: {k.type}>" for k in kids)
            if table is not None:
                row.append(text)
            elif in_item:
                out.setdefault("items", []).append([text])
        elif t.type.startswith("html") or t.type in (
            "fence",
            "code_block",
            "heading_open",
            "blockquote_open",
        ):
            out.setdefault("blocks", []).append([t.type, t.content])
    return out


def _assert_inert(text: str) -> None:
    md = render_markdown(_hostile_report(text))
    shown = _visible(text)
    parsed = _inline_texts(md)
    [app_row] = parsed["App"]
    assert app_row[0] == shown, md
    [step_row, _] = parsed["Step"]
    assert (step_row[0], step_row[1], step_row[4]) == (shown, shown, shown), md
    items = [i[0] for i in parsed["items"]]
    assert shown in items and _visible(f"dump: {text}") in items, md  # the warning, the restore problem
    # The drill's id, backup and namespace as code, as they are (one line).
    if _visible(text):
        assert parsed["code"] == [[_printable(" ".join(text.splitlines()))]] * 3, md
    assert not any(_acts_on_a_terminal(c) for c in md.replace("\n", "")), md
    # Only the report's own blocks: its headings (one naming the app, as text), no HTML, code, quote.
    assert {b[0] for b in parsed.get("blocks", [])} <= {"heading_open"}, md
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(md)
    assert "<script" not in html and "<img" not in html and "<b>" not in html and "<a " not in html


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_renders_text_from_drill_reports_inert(text: str) -> None:
    # Step names and messages, app, namespace and error text went into the Markdown as they were:
    # '<script>' became HTML, '|' split a table cell, '`' or '**' opened code or bold.
    _assert_inert(text)


def test_html_renders_text_from_drill_reports_inert() -> None:
    # The HTML page escaped all along; every field the Markdown test fills, to keep it so.
    for text in HOSTILE:
        page = render_html(_hostile_report(text))
        assert "<script" not in page and "<img" not in page and "<b>" not in page, text
        assert 'onerror="' not in page and 'href="http' not in page, text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
               | st.sampled_from(list("\\`*_[]()<>&|~#-+=!$.:;1 \n\t")), min_size=1))  # fmt: skip
def test_markdown_renders_any_text_inert(text: str) -> None:
    if not _visible(text):
        return
    _assert_inert(text)


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="headless Chromium not installed (apt-get install -y chromium)"
)
def test_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    import subprocess

    page = tmp_path / "drill-report.html"
    page.write_text(render_html(report()))
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "drill-report.png"
    shot.unlink(missing_ok=True)
    common = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    res = subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 2000)

    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Restore drills — November 2026" in dom.stdout
    for app in ("webapp-postgres", "redis-cache", "static-site", "billing"):
        assert f'id="app-{app}"' in dom.stdout
    assert dom.stdout.count("<svg") >= 5
    assert [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln] == []


# --------------------------------------------------------------------------- inputs


def test_read_report_dir(tmp_path: Path) -> None:
    for r in history()[:3]:
        (tmp_path / f"{r.id}.json").write_text(r.to_json())
    (tmp_path / "monthly.json").write_text(render_json(report()))  # another kind: skipped
    (tmp_path / "notes.md").write_text("# not json")
    got = read_report_dir(tmp_path)
    assert sorted(r.id for r in got) == sorted(r.id for r in history()[:3])


def test_a_drill_copied_twice_into_the_directory_counts_once(tmp_path: Path) -> None:
    # A drill's report in two files of the directory (downloaded twice, "r (1).json", or a
    # --report-dir gathered from two machines) counted twice: two drills, its verdict twice in the
    # pass rate. The repository's reports were counted once each, by id, all along.
    r = drill("shop", datetime(2026, 11, 5, 4, tzinfo=UTC), "failed")
    for name in (f"{r.id}.json", f"{r.id} (1).json"):
        (tmp_path / name).write_text(r.to_json())
    got = read_report_dir(tmp_path)
    assert [x.id for x in got] == [r.id]
    monthly = build_monthly_report(got, NOV, generated=GENERATED)
    assert monthly.totals.drills == 1 and monthly.trend[-1].drills == 1


def test_read_report_dir_problems(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text(json.dumps({"kind": "DrillReport", "id": "x"}))
    with pytest.raises(InvalidInput) as e:
        read_report_dir(tmp_path)
    assert e.value.message == f"{tmp_path}: 6 unreadable drill reports"  # 1 + 5 missing fields
    assert e.value.details[0].startswith(f"{tmp_path / 'a.json'}: not readable as JSON: ")
    assert f"{tmp_path / 'b.json'}: app: Field required" in e.value.details
    with pytest.raises(InvalidInput, match="not a directory"):
        read_report_dir(tmp_path / "nope")


def test_apps_with_backup_policy(tmp_path: Path) -> None:
    (tmp_path / "shop.yaml").write_text((Path("runbooks") / "webapp-postgres.yaml").resolve().read_text())
    cfg = validate(
        Config,
        {
            "backupPolicies": [
                {"name": "shop-nightly", "schedule": "0 1 * * *"},
                {"name": "billing", "schedule": "0 2 * * *"},
                {"name": "cache", "schedule": "0 * * * *"},
            ],
            "drillPolicies": [
                {
                    "name": "shop-drill",
                    "runbook": "shop.yaml",
                    "schedule": "0 4 1 * *",
                    "backupPolicy": "shop-nightly",
                },
                {
                    "name": "cache-drill",
                    "runbook": "missing.yaml",
                    "schedule": "0 4 1 * *",
                    "backupPolicy": "cache",
                },
            ],
        },
        LineMap("dr.yaml"),
    )
    assert apps_with_backup_policy(cfg, tmp_path) == ["billing", "cache-drill", "webapp-postgres"]


def test_apps_with_backup_policy_linked_by_the_runbook(tmp_path: Path) -> None:
    # The runbooks name their backup policy (spec.backupPolicy); the drill policies need not repeat it.
    for name in ("webapp-postgres", "redis-cache"):
        (tmp_path / f"{name}.yaml").write_text((Path("runbooks") / f"{name}.yaml").resolve().read_text())
    cfg = validate(
        Config,
        {
            "backupPolicies": [
                {"name": "shop-nightly", "schedule": "0 1 * * *"},
                {"name": "cache-hourly", "schedule": "0 * * * *"},
                {"name": "billing", "schedule": "0 2 * * *"},
            ],
            "drillPolicies": [
                {"name": "shop-drill", "runbook": "webapp-postgres.yaml", "schedule": "0 4 1 * *"},
                {"name": "cache-drill", "runbook": "redis-cache.yaml", "schedule": "0 5 1 * *"},
            ],
        },
        LineMap("dr.yaml"),
    )
    # Not "shop-nightly" and "cache-hourly" as never drilled while their apps' drills go unexpected.
    assert apps_with_backup_policy(cfg, tmp_path) == ["billing", "redis-cache", "webapp-postgres"]


# --------------------------------------------------------------------------- CLI


def write_reports(d: Path) -> None:
    d.mkdir(exist_ok=True)
    for r in history():
        (d / f"{r.id}.json").write_text(r.to_json())


def test_cli_formats(capsys: pytest.CaptureFixture[str], isolated_home: Path) -> None:
    write_reports(isolated_home / "reports")
    r = run_dr(capsys, "report", "drills", "--month", "2026-11", "--from-dir", "reports")
    assert r.code == 0, r.err
    assert r.out.startswith("# Restore drills — November 2026")
    r = run_dr(capsys, "report", "drills", "--month", "2026-11", "--from-dir", "reports", "--format", "json")
    assert r.code == 0 and r.json()["totals"]["drills"] == 5
    r = run_dr(
        capsys,
        "report",
        "drills",
        "--month",
        "2026-11",
        "--from-dir",
        "reports",
        "--format",
        "html",
        "--out",
        "r.html",
    )
    assert r.code == 0 and r.out == ""
    assert (isolated_home / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_cli_takes_o_like_every_command_that_prints_data(
    capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    # `-o json` is what every other command takes; here it was "No such option '-o'" (exit 2).
    write_reports(isolated_home / "reports")
    r = run_dr(capsys, "report", "drills", "--month", "2026-11", "--from-dir", "reports", "-o", "json")
    assert r.code == 0 and r.json()["totals"]["drills"] == 5
    r = run_dr(capsys, "report", "drills", "--help")
    assert "-o, --format [html|md|json]" in r.out and "Output format." in r.out


def test_cli_uses_the_configs_backup_policies(
    capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    write_reports(isolated_home / "reports")
    (isolated_home / "dr.yaml").write_text("backupPolicies:\n  - name: ledger\n    schedule: '0 1 * * *'\n")
    r = run_dr(capsys, "report", "drills", "--month", "2026-11", "--from-dir", "reports", "--format", "json")
    assert r.code == 0, r.err
    assert r.json()["missing"] == ["ledger"]


def test_cli_reads_the_configs_runbooks_relative_to_the_config_like_deploy_and_status(
    capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    # The config in etc/ names runbooks/shop.yaml: the one beside the config is deployed (and what
    # dr status reads); a runbooks/shop.yaml in the working directory is some other checkout.
    runbook = (Path(__file__).parent.parent / "runbooks" / "webapp-postgres.yaml").read_text()
    (isolated_home / "etc" / "runbooks").mkdir(parents=True)
    (isolated_home / "etc" / "runbooks" / "shop.yaml").write_text(runbook)
    (isolated_home / "runbooks").mkdir()
    (isolated_home / "runbooks" / "shop.yaml").write_text(
        runbook.replace("  name: webapp-postgres", "  name: shop-old", 1)
    )
    (isolated_home / "etc" / "dr.yaml").write_text(
        "backupPolicies:\n  - name: shop-nightly\n    schedule: '0 1 * * *'\n"
        "drillPolicies:\n  - name: shop-drill\n    runbook: runbooks/shop.yaml\n"
        "    schedule: '0 4 1 * *'\n    backupPolicy: shop-nightly\n"
    )
    write_reports(isolated_home / "reports")
    r = run_dr(capsys, "--config", "etc/dr.yaml", "report", "drills", "--month", "2026-11", "--from-dir",
               "reports", "--format", "json")  # fmt: skip
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["missing"] == []
    assert {a["app"]: a["hasBackupPolicy"] for a in doc["apps"]}["webapp-postgres"] is True


def test_cli_errors(capsys: pytest.CaptureFixture[str], isolated_home: Path) -> None:
    r = run_dr(capsys, "report", "drills", "--month", "2026-13", "--from-dir", ".")
    assert r.code == 2 and "'2026-13': month 13 out of range 01-12" in r.err
    r = run_dr(capsys, "report", "drills", "--from-dir", "nope")
    assert r.code == 2 and "nope: not a directory" in r.err
    (isolated_home / "bad").mkdir()
    (isolated_home / "bad" / "x.json").write_text("[1,")
    r = run_dr(capsys, "report", "drills", "--from-dir", "bad")
    assert r.code == 2 and "bad/x.json: not readable as JSON" in r.err
    r = run_dr(capsys, "report", "drills")  # from the repository, and there is none yet
    assert r.code == 1 and "no repository here" in r.err and "dr repo init" in r.err
    r = run_dr(capsys, "report", "drills", "--from-dir", ".", "--out", "no/such/dir/r.md")
    assert r.code == 2 and "no/such/dir/r.md: cannot write: No such file or directory" in r.err


def test_a_damaged_report_in_the_repository_is_named_and_the_others_still_count(
    capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    from tests.cli_support import write_config
    from tests.test_cli_status import _open

    config = str(write_config(isolated_home))
    assert run_dr(capsys, "--config", config, "repo", "init").code == 0
    good = drill("webapp-postgres", datetime(2026, 11, 3, 4, tzinfo=UTC))
    _open(isolated_home).save_object("reports", good.model_dump(mode="json", by_alias=True))
    (isolated_home / "repo" / "reports" / ("ab" * 32)).write_bytes(b"\x00a truncated upload")

    r = run_dr(capsys, "--config", config, "report", "drills", "--month", "2026-11", "--format", "json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["totals"]["drills"] == 1 and doc["apps"][0]["latest"]["id"] == good.id
    (warning,) = doc["warnings"]
    assert warning.startswith(f"drill report {'ab' * 8} cannot be read and is left out: reports/{'ab' * 32}")
    assert f"warning: {warning}" in r.err
    # --quiet: "only errors and requested data"; the report itself still says it.
    r = run_dr(capsys, "--config", config, "--quiet", "report", "drills", "--month", "2026-11", "-o", "json")
    assert (r.code, r.err, r.json()["warnings"]) == (0, "", [warning])
    # The readers of the page learn it too: the month may lack a drill.
    r = run_dr(capsys, "--config", config, "report", "drills", "--month", "2026-11")
    assert r.code == 0 and f"- warning: drill report {'ab' * 8} cannot be read" in r.out
    assert "Nothing: every app" not in r.out
    r = run_dr(capsys, "--config", config, "report", "drills", "--month", "2026-11", "--format", "html")
    assert r.code == 0 and f"warning:</span> drill report {'ab' * 8} cannot be read" in r.out


def test_reports_of_a_drill_policy_with_its_own_repository_count(
    capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    import yaml

    from dr.crypto.providers.local import LocalKeyProvider
    from dr.repo.repository import Repository
    from dr.storage.registry import open_store

    runbook = (Path(__file__).parent.parent / "runbooks" / "webapp-postgres.yaml").read_text()
    (isolated_home / "shop.yaml").write_text(runbook)
    key = isolated_home / "repo.key"
    (isolated_home / "dr.yaml").write_text(yaml.safe_dump({
        "repositories": [{"name": "main", "url": f"file://{isolated_home}/repo", "keys": ["local"]},
                         {"name": "drills", "url": f"file://{isolated_home}/drills", "keys": ["local"]}],
        "keyProviders": [{"name": "local", "uri": f"local://{key}"}],
        "backupPolicies": [{"name": "shop-nightly", "schedule": "0 1 * * *"}],
        # dr drill run --policy shop-drill saves its reports into the "drills" repository
        "drillPolicies": [{"name": "shop-drill", "runbook": "shop.yaml", "schedule": "0 4 1 * *",
                           "backupPolicy": "shop-nightly", "repository": "drills"}],
    }))  # fmt: skip
    assert run_dr(capsys, "repo", "init").code == 0
    assert run_dr(capsys, "--repo", f"file://{isolated_home}/drills", "repo", "init").code == 0
    provider = LocalKeyProvider(key)
    drills_repo = Repository.open(open_store(f"file://{isolated_home}/drills"),
                                  lambda uri: provider if uri == provider.uri else None)  # fmt: skip
    drilled = drill("webapp-postgres", datetime(2026, 11, 3, 4, tzinfo=UTC))
    drills_repo.save_object("reports", drilled.model_dump(mode="json", by_alias=True))

    r = run_dr(capsys, "report", "drills", "--month", "2026-11", "--format", "json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["missing"] == [] and doc["totals"]["passed"] == 1
    assert doc["apps"][0]["latest"]["id"] == drilled.id
    # --repo names one repository: that one only.
    r = run_dr(capsys, "--repo", f"file://{isolated_home}/repo", "report", "drills", "--month", "2026-11",
               "--format", "json")  # fmt: skip
    assert r.code == 0 and r.json()["missing"] == ["webapp-postgres"]
    # A drill policy's repository that cannot be read: the report still comes, saying why the app
    # may show as without a drill.
    config = (isolated_home / "dr.yaml").read_text()
    (isolated_home / "dr.yaml").write_text(config.replace(f"{isolated_home}/drills", f"{isolated_home}/gone"))
    r = run_dr(capsys, "report", "drills", "--month", "2026-11", "--format", "json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["missing"] == ["webapp-postgres"]
    (warning,) = doc["warnings"]
    assert warning.startswith(
        f"cannot read the drill reports of repository drills (file://{isolated_home}/gone): "
    )
    assert f"warning: {warning}" in r.err


# --------------------------------------------------------------------------- DrillReport


def test_drill_report_measures() -> None:
    d = drill(
        "a", datetime(2026, 11, 1, 4, tzinfo=UTC), phases=(60, 300, 120, 60), backup_age=timedelta(hours=30)
    )
    assert d.rto_measured == timedelta(minutes=9) and d.rto_met is True
    assert d.rpo_measured == timedelta(hours=30) and d.rpo_met is False
    e = drill("a", datetime(2026, 11, 1, tzinfo=UTC), "error", error="no backup")
    assert (e.rto_measured, e.rto_met, e.rpo_measured, e.rpo_met) == (None, None, None, None)
    doc = json.loads(d.to_json())
    assert doc["rtoMeasured"] == 540.0 and doc["rpoMet"] is False and doc["phases"]["restoreData"] == 300.0
    assert doc["kind"] == "DrillReport" and doc["apiVersion"] == "dr.dev/v1"


def test_outcome_of() -> None:
    ok = StepResult(name="a", type="http", passed=True, message="", duration=timedelta())
    bad = ok.model_copy(update={"passed": False})
    assert outcome_of([ok]) == "passed" and outcome_of([ok, bad]) == "failed"
    assert outcome_of([ok], "restore failed") == "error" and outcome_of([]) == "error"


def test_restore_problems_fail_a_drill_whose_steps_passed() -> None:
    ok = StepResult(name="a", type="http", passed=True, message="", duration=timedelta())
    assert outcome_of([ok], None, RestoreProblems()) == "passed"
    assert (
        outcome_of([ok], None, RestoreProblems(failed_items=["widgets w1: failed (no such type)"]))
        == "failed"
    )
    assert outcome_of([ok], None, RestoreProblems(not_ready=["ns/deployment web: 0/1 ready"])) == "failed"
    assert outcome_of([ok], "no backup", RestoreProblems(volume_errors=["x"])) == "error"


def test_a_drill_never_ready_measures_no_rto() -> None:
    d = drill("a", datetime(2026, 11, 1, 4, tzinfo=UTC), "failed")
    d = d.model_copy(update={"restore": RestoreProblems(not_ready=["drill-a-x1/deployment web: 0/1 ready"])})
    assert d.rto_measured is None and d.rto_met is None
    assert json.loads(d.to_json())["rtoMeasured"] is None


def test_a_drill_that_could_not_run_to_the_end_measures_no_rto(tmp_path: Path) -> None:
    # The restore ran, then the drill broke off (the API went away while waiting for the workloads):
    # the phases up to there are no recovery time, and must not pull the month's median down.
    t = datetime(2026, 11, 20, 4, tzinfo=UTC)
    broke = drill("webapp-postgres", t).model_copy(
        update={
            "phases": Phases(restore_resources=timedelta(seconds=20)),
            "steps": [],
            "outcome": "error",
            "error": "cannot list deployments.apps in drill-webapp-x1: 503 Service Unavailable",
        }
    )
    assert broke.rto_measured is None and broke.rto_met is None
    assert json.loads(broke.to_json())["rtoMeasured"] is None
    earlier = drill("webapp-postgres", t - timedelta(days=10), phases=(60, 300, 120, 60))
    monthly = build_monthly_report([earlier, broke], NOV, generated=GENERATED)
    (app,) = monthly.apps
    assert app.status == "error" and app.trend[-1].rto is None
    assert monthly.trend[-1].rto == timedelta(minutes=9)  # the median of the drills that recovered
    md, page = render_markdown(monthly), render_html(monthly)
    assert "| - / 30m |" in md and "phases that ran: restore resources 20s." in md and "RTO 20s" not in md
    assert "No RTO measured (the drill did not run to its end)" in md, md
    assert "RTO 20s" not in page and ">no RTO</text>" in page
    # Alerting reads the same: no measured recovery time, not a fast one.
    from dr.config import Metrics
    from dr.observe.run_hooks import drill_finished

    cfg = Config(metrics=Metrics(textfile=str(tmp_path / "dr.prom")))
    assert drill_finished(cfg, None, broke, "monthly") == []
    text = (tmp_path / "dr-drill-webapp-postgres.prom").read_text()
    assert 'dr_drill_rto_seconds{app="webapp-postgres",policy="monthly"} NaN' in text


def test_loading_dumps_counts_into_the_rto_and_is_shown() -> None:
    d = drill("a", datetime(2026, 11, 1, 4, tzinfo=UTC), phases=(60, 300, 120, 60))
    d = d.model_copy(update={"phases": d.phases.model_copy(update={"load_dumps": timedelta(minutes=2)})})
    assert d.rto_measured == timedelta(minutes=11)
    monthly = build_monthly_report([d], NOV, generated=GENERATED)
    assert "ready 2m + load dumps 2m + verification 1m" in render_markdown(monthly)
    assert "load dumps 2m" in render_html(monthly)


def test_the_phase_legend_stays_inside_the_chart() -> None:
    import re

    from dr.report.charts import phases_bar

    minutes = (12.5, 102, 14.1, 35.2, 3.3)  # every phase, and hour-long ones: a long legend
    names = ("restore resources", "restore data", "ready", "load dumps", "verification")
    svg = phases_bar([(n, timedelta(minutes=m)) for n, m in zip(names, minutes, strict=True)],
                     timedelta(hours=4), "x")  # fmt: skip
    width, height = (float(v) for v in re.search(r'viewBox="0 0 (\S+) (\S+)"', svg).groups())  # type: ignore[union-attr]
    legend = re.findall(
        r'<text x="([0-9.]+)" y="([0-9.]+)" font-size="10" fill="#24292f">([^<]*)</text>', svg
    )
    assert [t for _, _, t in legend][-1] == "verification 3m18s"
    for x, y, text in legend:  # the chart's estimate of a label's width: 5.6 per character
        assert float(x) + 5.6 * len(text) <= width and float(y) <= height, text


def test_reports_written_before_restore_problems_still_read() -> None:
    d = drill("a", datetime(2026, 11, 1, 4, tzinfo=UTC))
    doc = json.loads(d.to_json())
    del doc["restore"]  # as written by older versions
    again = DrillReport.model_validate(doc)
    assert again.restore == RestoreProblems() and not again.restore and again.outcome == "passed"


def test_restore_problems_in_every_rendering() -> None:
    d = drill("shop", datetime(2026, 11, 20, 4, tzinfo=UTC), "failed")
    passing = [s.model_copy(update={"passed": True}) for s in d.steps]
    problems = RestoreProblems(
        failed_items=["widgets.example.com drill-shop-x1/w1: failed (the server could not find <it>)"],
        dump_errors=["db-0: pg_restore exited 1"],
        not_ready=["drill-shop-x1/deployment web: 0/1 ready"],
    )
    warning = "cannot check whether storageclasses.storage.k8s.io fast exists: 403 Forbidden"
    d = d.model_copy(update={"restore": problems, "steps": passing, "warnings": [warning]})
    monthly = build_monthly_report([d], NOV, generated=GENERATED)
    app = monthly.apps[0]
    assert app.status == "failed" and app.latest is not None
    assert app.latest.restore_problems == problems.lines()
    [(_, why)] = monthly.attention()
    assert (
        why
        == "restore failed: widgets.example.com drill-shop-x1/w1: failed (the server could not find <it>) (+2 more)"
    )
    doc = json.loads(render_json(monthly))
    assert doc["apps"][0]["latest"]["restoreProblems"] == problems.lines()
    md = render_markdown(monthly)
    assert "The restore was not complete:" in md
    assert (
        "- not ready: drill-shop-x1/deployment web: 0/1 ready" in md
        and "- dump: db-0: pg_restore exited 1" in md
    )
    html = render_html(monthly)
    assert "The restore was not complete" in html and "could not find &lt;it&gt;" in html
    assert f"- {warning}" in md and f"<li>{warning}</li>" in html


def test_reading_ignores_computed_and_unknown_fields() -> None:
    d = drill("a", datetime(2026, 11, 1, 4, tzinfo=UTC))
    doc = json.loads(d.to_json())
    doc["rtoMeasured"] = 1.0  # derived values are recomputed, not trusted
    doc["addedInAFutureVersion"] = {"x": 1}
    again = DrillReport.model_validate(doc)
    assert again == d and again.rto_measured == timedelta(minutes=9)


def test_human_duration() -> None:
    cases = {
        0.4: "0.4s",
        2.5: "2.5s",
        59: "59s",
        90: "1m30s",
        3600: "1h",
        86400: "24h",
        5400: "1h30m",
        7 * 86400: "7d",
    }
    for secs, text in cases.items():
        assert human_duration(timedelta(seconds=secs)) == text
    assert human_duration(None) == "-"


durations = st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False).map(
    lambda s: timedelta(seconds=round(s, 3))
)
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
texts = st.text(max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    id=st.text(min_size=1, max_size=20),
    started=times,
    backup_age=st.none() | st.integers(0, 10**8),
    phases=st.tuples(durations, durations, durations, durations),
    outcome=st.sampled_from(["passed", "failed", "error"]),
    steps=st.lists(
        st.builds(
            StepResult,
            name=texts,
            type=st.sampled_from(["resources", "ready", "http", "exec", "data", "job"]),
            passed=st.booleans(),
            message=texts,
            duration=durations.filter(lambda d: d is not None),
            details=st.dictionaries(texts, st.integers() | texts | st.booleans(), max_size=3),
            error=st.none() | texts,
        ),
        max_size=4,
    ),
    error=st.none() | texts,
)
def test_drill_report_json_round_trip(
    id: str,
    started: datetime,
    backup_age: int | None,
    phases: tuple[timedelta | None, ...],
    outcome: str,
    steps: list[StepResult],
    error: str | None,
) -> None:
    d = DrillReport(
        id=id,
        app="app",
        runbook="r.yaml",
        backup_id="b" if backup_age is not None else None,
        backup_time=started - timedelta(seconds=backup_age) if backup_age is not None else None,
        started=started,
        finished=started + timedelta(hours=1),
        namespace="drill-app-x",
        namespaces={"app": "drill-app-x"},
        phases=Phases(
            restore_resources=phases[0],
            restore_data=phases[1],
            time_to_ready=phases[2],
            verification=phases[3],
        ),
        objectives=ReportObjectives(rpo=timedelta(hours=24), rto=timedelta(minutes=30)),
        steps=steps,
        outcome=outcome,  # type: ignore[arg-type]
        error=error,
        cleanup=Cleanup(status="failed", message="namespace stuck"),
    )
    assert DrillReport.from_json(d.to_json()) == d


@pytest.mark.parametrize("linked_by", ["drill policy", "runbook"])
def test_cli_reads_the_reports_where_a_drill_policy_without_a_repository_writes_them(
    capsys: pytest.CaptureFixture[str], isolated_home: Path, linked_by: str
) -> None:
    # A drill policy that names no repository drills (and reports) in its backup policy's
    # repository, named by the policy or else by its runbook (Config.drill_repository, as
    # `dr drill run --policy` has it); the monthly report must look there too.
    import yaml

    from dr.crypto.providers.local import LocalKeyProvider
    from dr.repo.repository import Repository
    from dr.storage.registry import open_store
    from tests.cli_support import write_runbook

    home = isolated_home
    policy = {"name": "m", "runbook": "m.yaml", "schedule": "0 4 1 * *"}
    if linked_by == "drill policy":
        policy["backupPolicy"] = "b"
    else:
        write_runbook(home / "m.yaml", "ledger", "ledger", backup_policy="b")
    config = home / "dr.yaml"
    config.write_text(yaml.safe_dump({
        "repositories": [{"name": "main", "url": f"file://{home}/main", "keys": ["local"]},
                         {"name": "other", "url": f"file://{home}/other", "keys": ["local"]}],
        "keyProviders": [{"name": "local", "uri": f"local://{home}/repo.key"}],
        "backupPolicies": [{"name": "b", "schedule": "0 2 * * *", "repository": "other",
                            "scope": {"namespaces": ["ledger"]}}],
        "drillPolicies": [policy],
    }))  # fmt: skip
    key = LocalKeyProvider(home / "repo.key")
    for name, app in (("main", "shop"), ("other", "ledger")):
        assert run_dr(capsys, "--repo", f"file://{home}/{name}", "repo", "init").code == 0
        repo = Repository.open(
            open_store(f"file://{home}/{name}"), lambda uri: key if uri == key.uri else None
        )
        report = drill(app, datetime(2026, 11, 3, 4, tzinfo=UTC))
        repo.save_object("reports", report.model_dump(mode="json", by_alias=True))
    r = run_dr(capsys, "report", "drills", "--month", "2026-11", "--format", "json")
    assert r.code == 0, r.err
    assert r.json()["totals"]["drills"] == 2


def test_a_stopped_drill_is_not_said_to_have_left_the_app_unrecovered() -> None:
    # A drill stopped by Ctrl-C or SIGTERM after its workloads were ready measures no RTO (it did not
    # run to its end), but the page said "the app was not recovered": it was, in 30s.
    t = datetime(2026, 11, 20, 4, tzinfo=UTC)
    stopped = drill("shop", t).model_copy(
        update={"phases": Phases(restore_resources=timedelta(seconds=60), time_to_ready=timedelta(seconds=30)),
                "steps": [], "outcome": "error", "error": "interrupted (Ctrl-C)"}
    )  # fmt: skip
    md = render_markdown(build_monthly_report([stopped], NOV, generated=GENERATED))
    assert "The drill could not run: interrupted (Ctrl-C)" in md
    assert (
        "No RTO measured (the drill did not run to its end); phases that ran: restore resources 1m, ready 30s."
        in md
    )
    never = stopped.model_copy(update={"restore": RestoreProblems(not_ready=["deployment/web"]), "error": None,
                                       "outcome": "failed", "phases": Phases(restore_resources=timedelta(seconds=60))})  # fmt: skip
    md = render_markdown(build_monthly_report([never], NOV, generated=GENERATED))
    assert "No RTO measured (the app was not recovered); phases that ran: restore resources 1m." in md
