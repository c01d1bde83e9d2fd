"""Why a dashboard and the API disagree: one day (or one company on it) compared across the four
places its numbers pass through, each difference explained in words.

The sources, in the order the data flows: what the API answers now, the pages the day's last
fetch landed, the rows staged from them, and the analytics rows built from staging. Pure: the
service (`shared/services/reconcile.py`) gathers them and changes nothing anywhere.

A *difference* is a company whose numbers are not the same in two sources (the API corrected
the day after our fetch, a record was quarantined, staging is ahead of the table); it makes the
verdict "differ". When nothing differs but the API could not be asked, the verdict is
"incomplete": the stored sources agree, and nobody can say they match the API. A *note* explains a number that agrees but might surprise (a page-drift
duplicate removed, a company that is not in the CRM snapshot, a CRM company without usage).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from shared.domain.days import ROLLING_DAYS
from shared.domain.ledger_records import DayRecord, from_data
from shared.domain.rules import Rules
from shared.domain.usage_records import record_problem, row_of, valid_row
from shared.domain.wording import counted

Verdict = Literal["agree", "differ", "incomplete"]
Counts = tuple[int, int]  # active_users, events
UNKNOWN_USAGE = "unknown (NULL)"  # how a row's NULL usage reads: refused, never 0


@dataclass(frozen=True)
class LandedRecord:
    """One record of a landed page, where it was."""

    page: int
    index: int
    record: Any


@dataclass(frozen=True)
class Quarantined:
    reason: str
    path: str  # quarantine/raw/<page blob>/<run>/rejected-records.jsonl


@dataclass(frozen=True)
class Fetch:
    """The day's last fetch, as its manifest and the ledger say."""

    run_id: str
    fetched_at: str
    manifest: str
    status: str  # running, complete, failed
    last_checked: str | None = None  # when the lookback last compared the day with the API, and what it found
    retry_at: str | None = None  # when its fetch (or re-check) runs again: the API asked to wait


