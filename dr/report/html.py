"""The monthly drill report as one self-contained HTML page.

Inline CSS (``drill_report.css``, shipped as package data) and inline SVG
charts (``dr.report.charts``): no external assets, no JavaScript, so the file
can be mailed, archived next to the audit evidence, and printed (print CSS:
A4, page breaks between sections, no dark backgrounds, every status also in
words). All text from reports is HTML-escaped.
"""

from __future__ import annotations

from datetime import timedelta
from html import escape
from importlib.resources import files

from dr import __version__
from dr.drill.model import human_duration
from dr.report.charts import pass_rate_bars, phases_bar, rto_line
from dr.report.drills import STATUS_WORDS, AppMonth, MonthlyReport, when


def stylesheet() -> str:
    return files("dr.report").joinpath("drill_report.css").read_text(encoding="utf-8")


def _pill(status: str, word: str | None = None) -> str:
    return f'<span class="pill {escape(status)}">{escape(word or STATUS_WORDS.get(status, status))}</span>'


def _vs(m: timedelta | None, o: timedelta | None, met: bool | None) -> str:
    if m is None:
        return f"– / {escape(human_duration(o))}" if o else "–"
    mark = (
        "" if met is None else (' <span class="ok">ok</span>' if met else ' <span class="miss">missed</span>')
    )
    return f"{escape(human_duration(m))} / {escape(human_duration(o))}{mark}"


