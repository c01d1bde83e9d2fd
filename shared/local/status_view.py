"""How `status` reads: one line per day, the per-day table, and what a CRM drop became."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.domain.fetch_decision import lease_expired
from shared.domain.rules import RULED_STATES, RULES_LEGEND, Rules
from shared.domain.transform_plan import BUILD
from shared.domain.wording import agreeing, counted
from shared.observability.redact import printable
from shared.services.pending import NEED


def day_line(view: dict[str, Any], since: str | None = None) -> str:
    """One readable line per day from the status view, worded after its state. `since`: when the
    command began (ISO, UTC), so a day it did not rebuild says so instead of repeating the counts
    of an earlier build."""
    text = _day_line(view, since)
    fetch = view.get("fetch") or {}
    checked = str(fetch.get("last_checked_at") or "")
    note = ""
    if fetch.get("last_check"):
        note = f"  (last checked against the API {checked[:16].replace('T', ' ')} UTC: {fetch['last_check']})"
    # The lookback fetched it (never fetched, or failed) and has not re-checked it since. Both
    # times are to the second: a re-check in the same second as the fetch comes after it.
    if fetch.get("lookback_fetch") and str(fetch.get("lookback_fetch_at")) > checked:
        note = f"  ({fetch['lookback_fetch']})"
    head, sep, warnings = text.partition("  warnings: ")
    return head + note + sep + warnings  # before the warnings, which can be long


def _day_line(view: dict[str, Any], since: str | None) -> str:
    state = day_state(view)
    if state == "built":
        return _built_line(view, since)
    return _STATE_LINES.get(state, _fetch_line)(view)


def _built_line(view: dict[str, Any], since: str | None) -> str:
    build = view.get("days") or {}
    rows = build.get("rows", 0)
    text = f"{view['date']}  built      {rows:>6} {agreeing(rows, 'row', 'rows')}  snapshot {build.get('snapshot_date')}"
    text += _last_build(build, since)
    if build.get(NEED):
        text += f"  ({'rebuild' if build[NEED] == BUILD else 'gate check'} pending)"
    if unknown := unknown_usage(view):
        text += f"  usage unknown: {unknown}"
    warnings = build.get("warnings") or []
    return text + (f"  warnings: {'; '.join(warnings)}" if warnings else "")


def _last_build(build: dict[str, Any], since: str | None) -> str:
    """What the day's last build changed, or that this command (begun at `since`) left it alone."""
    built_at = str(build.get("built_at") or "")
    if since is not None and built_at < since:
        return f"  unchanged: nothing to rebuild (last built {built_at[:16].replace('T', ' ')} UTC)"
    return (
        f"  last build: {build.get('inserted', 0)} new, {build.get('updated', 0)} updated,"
        f" {build.get('deleted', 0)} removed"
    )


def _waiting_line(view: dict[str, Any]) -> str:
    # The quality gate runs when a snapshot arrives; quarantined records are said now too.
    build, usage = view.get("days") or {}, view.get("usage") or {}
    quarantined = int(usage.get("quarantined") or 0)
    unknown = unknown_usage(view)
    return (
        f"{view['date']}  waiting    usage staged ({_count(usage.get('staged', 0), 'record')}"
        + (f", {quarantined} quarantined" if quarantined else "")
        + (f"; usage unknown: {unknown}" if unknown else "")
        + f"); {build.get('reason')} (drop one: python -m shared.cli crm-drop FILE)"
    )


def _blocked_line(view: dict[str, Any]) -> str:
    return (
        f"{view['date']}  blocked    quality gate: {'; '.join((view.get('days') or {}).get('errors') or [])}"
    )


def _staged_line(view: dict[str, Any]) -> str:
    return f"{view['date']}  staged     {_count((view.get('usage') or {}).get('staged'), 'record')}, not built yet"


def _count(value: Any, noun: str) -> str:
    """A stored count in words; a value that is not one (missing) as it was always said."""
    return counted(value, noun) if isinstance(value, int) else f"{value} {noun}s"