@dataclass
class DaySources:
    day: date
    # What the API answers now; None when it was not asked or could not be (`api_error` says why).
    api: list[Any] | None
    api_error: str | None
    fetch: Fetch | None
    landed: list[LandedRecord]
    quarantine: Mapping[tuple[int, int], Quarantined]  # (page, index) -> why and where
    staged: Mapping[str, Counts]
    staged_run: str | None  # the run whose pages are staged
    analytics: Mapping[str, Mapping[str, Any]]  # company_id -> the analytics row
    day_state: Mapping[str, Any] | None  # the ledger's days/<day> entry
    snapshot_companies: frozenset[str] = frozenset()  # companies of the effective snapshot
    # company_id -> the days of the rolling window ending on `day` on which its usage is unknown,
    # and why (stg.usage_unknown: a record of it was refused for its counts and none was staged;
    # the row of such a day has NULL usage, contract section 3)
    unknown: Mapping[str, Sequence[tuple[date, str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    company_id: str | None  # None: about the whole day
    kind: str
    text: str
    difference: bool


@dataclass
class CompanyView:
    """One company's numbers in each source (None: no record or row there)."""

    company_id: str
    api: Counts | None = None
    landed: Counts | None = None
    staged: Counts | None = None
    analytics: Counts | None = None
    unknown: bool = False  # the table's row has NULL usage: unknown, its record refused


@dataclass
class Reconciliation:
    day: date
    company: str | None
    verdict: Verdict
    summary: dict[str, Any]
    companies: list[CompanyView] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    explanation: list[str] = field(default_factory=list)  # one company's numbers, in words

    @property
    def differences(self) -> list[Finding]:
        return [f for f in self.findings if f.difference]


def reconcile_day(sources: DaySources, company: str | None = None) -> Reconciliation:
    """Compare the sources company by company (or for `company` alone) and explain."""
    iso = sources.day.isoformat()
    findings: list[Finding] = _day_findings(sources)
    api = _first_valid(((r, None) for r in sources.api or []), iso) if sources.api is not None else None
    landed = _first_valid(((r.record, r) for r in sources.landed), iso)
    ids = set(sources.staged) | set(sources.analytics) | set(landed.values) | set(landed.problems)
    if api is not None:
        ids |= set(api.values)
    if company is not None:
        ids = {company}
    views = []
    for company_id in sorted(ids):
        view = CompanyView(
            company_id,
            api=api.values.get(company_id) if api is not None else None,
            landed=landed.values.get(company_id),
            staged=sources.staged.get(company_id),
            analytics=_counts(sources.analytics.get(company_id)),
            unknown=_usage_unknown(sources.analytics.get(company_id)),
        )
        views.append(view)
        findings += _company_findings(view, sources, api is not None, landed)
    if company is not None and _nowhere(views[0], landed):
        findings.append(_unknown_company(company, iso, api is not None))
    verdict: Verdict = (
        "differ" if any(f.difference for f in findings) else "incomplete" if sources.api_error else "agree"
    )
    summary = _day_summary(sources, views, findings)
    return Reconciliation(sources.day, company, verdict, summary, views, findings)


def _day_summary(sources: DaySources, views: list[CompanyView], findings: list[Finding]) -> dict[str, Any]:
    """The day's counts and states, source by source, for the summary of a reconciliation."""
    return {
        "api_records": len(sources.api) if sources.api is not None else None,
        "api_error": sources.api_error,
        "landed_records": len(sources.landed),
        "landed_by": sources.fetch.run_id if sources.fetch else None,
        "fetched_at": sources.fetch.fetched_at if sources.fetch else None,
        "last_checked": sources.fetch.last_checked if sources.fetch else None,
        "staged_rows": len(sources.staged),
        "quarantined": len(sources.quarantine),
        "analytics_rows": len(sources.analytics),
        "usage_unknown": sum(1 for row in sources.analytics.values() if _usage_unknown(row)),
        "churn_cannot_tell": sum(1 for row in sources.analytics.values() if row.get("is_churn_risk") is None),
        "companies_compared": len(views),
        "companies_differing": len({f.company_id for f in findings if f.difference and f.company_id}),
        "day_state": _day(sources).status or "not built",
    }


# --- the day as a whole ----------------------------------------------------------------------


def _day_findings(sources: DaySources) -> list[Finding]:
    iso = sources.day.isoformat()
    found = []
    if sources.api_error:
        found.append(
            Finding(
                None,
                "api_not_asked",
                f"the API could not be asked ({sources.api_error}): only the stored sources were compared",
                False,
            )
        )
    if sources.fetch is None:
        found.append(
            Finding(
                None,
                "not_fetched",
                f"{iso} was never fetched: run it (python -m shared.cli run --date {iso})",
                True,
            )
        )
    elif sources.fetch.status != "complete":
        done = "failed" if sources.fetch.status == "failed" else "did not finish"
        advice = f"run the day again (python -m shared.cli run --date {iso})"
        if sources.fetch.retry_at:
            done, advice = "is scheduled", _scheduled(sources.fetch.retry_at)
        found.append(
            Finding(
                None, "fetch_unfinished", f"the last fetch ({sources.fetch.run_id}) {done}: {advice}", True
            )
        )
    if sources.fetch is not None and not sources.staged and sources.staged_run is None:
        found.append(Finding(None, "no_usage_staged", "no usage staged yet for this day", True))
    if sources.staged_run and sources.fetch and sources.staged_run != sources.fetch.run_id:
        found.append(
            Finding(
                None,
                "staging_behind",
                f"staging holds {sources.staged_run}'s records; the last fetch {sources.fetch.run_id} is not staged",
                True,
            )
        )
    state = _day(sources)
    if state.status == "waiting":
        found.append(Finding(None, "waiting", f"the day is not built: {state.reason}", bool(sources.staged)))
    elif state.status == "gate_failed":
        errors = "; ".join(state.errors)
        found.append(
            Finding(
                None,
                "blocked",
                f"the quality gate blocked the day ({errors}); its rows, if any, are from an earlier build",
                True,
            )
        )
    if state.pending == "build":
        found.append(
            Finding(
                None, "rebuild_pending", "a rebuild of the day is pending: the table is behind staging", True
            )
        )
    return found


# --- company by company ----------------------------------------------------------------------


def _nowhere(view: CompanyView, landed: _Valid) -> bool:
    """No source has a number for the company, and no landed record of it was set aside."""
    numbers = (view.api, view.landed, view.staged, view.analytics)
    return all(n is None for n in numbers) and not view.unknown and not landed.problems.get(view.company_id)


def _unknown_company(company: str, iso: str, api_asked: bool) -> Finding:
    places = (
        "the API's answer, the landed pages, staging or the table"
        if api_asked
        else "the landed pages, staging or the table"
    )
    return Finding(
        company,
        "unknown_company",
        f"{company} has no record on {iso} in {places} (company ids are case-sensitive)",
        True,
    )


@dataclass
class _Valid:
    values: dict[str, Counts]  # the first valid record per company, as staging keeps it
    problems: dict[str, list[tuple[LandedRecord | None, str]]]  # records staging set aside, and why
    repeats: dict[str, list[LandedRecord | None]]  # identical later copies (page drift)


def _first_valid(records: Iterable[tuple[Any, LandedRecord | None]], iso: str) -> _Valid:
    """Staging's own choice, applied again: the first valid record of a company wins, an
    identical repeat is page drift, a different one is quarantined."""
    found = _Valid({}, {}, {})
    for record, where in records:
        row = valid_row(record, iso)
        if row is None:
            problem = record_problem(record, iso)
            if problem is not None:
                key = _loose_id(record)
                found.problems.setdefault(key, []).append((where, problem))
                continue
            row = row_of(record)
        company_id, counts = row[0], (row[1], row[2])
        seen = found.values.get(company_id)
        if seen is None:
            found.values[company_id] = counts
        elif seen == counts:
            found.repeats.setdefault(company_id, []).append(where)
        else:
            found.problems.setdefault(company_id, []).append(
                (where, f"conflicting duplicate of company_id {company_id}")
            )
    return found


def _scheduled(when: str) -> str:
    """The advice for a day whose fetch the API asked to wait for: when it runs, not a force."""
    return (
        f"the API asked to wait, and it runs again at {when} (the first run, backfill or crm-drop"
        " after that time runs it); forcing it sooner only asks the API to wait again"
    )


def _company_findings(
    view: CompanyView, sources: DaySources, api_asked: bool, landed: _Valid
) -> list[Finding]:
    """Each step from the API to the analytics row where this company's numbers part."""
    return [
        *(_api_finding(view, sources) if api_asked and view.api != view.landed else []),
        *_landing_findings(view, sources, landed),
        *_staged_findings(view, sources),
    ]


def _api_finding(view: CompanyView, sources: DaySources) -> list[Finding]:
    """The API now against what our fetch landed."""
    when = sources.fetch.fetched_at if sources.fetch else "?"
    if view.landed is None and view.api is not None:
        text = f"the API now answers {_show(view.api)}, which our fetch at {when} did not land"
    elif view.api is None:
        text = f"the API no longer answers a record our fetch at {when} landed ({_show(view.landed)})"
    else:
        text = f"the API now answers {_show(view.api)} where our fetch at {when} landed {_show(view.landed)}"
    advice = f"replay it with force (python -m shared.cli run --date {sources.day.isoformat()} --force)"
    if sources.fetch is not None and sources.fetch.retry_at:
        advice = f"its re-check is scheduled: {_scheduled(sources.fetch.retry_at)}"
    message = f"{text}: the API corrected this day after our fetch; {advice}"
    return [Finding(view.company_id, "api_changed", message, True)]


def _landing_findings(view: CompanyView, sources: DaySources, landed: _Valid) -> list[Finding]:
    """What the landed pages held against what was staged from them."""
    company_id, found = view.company_id, []
    for where, problem in landed.problems.get(company_id, []):
        path = sources.quarantine.get((where.page, where.index)) if where else None
        place = f"page {where.page}, record {where.index}" if where else "a record"
        found.append(
            Finding(
                company_id,
                "quarantined",
                f"record quarantined ({place}): {problem}" + (f" ({path.path})" if path else ""),
                view.staged is None,  # a quarantined repeat beside a staged record changes nothing
            )
        )
    for where in landed.repeats.get(company_id, []):
        place = f"page {where.page}, record {where.index}" if where else "a record"
        found.append(
            Finding(
                company_id,
                "drift_duplicate",
                f"a page-drift duplicate was removed ({place} repeated it)",
                False,
            )
        )
    if view.landed != view.staged and view.landed is not None and view.staged is not None:
        message = f"staged {_show(view.staged)} but the last fetch landed {_show(view.landed)}"
        found.append(Finding(company_id, "staging_differs", message, True))
    return found


def _staged_findings(view: CompanyView, sources: DaySources) -> list[Finding]:
    """What was staged against the analytics row."""
    row = sources.analytics.get(view.company_id)
    if row is not None:
        return _row_notes(view.company_id, row, view, sources)
    if view.staged is not None and _day(sources).status == "built":
        message = f"staged {_show(view.staged)} but the day's table has no row"
        return [Finding(view.company_id, "row_missing", message, True)]
    return []


def _row_notes(
    company_id: str, row: Mapping[str, Any], view: CompanyView, sources: DaySources
) -> list[Finding]:
    found = []
    snapshot = row.get("crm_snapshot_date")
    if row.get("is_churn_risk") is None:
        found.append(_cannot_tell(company_id, sources))
    if view.unknown:
        return found + _unknown_notes(company_id, row, view, sources)
    expected = view.staged or (0, 0)
    if view.analytics != expected:
        found.append(
            Finding(
                company_id,
                "table_behind",
                f"the table says {_show(view.analytics)} but staging holds {_show(expected)}:"
                " the day was built before the latest staging",
                True,
            )
        )
    if (
        row.get("company_name") is None
        and row.get("country") is None
        and company_id not in sources.snapshot_companies
    ):
        found.append(
            Finding(
                company_id,
                "not_in_crm",
                f"not in the CRM snapshot of {snapshot}: name, country and industry tag are empty",
                False,
            )
        )
    if view.staged is None:
        found.append(
            Finding(
                company_id,
                "crm_only",
                f"row built from the CRM snapshot of {snapshot}: no usage this day, so 0 users and 0 events",
                False,
            )
        )
    return found


def _unknown_notes(
    company_id: str, row: Mapping[str, Any], view: CompanyView, sources: DaySources
) -> list[Finding]:
    """A row with NULL usage: explained when staging says the company's record was refused; a
    difference when staging holds a record (the table is behind) or knows of no refusal."""
    iso = sources.day.isoformat()
    if view.staged is not None:
        return [
            Finding(
                company_id,
                "table_behind",
                f"the table says usage {UNKNOWN_USAGE} but staging holds {_show(view.staged)}:"
                " the day was built before the latest staging",
                True,
            )
        ]
    reason = dict(sources.unknown.get(company_id, ())).get(sources.day)
    if reason is None:
        return [
            Finding(
                company_id,
                "table_behind",
                f"the table says usage {UNKNOWN_USAGE} but staging knows of no refused record of {iso}:"
                " the day was built before the latest staging",
                True,
            )
        ]
    return [
        Finding(
            company_id,
            "usage_unknown",
            f"usage of {iso} {UNKNOWN_USAGE}, not 0: its record was refused ({reason})",
            False,
        )
    ]


def _cannot_tell(company_id: str, sources: DaySources) -> Finding:
    """A NULL churn flag: the rule would flag the company, on a window with refused usage."""
    return Finding(
        company_id,
        "churn_cannot_tell",
        f"is_churn_risk empty: {cannot_tell(sources.unknown.get(company_id, ()))}",
        False,
    )


def cannot_tell(unknown_days: Sequence[tuple[date, str]]) -> str:
    """Why a churn flag is NULL, in words: which days' usage was refused, and why."""
    refused = "; ".join(
        f"usage of {d.isoformat()} refused, record quarantined: {reason}" for d, reason in unknown_days
    )
    return (
        f"cannot tell: {refused or 'usage refused on a day of the window'};"
        " with it counted as 0 the rule would flag the company"
    )


# --- one company's row, every number explained ------------------------------------------------


def explain_row(
    row: Mapping[str, Any],
    window: Sequence[tuple[date, int, int]],
    observed_days: Sequence[date],
    rules: Rules | None,
    unknown: Sequence[tuple[date, str]] = (),
) -> list[str]:
    """Each number of an analytics row in words, from what it was computed from: `window` is the
    company's staged usage over the rolling window, `observed_days` the days in it with a staged
    dataset, `rules` the rules the day was built under, `unknown` the days in it whose usage is
    unknown (a record refused for its counts) and why."""
    day: date = row["activity_date"]
    first = day - timedelta(days=ROLLING_DAYS - 1)
    by_day = {d: (users, events) for d, users, events in window}
    refused = {d: reason for d, reason in unknown if d not in by_day}
    days = [first + timedelta(days=n) for n in range(ROLLING_DAYS)]
    users = ["?" if d in refused else str(by_day.get(d, (0, 0))[0]) for d in days]
    events = ["?" if d in refused else str(by_day.get(d, (0, 0))[1]) for d in days]
    lines = []
    lines.append(_crm_line(row, day, rules))
    lines.append(_usage_line(row, day, by_day, refused))
    lines.append(_ratio_line(row))
    terms = " + ".join(users)
    lines.append(
        f"rolling_7d_active_users {row['rolling_7d_active_users']} (user-days): {terms} over {first} .. {day}"
        + _missing(days, by_day, refused)
    )
    lines.append(f"rolling_7d_events {row['rolling_7d_events']}: {' + '.join(events)}")
    observed = sorted(set(observed_days))
    lines.append(
        f"usage_days_observed_7d {row['usage_days_observed_7d']}: days with a staged usage dataset:"
        f" {', '.join(d.isoformat() for d in observed) or 'none'}"
        + (
            " (fewer than 7: the rolling sums cover fewer days than their name says)"
            if len(observed) < ROLLING_DAYS
            else ""
        )
    )
    if "usage_unknown_7d" in row:
        lines.append(
            f"usage_unknown_7d {row['usage_unknown_7d']}: days whose usage is unknown (a record refused"
            f" for its counts): {', '.join(d.isoformat() for d in sorted(refused)) or 'none'}"
        )
    lines.append(_contact_line(row, day))
    lines.append(_churn(row, rules, sorted(refused.items())))
    lines.append(
        f"written by run {row.get('pipeline_run_id')} at {row.get('loaded_at')} UTC (the row's last change)"
    )
    return lines


def _crm_line(row: Mapping[str, Any], day: date, rules: Rules | None) -> str:
    snapshot = row.get("crm_snapshot_date")
    if row.get("company_name") is None and row.get("country") is None:
        return f"CRM columns: empty: the company is not in the snapshot of {snapshot}"
    return (
        f"CRM columns: from the snapshot of {snapshot} (the latest on or before {day}"
        + (f", at most {counted(rules.crm_max_snapshot_age_days, 'day')} old" if rules else "")
        + f"): {row.get('company_name')}, {row.get('country')}, {row.get('industry_tag')}"
    )


def _usage_line(
    row: Mapping[str, Any], day: date, by_day: Mapping[date, tuple[int, int]], refused: Mapping[date, str]
) -> str:
    if row.get("active_users") is None:
        return (
            f"active_users, events: empty: usage of {day} unknown, not 0: its record was refused"
            f" ({refused.get(day, 'the reason is not staged')})"
        )
    return f"active_users {row['active_users']}, events {row['events']}: the staged usage of {day}" + (
        "" if day in by_day else " (no record: 0)"
    )


def _ratio_line(row: Mapping[str, Any]) -> str:
    if row.get("events_per_user") is None:
        zero_or_unknown = "unknown" if row.get("active_users") is None else "0"
        return f"events_per_user: empty, as active_users is {zero_or_unknown}"
    return (
        f"events_per_user {row['events_per_user']}: {row['events']} / {row['active_users']},"
        " rounded half away from zero to 4 places"
    )


def _contact_line(row: Mapping[str, Any], day: date) -> str:
    contact = row.get("last_contact_at")
    if contact is None:
        return "days_since_last_contact: empty: never contacted (or not in the CRM)"
    contact_day = contact.date() if hasattr(contact, "date") else contact
    if contact_day > day:  # late evening west of UTC is the next day in UTC
        return (
            f"days_since_last_contact {row['days_since_last_contact']}: the last contact ({contact_day},"
            f" UTC) is after {day}: counted 0, never fewer"
        )
    return f"days_since_last_contact {row['days_since_last_contact']}: {day} - {contact_day}"


def _churn(row: Mapping[str, Any], rules: Rules | None, refused: Sequence[tuple[date, str]] = ()) -> str:
    rolling, since = row["rolling_7d_active_users"], row.get("days_since_last_contact")
    if row["is_churn_risk"] is None:
        flag = cannot_tell(refused)
        if rules is None:
            return f"is_churn_risk empty: {flag} (the rules it was built under are not recorded)"
    else:
        flag = "at churn risk" if row["is_churn_risk"] else "not at churn risk"
    if rules is None:
        return f"is_churn_risk {row['is_churn_risk']}: {flag} (the rules it was built under are not recorded)"
    why = rules.churn.reason(rolling, since)
    if row["is_churn_risk"] is None:
        return f"is_churn_risk empty: {flag}: {why} (rules {rules.short()})"
    if refused:
        why += f"; usage unknown on {len(refused)} day(s), counted 0: more users could only keep it false"
    return f"is_churn_risk {row['is_churn_risk']}: {flag}: {why} (rules {rules.short()})"


# --- helpers -----------------------------------------------------------------------------------


def _counts(row: Mapping[str, Any] | None) -> Counts | None:
    """A row's usage; None also when it is unknown (NULL: `_usage_unknown` says so)."""
    if row is None or _usage_unknown(row):
        return None
    return int(row["active_users"]), int(row["events"])


def _usage_unknown(row: Mapping[str, Any] | None) -> bool:
    return row is not None and (row.get("active_users") is None or row.get("events") is None)


def _show(counts: Counts | None) -> str:
    return "no record" if counts is None else f"{counts[0]} users / {counts[1]} events"


def _loose_id(record: Any) -> str:
    """The company a rejected record names, as well as it can be read."""
    value = record.get("company_id") if isinstance(record, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else "(no company_id)"


def _missing(days: list[date], by_day: Mapping[date, Counts], refused: Mapping[date, str]) -> str:
    gaps = [d.isoformat() for d in days if d not in by_day and d not in refused]
    unknown = [d.isoformat() for d in days if d in refused]
    said = f" (no record on {', '.join(gaps)}: 0)" if gaps else ""
    return said + (
        f" (usage unknown on {', '.join(unknown)}, a record refused: counted 0)" if unknown else ""
    )


def _day(sources: DaySources) -> DayRecord:
    """The day's ledger entry (as status shows it) read as the typed record."""
    return from_data(DayRecord, sources.day_state)