def _app_section(a: AppMonth) -> str:
    d = a.latest
    out = [f'<section class="app" id="app-{escape(a.app)}">', f"<h2>{escape(a.app)} {_pill(a.status)}</h2>"]
    if d is None:
        why = " It has a backup policy but was not drilled: schedule a drill." if a.has_backup_policy else ""
        out.append(f"<p>No drill this month.{escape(why)}</p>")
    else:
        facts = [
            ("Latest drill", f"<code>{escape(d.id)}</code>, started {escape(when(d.started))}"),
            (
                "Backup restored",
                f"<code>{escape(d.backup_id)}</code>, taken {escape(when(d.backup_time))}"
                if d.backup_id
                else "–",
            ),
            ("RTO measured / objective", _vs(d.rto_measured, a.rto_objective, d.rto_met)),
            ("RPO measured / objective", _vs(d.rpo_measured, a.rpo_objective, d.rpo_met)),
            (
                "Scratch namespace",
                f"<code>{escape(d.namespace)}</code>, cleanup {escape(d.cleanup)}" if d.namespace else "–",
            ),
        ]
        if d.error:
            facts.insert(1, ("Could not run", f'<span class="miss">{escape(d.error)}</span>'))
        out.append('<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>")
        if d.restore_problems:
            items = "".join(f"<li>{escape(p)}</li>" for p in d.restore_problems)
            out.append(f'<h3>The restore was not complete</h3><ul class="restore-problems miss">{items}</ul>')
        if d.warnings:
            items = "".join(f"<li>{escape(w)}</li>" for w in d.warnings)
            out.append(f'<h3>Warnings (the drill did not check these)</h3><ul class="warnings">{items}</ul>')
        phases = d.phase_durations()
        if any(p is not None for _, p in phases):
            measured = d.rto_measured is not None
            label = "RTO by phase, latest drill" if measured else "phases that ran, latest drill (no RTO)"
            out.append(
                "<figure>" + phases_bar(phases, a.rto_objective, f"{a.app}: {label}", measured) + "</figure>"
            )
        if d.steps:
            rows = []
            for s in d.steps:
                status = "passed" if s.passed else ("error" if s.error else "failed")
                rows.append(
                    f"<tr><td>{escape(s.name)}</td><td>{escape(s.type)}</td><td>{_pill(status)}</td>"
                    f'<td class="num">{escape(human_duration(s.duration))}</td><td>{escape(s.message)}</td></tr>'
                )
            out.append(
                "<table><thead><tr><th>Step</th><th>Type</th><th>Result</th><th>Time</th><th>Why</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>"
            )
        if len(a.drills) > 1:
            items = "".join(
                f"<tr><td>{escape(when(x.started))}</td><td><code>{escape(x.id)}</code></td>"
                f'<td>{_pill(x.outcome)}</td><td class="num">{escape(human_duration(x.rto_measured))}</td></tr>'
                for x in a.drills
            )
            out.append(
                "<h3>All drills this month</h3><table><thead><tr><th>Started</th><th>Drill</th><th>Result</th>"
                f'<th class="num">RTO</th></tr></thead><tbody>{items}</tbody></table>'
            )
    if any(p.rto is not None for p in a.trend):
        out.append(
            "<h3>Last 12 months</h3><figure>"
            + rto_line(a.trend, a.rto_objective, f"{a.app}: RTO of the latest drill per month")
            + "</figure>"
        )
    out.append("</section>")
    return "\n".join(out)


def render_html(report: MonthlyReport) -> str:
    t = report.totals
    tiles = [
        ("total", t.apps, "apps"),
        ("passed", t.passed, "passed"),
        ("failed", t.failed, "failed"),
        ("error", t.error, "could not run"),
        ("missing", t.missing, "no drill"),
    ]
    attention = report.attention()
    if attention or report.warnings:
        items = "".join(f'<li><span class="miss">warning:</span> {escape(w)}</li>' for w in report.warnings)
        items += "".join(
            f'<li><a href="#app-{escape(a.app)}"><strong>{escape(a.app)}</strong></a> {_pill(a.status)} '
            f"{escape(why)}</li>"
            for a, why in attention
        )
        attention_html = f'<div class="attention"><h3>Needs attention</h3><ul>{items}</ul></div>'
    else:
        attention_html = (
            '<div class="attention clear"><h3>Needs attention</h3><p>Nothing: every app with a backup policy '
            "passed its drill within its objectives.</p></div>"
        )
    rows = []
    for a in report.apps:
        d = a.latest
        rows.append(
            f'<tr><td><a href="#app-{escape(a.app)}">{escape(a.app)}</a></td><td>{_pill(a.status)}</td>'
            f'<td class="num">{len(a.drills)} ({a.passed_count})</td>'
            f"<td>{_vs(d.rto_measured if d else None, a.rto_objective, d.rto_met if d else None)}</td>"
            f"<td>{_vs(d.rpo_measured if d else None, a.rpo_objective, d.rpo_met if d else None)}</td>"
            f"<td>{escape(when(d.started)) if d else '–'}</td></tr>"
        )
    trend_rows = "".join(
        f'<tr><td>{escape(p.month)}</td><td class="num">{p.drills}</td><td class="num">{p.passed}</td>'
        f'<td class="num">{f"{p.pass_rate:.0%}" if p.pass_rate is not None else "–"}</td>'
        f'<td class="num">{escape(human_duration(p.rto))}</td></tr>'
        for p in report.trend
    )
    body = f"""<header>
<h1>{escape(report.title)}</h1>
<div class="meta">Generated {escape(when(report.generated))} by dr {escape(__version__)} · {t.drills} drills this month</div>
<div class="tiles">{"".join(f'<div class="tile {c}"><div class="n">{n}</div><div class="l">{escape(lbl)}</div></div>' for c, n, lbl in tiles)}</div>
</header>
{attention_html}
<section class="summary">
<h2>Apps</h2>
<table><thead><tr><th>App</th><th>Result</th><th class="num">Drills (passed)</th><th>RTO measured / objective</th>
<th>RPO measured / objective</th><th>Latest drill</th></tr></thead>
<tbody>{"".join(rows) or '<tr><td colspan="6">No apps with drills or backup policies.</td></tr>'}</tbody></table>
<p class="note">The latest drill of the month decides an app's result. RTO = restore of resources + restore of data
+ time to ready + loading database dumps + verification; RPO = age of the restored backup when the drill started.</p>
</section>
{"".join(_app_section(a) for a in report.apps)}
<section class="trend">
<h2>Trend, last 12 months</h2>
<div class="charts"><figure>{pass_rate_bars(report.trend, "Share of drills that passed, per month")}</figure>
<figure>{rto_line(report.trend, None, "Median RTO of all drills, per month")}</figure></div>
<table><thead><tr><th>Month</th><th class="num">Drills</th><th class="num">Passed</th><th class="num">Pass rate</th>
<th class="num">Median RTO</th></tr></thead><tbody>{trend_rows}</tbody></table>
</section>
<footer>dr restore drills · {escape(report.month)} · statuses: passed, FAILED (the restore was incomplete or a step said no), ERROR (the drill could not run), no drill.</footer>"""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(report.title)}</title>
<style>
{stylesheet()}</style>
</head>
<body>
{body}
</body>
</html>
"""