def _incomplete_line(view: dict[str, Any]) -> str:
    fetch = view.get("fetch") or {}
    return f"{view['date']}  fetch incomplete: {fetch.get('last_error')}; the next run resumes it"


def _scheduled_line(view: dict[str, Any]) -> str:
    return f"{view['date']}  fetch scheduled: {(view.get('fetch') or {}).get('waiting_for')}"


def _interrupted_line(view: dict[str, Any]) -> str:
    fetch, day = view.get("fetch") or {}, view["date"]
    stopped = str(fetch.get("interrupted_at") or "")
    how = f"stopped {stopped[:16].replace('T', ' ')} UTC by Ctrl-C or kill; " if stopped else ""
    return (
        f"{day}  fetch interrupted (started {str(fetch.get('started_at'))[:16]}; {how}the next run"
        f" resumes it: python -m shared.cli run --date {day})"
    )


def _fetch_line(view: dict[str, Any]) -> str:
    """Any other state: the fetch's own status, if there is a fetch at all."""
    fetch = view.get("fetch") or {}
    if not fetch:
        return f"{view['date']}  nothing yet"
    return f"{view['date']}  fetch {fetch.get('status')}" + (
        f": {fetch.get('error')}" if fetch.get("error") else ""
    )


_STATE_LINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "waiting": _waiting_line,
    "blocked": _blocked_line,
    "staged": _staged_line,
    "fetch incomplete": _incomplete_line,
    "fetch scheduled": _scheduled_line,
    "fetch interrupted": _interrupted_line,
}


def unknown_usage(view: dict[str, Any]) -> str:
    """The day's companies whose usage is unknown (a record refused for its counts: NULL, never
    0, and no churn flag from it), as the ledger names them: "2 companies (H-001, H-007)"; empty
    when there are none."""
    usage = view.get("usage") or {}
    count = int(usage.get("unknown") or 0)
    if not count:
        return ""
    listed = usage.get("unknown_companies")
    named = [str(c) for c in listed] if isinstance(listed, list) else []
    more = " and others" if count > len(named) and named else ""
    return f"{count} {'company' if count == 1 else 'companies'}" + (
        f" ({', '.join(named)}{more})" if named else ""
    )


def day_state(view: dict[str, Any]) -> str:
    build, usage, fetch = view.get("days") or {}, view.get("usage") or {}, view.get("fetch") or {}
    if build.get("status") in ("built", "waiting"):
        return str(build["status"])
    if build.get("status") == "gate_failed":
        return "blocked"
    if build.get("status") == "failed":
        return "build failed"
    if usage:
        return "staged"
    if fetch.get("status") == "waiting":
        return "fetch scheduled"
    if fetch.get("status") == "running":
        if fetch.get("last_error"):
            return "fetch incomplete"
        # A fetch that died holds its lease until it expires: then it says so, not `fetching`.
        return "fetch interrupted" if lease_expired(fetch, datetime.now(UTC)) else "fetching"
    return f"fetch {fetch['status']}" if fetch.get("status") else "-"


def day_rules(view: dict[str, Any]) -> Rules | None:
    """The rules the day was built (or is waiting) under, as its ledger entry recorded them."""
    return Rules.decode((view.get("days") or {}).get("rules"))


_TABLE_HEADER = (
    "DATE",
    "USAGE",
    "SNAPSHOT",
    "STATE",
    "ROWS",
    "UNKNOWN",
    "RULES",
    "WARN",
    "ERR",
    "LAST RUN",
    "AT (UTC)",
    "API CHECKED (UTC)",
)


def status_table(views: Sequence[dict[str, Any]], in_force: Rules | None = None) -> str:
    """The per-day table of `status`: what is staged, what was built from what, under which
    rules, and by which run."""
    lines = _aligned(_TABLE_HEADER, [_table_row(view, in_force) for view in views])
    notes = [*_day_notes(views), *_unknown_note(views), *_rules_notes(views, in_force)]
    return "\n".join(lines + (["", *notes] if notes else []))


