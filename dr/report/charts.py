"""Inline SVG charts for the drill report: pass rate per month, RTO per month, RTO phases.

Plain SVG strings, sized by ``viewBox`` so they scale with the page and print
sharply; no scripts, no fonts beyond the page's. Colours are light and each
mark also carries text (value labels, ``<title>``), so the charts read in
black and white and to screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from html import escape

from dr.drill.model import human_duration
from dr.report.drills import Month, TrendPoint

PASS, FAIL, WARN, NONE, INK, GRID, OBJECTIVE = (
    "#2da44e",
    "#cf222e",
    "#d4a72c",
    "#d0d7de",
    "#24292f",
    "#eaeef2",
    "#8250df",
)
PHASE_COLORS = ("#54aeff", "#4ac26b", "#d4a72c", "#ff8182", "#c297ff")


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" class="chart"><title>{escape(label)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _rate_color(rate: float) -> str:
    return PASS if rate >= 1 else (WARN if rate >= 0.5 else FAIL)


def pass_rate_bars(points: Sequence[TrendPoint], label: str = "Pass rate per month") -> str:
    """One bar per month, height = share of drills that passed; empty months show a grey stub."""
    w, h, left, bottom, top = 640, 190, 36, 34, 16
    plot_h = h - bottom - top
    step = (w - left - 8) / max(1, len(points))
    body = []
    for pct in (0, 50, 100):
        y = top + plot_h * (1 - pct / 100)
        body.append(f'<line x1="{left}" x2="{w - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="{INK}">{pct}%</text>'
        )
    for i, p in enumerate(points):
        x = left + i * step + step * 0.18
        bw = step * 0.64
        month = Month.parse(p.month)
        body.append(
            f'<text x="{x + bw / 2:.1f}" y="{h - bottom + 14}" text-anchor="middle" font-size="10" '
            f'fill="{INK}">{escape(month.short)}</text>'
        )
        if p.pass_rate is None:
            body.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - 2:.1f}" width="{bw:.1f}" height="2" fill="{NONE}">'
                f"<title>{escape(p.month)}: no drills</title></rect>"
            )
            continue
        bh = max(2.0, plot_h * p.pass_rate)
        y = top + plot_h - bh
        tip = f"{p.month}: {p.passed} of {p.drills} drills passed"
        body.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{bh:.1f}" rx="2" '
            f'fill="{_rate_color(p.pass_rate)}"><title>{escape(tip)}</title></rect>'
        )
        body.append(
            f'<text x="{x + bw / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="10" '
            f'fill="{INK}">{p.passed}/{p.drills}</text>'
        )
    return _svg(w, h, label, body)


_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def nice_scale(peak_seconds: float, ticks: int = 4) -> tuple[float, float]:
    """(axis maximum, tick step) in round durations covering ``peak_seconds`` in at most ``ticks`` steps."""
    for nice in _NICE_STEPS:
        if peak_seconds <= nice * ticks:
            return max(1.0, math.ceil(peak_seconds / nice)) * nice, float(nice)
    days = 86400.0 * math.ceil(peak_seconds / (86400 * ticks))
    return math.ceil(peak_seconds / days) * days, days


def rto_line(points: Sequence[TrendPoint], objective: timedelta | None, label: str) -> str:
    """RTO per month as a line with dots, and the objective as a dashed line (when known)."""
    w, h, left, bottom, top = 640, 150, 48, 30, 14
    plot_h = h - bottom - top
    values = [p.rto.total_seconds() for p in points if p.rto is not None]
    peak, tick = nice_scale(max([*values, objective.total_seconds() * 1.1 if objective else 0.0, 1.0]))
    step = (w - left - 10) / max(1, len(points))
    body = []

    def y_of(secs: float) -> float:
        return top + plot_h * (1 - secs / peak)

    secs = 0.0
    while secs <= peak + 1e-9:
        y = y_of(secs)
        body.append(f'<line x1="{left}" x2="{w - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10" '
            f'fill="{INK}">{escape(human_duration(timedelta(seconds=secs)) if secs else "0")}</text>'
        )
        secs += tick
    if objective:
        y = y_of(objective.total_seconds())
        body.append(
            f'<line x1="{left}" x2="{w - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="{OBJECTIVE}" '
            f'stroke-dasharray="6 4" stroke-width="1.5"/>'
        )
        body.append(
            f'<text x="{left + 4}" y="{y - 4:.1f}" font-size="10" '
            f'fill="{OBJECTIVE}">objective {escape(human_duration(objective))}</text>'
        )
    path: list[str] = []
    for i, p in enumerate(points):
        x = left + i * step + step / 2
        body.append(
            f'<text x="{x:.1f}" y="{h - bottom + 14}" text-anchor="middle" font-size="10" '
            f'fill="{INK}">{escape(Month.parse(p.month).short)}</text>'
        )
        if p.rto is None:
            path.append("")  # a gap: no drill that month
            continue
        y = y_of(p.rto.total_seconds())
        path.append(f"{x:.1f},{y:.1f}")
        ok = objective is None or p.rto <= objective
        color = PASS if ok and p.passed == p.drills else FAIL
        tip = f"{p.month}: RTO {human_duration(p.rto)}"
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"><title>{escape(tip)}</title></circle>'
        )
    for run in " ".join(path).split("  "):
        pts = run.split()
        if len(pts) > 1:
            body.insert(
                0, f'<polyline points="{" ".join(pts)}" fill="none" stroke="{INK}" stroke-width="1.5"/>'
            )
    return _svg(w, h, label, body)


def phases_bar(
    phases: Sequence[tuple[str, timedelta | None]],
    objective: timedelta | None,
    label: str,
    measured: bool = True,
) -> str:
    """The RTO as a stacked bar of its phases, with the objective marked.

    ``measured`` False: the drill measured no RTO (never ready, broke off); the bar shows the
    phases that ran, and its legend does not call their sum an RTO.
    """
    w, h, left, right = 640, 72, 4, 4
    parts = [(n, d) for n, d in phases if d is not None and d.total_seconds() > 0]
    total = sum((d for _, d in parts), timedelta())
    scale_to = max(total, objective or timedelta(), timedelta(seconds=1)).total_seconds() * 1.05
    usable = w - left - right
    body = [f'<rect x="{left}" y="8" width="{usable}" height="22" fill="{GRID}" rx="3"/>']
    x = float(left)
    for i, (name, d) in enumerate(parts):
        bw = usable * d.total_seconds() / scale_to
        tip = f"{name}: {human_duration(d)}"
        body.append(
            f'<rect x="{x:.1f}" y="8" width="{bw:.1f}" height="22" fill="{PHASE_COLORS[i % len(PHASE_COLORS)]}">'
            f"<title>{escape(tip)}</title></rect>"
        )
        if bw > 70:
            body.append(
                f'<text x="{x + 4:.1f}" y="23" font-size="10" fill="{INK}">{escape(name)} {escape(human_duration(d))}</text>'
            )
        x += bw
    if objective:
        ox = left + usable * objective.total_seconds() / scale_to
        body.append(
            f'<line x1="{ox:.1f}" x2="{ox:.1f}" y1="2" y2="36" stroke="{OBJECTIVE}" stroke-width="2"/>'
        )
        anchor = "end" if ox > w - 120 else "start"
        tx = ox - 4 if anchor == "end" else ox + 4
        body.append(
            f'<text x="{tx:.1f}" y="50" text-anchor="{anchor}" font-size="10" '
            f'fill="{OBJECTIVE}">objective {escape(human_duration(objective))}</text>'
        )
    # Legend: every phase by name, also those too narrow to label inside the bar.
    legend_x = float(left)
    body.append(
        f'<text x="{legend_x}" y="66" font-size="10" font-weight="600" fill="{INK}">'
        f"{'RTO ' + escape(human_duration(total)) if measured else 'no RTO'}</text>"
    )
    legend_x += 70
    row = 0
    for i, (name, d) in enumerate(parts):
        text = f"{name} {human_duration(d)}"
        width = 22 + 5.6 * len(text)
        if legend_x + width > w and legend_x > left + 70:
            # The next row, under the first entry: past the viewBox, an entry would be cut off.
            legend_x, row = float(left + 70), row + 1
        y = 66 + 14 * row
        body.append(
            f'<rect x="{legend_x:.1f}" y="{y - 8}" width="9" height="9" '
            f'fill="{PHASE_COLORS[i % len(PHASE_COLORS)]}"/>'
        )
        body.append(
            f'<text x="{legend_x + 12:.1f}" y="{y}" font-size="10" fill="{INK}">{escape(text)}</text>'
        )
        legend_x += width
    return _svg(w, h + 14 * row, label, body)
