"""A self-contained HTML report on the warehouse, the run ledger and the alerts.

One file, no scripts and nothing fetched: the CSS is inline and the charts are SVG drawn here,
so the page opens anywhere, offline included, and can be mailed or archived as it is.
`python -m shared.cli report` or the tests call `write_report(services, path)`.
"""

from __future__ import annotations

import html
import json
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from shared.domain import names
from shared.domain.days import ROLLING_DAYS
from shared.domain.rules import RULES_LEGEND
from shared.domain.wording import agreeing, counted
from shared.observability.redact import redact
from shared.ports import Services
from shared.services.status import days_under_other_rules

TOP_AT_RISK = 20
RECENT_ALERTS = 20
DAILY_COLOUR = "#2563eb"
ROLLING_COLOUR = "#f59e0b"
RISK_COLOUR = "#dc2626"
SHORT_COLOUR = "#fca5a5"  # churn flags on days whose window observed fewer than 7 days
WEEK_COLOUR = "#0d9488"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
  color:#1f2937;background:#f3f4f6;margin:0}
main{max-width:1120px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:0 0 12px}
.sub{color:#6b7280;margin:0 0 20px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px 20px;margin:0 0 20px}
.cards{display:grid;grid-template-columns:repeat(5,1fr);gap:12px;margin:0 0 20px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px 16px}
.card b{display:block;font-size:22px}.card span{color:#6b7280;font-size:12px}
.card.risk b{color:#dc2626}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:20px;margin:0 0 20px}.grid section{margin:0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{font-size:12px;color:#6b7280;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.error td:first-child{color:#dc2626;font-weight:600}tr.warning td:first-child{color:#b45309;font-weight:600}
.legend{display:flex;gap:16px;font-size:12px;color:#4b5563;margin:0 0 6px}
.legend i{display:inline-block;width:14px;height:3px;vertical-align:middle;margin-right:6px}
.muted{color:#6b7280}.empty{font-size:16px;padding:24px 0;text-align:center;color:#6b7280}
svg{display:block;width:100%;height:auto}
"""


def render_report(services: Services) -> str:
    """The whole report as one HTML document."""
    warehouse = services.warehouse
    days = list(warehouse.fetch_rows("report_daily_trend"))
    weeks = list(warehouse.fetch_rows("report_weekly_trend"))
    snapshots = list(warehouse.fetch_rows("report_crm_snapshots"))
    freshness = next(iter(warehouse.fetch_rows("report_freshness")), {})
    latest = days[-1] if days else None
    at_risk = (
        list(
            warehouse.fetch_rows(
                "report_top_churn_risk", {"activity_date": latest["activity_date"], "top_n": TOP_AT_RISK}
            )
        )
        if latest
        else []
    )
    generated = services.clock().strftime("%Y-%m-%d %H:%M UTC")

    rules, stale = services.settings.rules(), days_under_other_rules(services)
    body = [
        "<h1>Company Activity</h1>",
        f'<p class="sub">analytics.company_daily_activity, generated {_e(generated)}</p>',
        f'<p class="sub">Rules in force ({_e(RULES_LEGEND)} = {_e(rules.short())}): {_e(rules.describe())}.'
        + (
            f" <b>{counted(len(stale), 'day')} {agreeing(len(stale), 'was', 'were')} built under other rules</b>;"
            " rebuild them with"
            " <code>python -m shared.cli rebuild</code>.</p>"
            if stale
            else " Every day was built under them.</p>"
        ),
    ]
    if latest is None:
        body.append(
            '<section><p class="empty">No data yet: no day has been built. Drop a CRM snapshot and '
            "run or backfill a day, then render the report again.</p></section>"
        )
    else:
        dates = [d["activity_date"] for d in days]
        short = [_int(d["days_observed"]) < ROLLING_DAYS for d in days]
        note = _short_window_note(days, short)
        body += [
            _cards(latest),
            _section(
                "Daily active users",
                _line_chart(
                    dates,
                    [_int(d["active_users"]) for d in days],
                    DAILY_COLOUR,
                    "active users",
                    "Daily active users",
                ),
            ),
            _section(
                "Rolling 7-day active user-days",
                '<p class="muted">The sum of the 7 days\' daily active users (a user active on 3 days counts 3),'
                " over all companies.</p>"
                + _legend_marks(
                    [
                        ("7 days of usage observed", ROLLING_COLOUR, False),
                        (f"fewer than {ROLLING_DAYS}: the window is short", ROLLING_COLOUR, True),
                    ]
                )
                + _line_chart(
                    dates,
                    [_int(d["rolling_7d_active_users"]) for d in days],
                    ROLLING_COLOUR,
                    "user-days",
                    "Rolling 7-day active user-days per day",
                    hollow=short,
                )
                + note,
            ),
            _section(
                "Churn-risk companies per day",
                _legend_marks(
                    [
                        ("7 days observed", RISK_COLOUR, False),
                        (
                            f"fewer than {ROLLING_DAYS} days observed: partly a short window",
                            SHORT_COLOUR,
                            False,
                        ),
                    ]
                )
                + _bar_chart(
                    dates,
                    [_int(d["churn_risk"]) for d in days],
                    [SHORT_COLOUR if s else RISK_COLOUR for s in short],
                    "companies",
                    "Churn-risk companies per day",
                )
                + _churn_note(days, short)
                + _cannot_tell_note(days),
            ),
            _section(
                "Weekly trend (ISO weeks)",
                '<p class="muted">Active user-days per week, from analytics.company_weekly_activity;'
                " a week with fewer than 7 days built is marked partial.</p>"
                + _bar_chart(
                    [
                        f"W{_int(w['iso_week']):02d}" + ("*" if _int(w["days_built"]) < 7 else "")
                        for w in weeks
                    ],
                    [_int(w["active_user_days"]) for w in weeks],
                    [WEEK_COLOUR] * len(weeks),
                    "user-days",
                    "Active user-days per ISO week",
                    labels_as_text=True,
                    x_title="ISO week (* partial)",
                ),
            ),
            _section(
                f"Most at risk on {_text(latest['activity_date'])}"
                f" (top {min(TOP_AT_RISK, _int(latest['churn_risk']))} of {_int(latest['churn_risk'])})",
                _risk_table(at_risk) + _cannot_tell_latest(latest),
            ),
        ]
    body.append(
        '<div class="grid">'
        + _section("Data freshness", _freshness_table(freshness))
        + _section("CRM snapshots", _snapshots_table(snapshots))
        + "</div>"
    )
    body.append(_section("Quarantine", _quarantine(services)))
    body.append(_section(f"Recent alerts (last {RECENT_ALERTS})", _alerts(services)))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Company Activity report</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def _short_window_note(days: Sequence[Mapping[str, Any]], short: Sequence[bool]) -> str:
    if not any(short):
        return ""
    which = [_text(d["activity_date"]) for d, s in zip(days, short, strict=True) if s]
    shown = ", ".join(which[:6]) + (f" and {len(which) - 6} more" if len(which) > 6 else "")
    return (
        f'<p class="muted">Hollow points: days whose 7-day window observed fewer than {ROLLING_DAYS} days of'
        f" usage ({_e(shown)}). Their rolling sums cover only the days observed.</p>"
    )


def _churn_note(days: Sequence[Mapping[str, Any]], short: Sequence[bool]) -> str:
    flagged = sum(_int(d["churn_risk"]) for d, s in zip(days, short, strict=True) if s)
    if not flagged:
        return ""
    return (
        f'<p class="muted">{_num(flagged)} of the flags counted here fall on days with fewer than'
        f" {ROLLING_DAYS} days of usage observed: there, a company can look quiet only because its"
        " window is short.</p>"
    )


def _cannot_tell_note(days: Sequence[Mapping[str, Any]]) -> str:
    """The days with companies whose flag is NULL (cannot tell), counted apart from the flags."""
    which = [(d, _int(d.get("churn_cannot_tell"))) for d in days if _int(d.get("churn_cannot_tell"))]
    if not which:
        return ""
    shown = ", ".join(f"{_text(d['activity_date'])}: {n}" for d, n in which[:10]) + (
        f" and {len(which) - 10} more days" if len(which) > 10 else ""
    )
    unknown = sum(_int(d.get("usage_unknown")) for d in days)
    return (
        f'<p class="muted">Cannot tell, not counted in the bars ({_e(shown)}): companies the rule would'
        " flag, but whose usage on a day of their 7-day window was refused (a record quarantined for"
        " its counts). Their usage that day is unknown, never taken as 0, so they are neither flagged"
        f" nor cleared (is_churn_risk is empty). Company-days with unknown usage: {_num(unknown)}.</p>"
    )


def _cannot_tell_latest(latest: Mapping[str, Any]) -> str:
    n = _int(latest.get("churn_cannot_tell"))
    if not n:
        return ""
    return (
        f'<p class="muted"><b>{_num(n)} {"company" if n == 1 else "companies"} cannot be told</b> on this'
        " day and are not in the list: the rule would flag them, but their usage on a day of the"
        " window was refused (unknown, not 0). <code>python -m shared.cli reconcile --date"
        f" {_e(_text(latest['activity_date']))} --company ID</code> says which record and why.</p>"
    )


def write_report(services: Services, path: Path) -> Path:
    """Write the page to `path`; its folder must exist (a mistyped --out is said, not made)."""
    if not path.parent.is_dir():
        raise FileNotFoundError(2, "No such folder", str(path.parent))
    # The ledger and alerts it shows are stored redacted; this holds for those written before.
    page = redact(render_report(services), services.settings.secrets())
    # Written aside and renamed: `report` takes no folder lock, so two at once each leave a
    # whole page, never a mix.
    aside = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        aside.write_text(page, encoding="utf-8")
        os.replace(aside, path)
    finally:
        aside.unlink(missing_ok=True)
    return path


# --- sections ------------------------------------------------------------------------------------


def _cards(latest: Mapping[str, Any]) -> str:
    cards = [
        ("latest built day", _text(latest["activity_date"]), ""),
        ("companies", _num(latest["companies"]), ""),
        ("active users", _num(latest["active_users"]), ""),
        ("rolling 7-day active user-days", _num(latest["rolling_7d_active_users"]), ""),
        ("at churn risk", _num(latest["churn_risk"]), " risk"),
    ]
    if _int(latest.get("churn_cannot_tell")):
        cards.append(("cannot tell (usage refused)", _num(latest["churn_cannot_tell"]), ""))
    return (
        '<div class="cards">'
        + "".join(f'<div class="card{c}"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for k, v, c in cards)
        + "</div>"
    )


def _risk_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return '<p class="muted">No company is at churn risk on this day.</p>'
    body = []
    for r in rows:
        since = r["days_since_last_contact"]
        body.append(
            _row(
                [
                    (r["company_name"] or "(not in CRM)", ""),
                    (r["company_id"], "muted"),
                    (r["country"] or "", ""),
                    (r["industry_tag"] or "", ""),
                    (_num(r["rolling_7d_active_users"]), "n"),
                    (_text(r["last_contact_at"], date_only=True) if r["last_contact_at"] else "never", ""),
                    ("" if since is None else _num(since), "n"),
                ]
            )
        )
    return _table(
        [
            ("company", ""),
            ("id", ""),
            ("country", ""),
            ("industry", ""),
            ("7-day user-days", "n"),
            ("last contact", ""),
            ("days since", "n"),
        ],
        body,
    )


def _freshness_table(row: Mapping[str, Any]) -> str:
    items = [
        ("latest built day", row.get("latest_built_day"), row.get("table_loaded_at")),
        ("latest usage day staged", row.get("latest_usage_day"), row.get("usage_loaded_at")),
        ("latest CRM snapshot", row.get("latest_crm_snapshot"), row.get("crm_loaded_at")),
    ]
    return _table(
        [("", ""), ("day", ""), ("last loaded (UTC)", "")],
        [_row([(k, ""), (_text(d) if d else "none", ""), (_text(t) if t else "", "")]) for k, d, t in items],
    )


def _snapshots_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return '<p class="muted">No CRM snapshot staged yet.</p>'
    return _table(
        [("snapshot", ""), ("companies", "n"), ("file", "")],
        [
            _row([(_text(r["snapshot_date"]), ""), (_num(r["companies"]), "n"), (r["source_blob"], "")])
            for r in rows
        ],
    )


def _quarantine(services: Services) -> str:
    """Per day: usage records and CRM rows quarantined; then every rejected CRM file."""
    per_day: dict[str, list[int]] = {}
    for entry in services.ledger.query(names.USAGE):
        per_day.setdefault(entry.key, [0, 0])[0] += _int(entry.data.get("quarantined"))
    rejected: list[Mapping[str, Any]] = []
    for entry in services.ledger.query(names.FILES):
        data = entry.data
        if data.get("status") == "rejected":
            rejected.append(data)
        elif data.get("snapshot_date"):
            per_day.setdefault(str(data["snapshot_date"]), [0, 0])[1] += _int(data.get("quarantined"))
    days = [(d, u, c) for d, (u, c) in sorted(per_day.items()) if u or c]
    parts = []
    if days:
        parts.append(
            _table(
                [("day", ""), ("usage records", "n"), ("CRM rows", "n")],
                [_row([(d, ""), (_num(u), "n"), (_num(c), "n")]) for d, u, c in days],
            )
        )
    else:
        parts.append('<p class="muted">Nothing quarantined.</p>')
    if rejected:
        parts.append(
            '<h2 style="margin-top:16px">Rejected CRM files</h2>'
            + _table(
                [("file", ""), ("reason", "")],
                [_row([(r.get("blob", ""), ""), (r.get("reason", ""), "")]) for r in rejected],
            )
        )
    return "".join(parts)


def _alerts(services: Services) -> str:
    path = services.settings.local_data_dir / "alerts.jsonl"
    if not path.is_file():
        return '<p class="muted">No alerts file (alerts go to the webhook, or none was raised).</p>'
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    rows = []
    for line in reversed(lines[-RECENT_ALERTS:]):  # newest first
        try:
            alert = json.loads(line)
        except json.JSONDecodeError:
            alert = {"severity": "?", "message": line}
        if not isinstance(alert, dict):
            alert = {"severity": "?", "message": line}
        severity = str(alert.get("severity") or "")
        rows.append(
            _row(
                [
                    (severity, ""),
                    (alert.get("stage") or "", ""),
                    (alert.get("activity_date") or "", ""),
                    (alert.get("message") or "", ""),
                ],
                css=severity if severity in ("error", "warning") else "",
            )
        )
    if not rows:
        return '<p class="muted">No alerts.</p>'
    return _table([("severity", ""), ("stage", ""), ("day", ""), ("message", "")], rows)


# --- charts: plain SVG, scaled into a fixed viewBox that CSS stretches to the page width -----------

WIDTH, HEIGHT = 1040, 300
LEFT, RIGHT, TOP, BOTTOM = 80, 16, 16, 56


def _line_chart(
    days: Sequence[Any],
    values: Sequence[int],
    colour: str,
    y_title: str,
    title: str,
    *,
    hollow: Sequence[bool] = (),
) -> str:
    """One series; `hollow` marks points that count fewer days than the others (dashed into)."""
    top, ticks = _scale(max(values, default=0))
    parts = [_axes(days, top, ticks, centred=False, y_title=y_title)]
    points = [(_x(i, len(days), centred=False), _y(v, top)) for i, v in enumerate(values)]
    short = list(hollow) or [False] * len(points)
    for i in range(1, len(points)):
        (x0, y0), (x1, y1) = points[i - 1], points[i]
        dash = ' stroke-dasharray="5 4"' if short[i] or short[i - 1] else ""
        parts.append(
            f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="{colour}" stroke-width="2.5"{dash}/>'
        )
    for (x, y), empty in zip(points, short, strict=True):
        fill = "#fff" if empty else colour
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}" stroke="{colour}" stroke-width="2"/>'
        )
    return _svg("".join(parts), title)


def _bar_chart(
    labels: Sequence[Any],
    values: Sequence[int],
    colours: Sequence[str],
    y_title: str,
    title: str,
    *,
    labels_as_text: bool = False,
    x_title: str = "day (UTC)",
) -> str:
    top, ticks = _scale(max(values, default=0))
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    bar = min(slot * 0.7, 48)
    parts = [
        _axes(labels, top, ticks, centred=True, y_title=y_title, x_title=x_title, as_text=labels_as_text)
    ]
    for i, (v, colour) in enumerate(zip(values, colours, strict=True)):
        x, y = _x(i, len(labels), centred=True), _y(v, top)
        parts.append(
            f'<rect x="{x - bar / 2:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{HEIGHT - BOTTOM - y:.1f}" '
            f'fill="{colour}" rx="2"/>'
        )
        if len(labels) <= 40:  # value labels only while they fit over the bars
            parts.append(
                f'<text x="{x:.1f}" y="{y - 5:.1f}" text-anchor="middle" font-size="12" fill="#374151">{_e(_num(v))}</text>'
            )
    return _svg("".join(parts), title)


def _axes(
    days: Sequence[Any],
    top: int,
    ticks: Sequence[int],
    *,
    centred: bool,
    y_title: str,
    x_title: str = "day (UTC)",
    as_text: bool = False,
) -> str:
    parts = []
    for t in ticks:
        y = _y(t, top)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="#6b7280">'
            f"{_e(_num(t))}</text>"
        )
    step = max(1, math.ceil(len(days) / 14))  # at most ~14 labels, so they never overlap
    for i in range(0, len(days), step):
        label = str(days[i]) if as_text else _text(days[i])[5:]  # MM-DD; the year is in the cards
        parts.append(
            f'<text x="{_x(i, len(days), centred=centred):.1f}" y="{HEIGHT - BOTTOM + 20}" '
            f'text-anchor="middle" font-size="12" fill="#6b7280">{_e(label)}</text>'
        )
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}" stroke="#9ca3af"/>'
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle" font-size="12" '
        f'fill="#374151">{_e(x_title)}</text>'
        f'<text transform="translate(14 {(TOP + HEIGHT - BOTTOM) / 2:.1f}) rotate(-90)" text-anchor="middle" '
        f'font-size="12" fill="#374151">{_e(y_title)}</text>'
    )
    return "".join(parts)


def _scale(peak: int) -> tuple[int, list[int]]:
    """A round axis maximum and its ticks (about 4 steps of 1, 2 or 5 times a power of ten)."""
    if peak <= 0:
        return 4, [0, 1, 2, 3, 4]
    raw = peak / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    top = math.ceil(peak / step) * step
    return top, list(range(0, top + 1, step))


def _x(i: int, n: int, *, centred: bool) -> float:
    width = WIDTH - LEFT - RIGHT
    if centred:  # bars sit in the middle of equal slots
        return LEFT + width * (i + 0.5) / max(n, 1)
    pad = 16  # line points keep clear of the axes
    return LEFT + pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 0.5)


def _y(value: float, top: int) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / top)


def _svg(content: str, title: str) -> str:
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{_e(title)}"><title>{_e(title)}</title>{content}</svg>'
    )


def _legend_marks(items: Iterable[tuple[str, str, bool]]) -> str:
    """Legend entries: a filled (or hollow) mark in the series' colour, and its words."""
    marks = []
    for label, colour, hollow in items:
        fill = "#fff" if hollow else colour
        marks.append(
            f'<span><i style="background:{fill};border:2px solid {colour};width:8px;height:8px;'
            f'border-radius:5px"></i>{_e(label)}</span>'
        )
    return '<div class="legend">' + "".join(marks) + "</div>"


# --- small helpers -------------------------------------------------------------------------------


def _section(title: str, content: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{content}</section>"


def _table(head: Sequence[tuple[str, str]], rows: Sequence[str]) -> str:
    cells = "".join(f'<th class="{c}">{_e(h)}</th>' if c else f"<th>{_e(h)}</th>" for h, c in head)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _row(cells: Sequence[tuple[Any, str]], css: str = "") -> str:
    tds = "".join(f'<td class="{c}">{_e(v)}</td>' if c else f"<td>{_e(v)}</td>" for v, c in cells)
    return f'<tr class="{css}">{tds}</tr>' if css else f"<tr>{tds}</tr>"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _int(value: Any) -> int:
    return int(value or 0)


def _num(value: Any) -> str:
    return f"{_int(value):,}"


def _text(value: Any, *, date_only: bool = False) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat() if date_only else value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