def _table_row(view: dict[str, Any], in_force: Rules | None) -> tuple[str, ...]:
    build, usage, fetch = view.get("days") or {}, view.get("usage") or {}, view.get("fetch") or {}
    when = str(build.get("built_at") or usage.get("loaded_at") or fetch.get("finished_at") or "-")[:16]
    return (
        view["date"],
        f"{usage['staged']} (+{usage.get('quarantined', 0)} q)" if usage else "-",
        build.get("snapshot_date") or "-",
        day_state(view),
        str(build.get("rows", "-")) if build.get("status") == "built" else "-",
        str(int(usage.get("unknown") or 0)) if usage else "-",
        _rules_cell(view, in_force),
        str(len(build.get("warnings") or [])),
        str(len(build.get("errors") or []) + bool(_fetch_problem(fetch))),
        build.get("run_id") or usage.get("run_id") or fetch.get("run_id") or "-",
        when.replace("T", " "),
        _checked_cell(fetch),
    )


def _aligned(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """The header and the rows in columns as wide as their widest cell."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _day_notes(views: Sequence[dict[str, Any]]) -> list[str]:
    """Under the table, each day's fetch problem, errors and warnings, one a line."""
    return [
        printable(f"{view['date']}: {note}")
        for view in views
        for note in [
            *[p for p in [_fetch_problem(view.get("fetch") or {}), _fetch_note(view)] if p],
            *((view.get("days") or {}).get("errors") or []),
            *((view.get("days") or {}).get("warnings") or []),
        ]
    ]


def _unknown_note(views: Sequence[dict[str, Any]]) -> list[str]:
    unknown = [f"{view['date']} {unknown_usage(view)}" for view in views if unknown_usage(view)]
    if not unknown:
        return []
    return [
        "UNKNOWN: companies whose record of the day was refused for its counts: their usage that"
        " day is NULL (never 0) and they cannot be flagged from it (is_churn_risk is empty where"
        " the rule would flag them):"
        f" {'; '.join(unknown)}"
    ]


def _rules_notes(views: Sequence[dict[str, Any]], in_force: Rules | None) -> list[str]:
    """The legend of the RULES column, and the days decided under other rules than `in_force`."""
    if in_force is None:
        return []
    notes = [f"RULES: {RULES_LEGEND}; in force: {in_force.short()} ({in_force.describe()})"]
    stale = [v["date"] for v in views if _rules_cell(v, in_force).endswith("*")]
    if stale:
        notes.append(
            f"* {counted(len(stale), 'day')} {agreeing(len(stale), 'was', 'were')} decided under other rules;"
            " the next build rebuilds them,"
            " or now: python -m shared.cli rebuild"
        )
    return notes


def _fetch_note(view: dict[str, Any]) -> str | None:
    """What to know of an unfinished fetch that is not an error: stopped by a signal (and what
    to do), or scheduled by the API's wait (and when it runs)."""
    fetch, state = view.get("fetch") or {}, day_state(view)
    if state == "fetch interrupted" and fetch.get("interrupted_at"):
        stopped = str(fetch["interrupted_at"])[:16].replace("T", " ")
        return (
            f"fetch interrupted {stopped} UTC by Ctrl-C or kill; the next run resumes it:"
            f" python -m shared.cli run --date {view['date']}"
        )
    if fetch.get("status") == "waiting" and fetch.get("retry_at"):
        # Also under a built day: its rows are from the last fetch until the new one lands.
        # To the second: a command run in the minute but before the second does not run it yet.
        retry_at = str(fetch["retry_at"])[:19].replace("T", " ")
        kept = " (the rows shown are from the last fetch until then)" if state != "fetch scheduled" else ""
        return f"fetch scheduled: runs again at {retry_at} UTC, as the API asked (Retry-After){kept}"
    return None


def _fetch_problem(fetch: dict[str, Any]) -> str | None:
    """Why a day's fetch failed or is unfinished, as the ledger says: shown under the table, not
    only in --json (issue 23 item 5)."""
    if fetch.get("status") == "failed":
        return f"fetch failed: {fetch.get('error')}"
    if fetch.get("status") == "running" and fetch.get("last_error"):
        return f"fetch incomplete: {fetch.get('last_error')}"
    return None


def _checked_cell(fetch: dict[str, Any]) -> str:
    """When the lookback last compared the day with the API, and what it found."""
    if not fetch.get("last_check"):
        return "-"
    return f"{str(fetch.get('last_checked_at'))[:16].replace('T', ' ')} {fetch['last_check']}"


def _rules_cell(view: dict[str, Any], in_force: Rules | None) -> str:
    if (view.get("days") or {}).get("status") not in RULED_STATES:
        return "-"
    rules = day_rules(view)
    text = rules.short() if rules else "?"
    return text + ("*" if in_force is not None and rules != in_force else "")


def file_line(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "not loaded"
    if entry.get("status") == "rejected":
        return f"rejected ({entry.get('reason')}); nothing staged, the file is in {entry.get('quarantine') or 'quarantine'}"
    if entry.get("status") == "failed":
        return f"not staged: {entry.get('reason')}"
    status = entry.get("status")
    text = f"snapshot {entry.get('snapshot_date')} {status}: {_count(entry.get('staged'), 'row')}"
    if status == "unchanged":
        text += ", the same as already staged: nothing to rebuild"
    quarantined = int(entry.get("quarantined") or 0)
    text += f", {quarantined} quarantined" + (
        f" ({entry['quarantine']})" if quarantined and entry.get("quarantine") else ""
    )
    warnings = entry.get("warnings") or []
    return text + (f"; warnings: {'; '.join(warnings)}" if warnings else "")


def day_problem(view: dict[str, Any]) -> str | None:
    """Why a requested day failed, from its state (alerts may have been sent by an earlier run)."""
    build, fetch = view.get("days") or {}, view.get("fetch") or {}
    if fetch.get("status") == "failed":
        return f"{view['date']}: fetch failed: {fetch.get('error')}"
    if fetch.get("status") == "running" and fetch.get("last_error"):
        return f"{view['date']}: fetch incomplete: {fetch.get('last_error')}"
    if build.get("status") == "gate_failed":
        return f"{view['date']} not built: {'; '.join(build.get('errors') or [])}"
    if build.get("status") == "failed":
        return f"{view['date']} not built: {build.get('reason')}"
    return None


def crm_table(snapshots: Sequence[dict[str, Any]], files: Sequence[dict[str, Any]]) -> str:
    """The CRM side of `status`: every staged snapshot and the days it serves, then every
    dropped file that was not staged (rejected, superseded) with its reason."""
    if not snapshots and not files:
        return "\nCRM: no snapshot dropped yet (python -m shared.cli crm-drop FILE)"
    header = ("CRM SNAPSHOT", "FILE", "COMPANIES", "QUARANTINED", "EFFECTIVE FOR")
    rows = [
        (
            s["snapshot_date"],
            printable(str(s.get("file") or "-")),  # a file name may hold anything
            str(s.get("companies", "-")),
            str(s.get("quarantined") or 0),
            f"{s['effective_from']} .. {s['effective_to']}"
            if s.get("effective_from")
            else "no day (a later one serves them)",
        )
        for s in snapshots
    ]
    lines = [""]
    if rows:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]
        ]
    others = [f for f in files if f.get("status") not in ("staged", "unchanged")]
    for file in others:
        lines.append(printable(f"{file.get('blob')}: {file_line(file)}"))
    quarantined = [
        f for f in files if f.get("status") in ("staged", "unchanged") and int(f.get("quarantined") or 0)
    ]
    for file in quarantined:
        lines.append(
            printable(
                f"{file.get('blob')}: {counted(int(file['quarantined']), 'row')} quarantined ({file.get('quarantine')})"
            )
        )
    return "\n".join(lines)
