"""The quality gate (contract section 5): checks a day's staged usage before the day is built."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from shared.domain.usage_records import RejectedRecord, reason_kind, shown
from shared.domain.wording import counted

MAX_QUARANTINED_SHARE = 0.05
# A share needs a sample: 2 bad records among 38 is 5.3% but says little about the API. Below
# this many received records an excess share is a warning, not an error (contract section 5).
MIN_RECORDS_FOR_SHARE_ERROR = 100
DROP_ERROR = 0.50
DROP_WARNING = 0.10
BASELINE_DAYS = 7
# Coverage (contract section 5): the share of a day's usage companies the CRM snapshot holds.
COVERAGE_ERROR = 0.50  # below this an error, once the day has MIN_COMPANIES_FOR_COVERAGE_ERROR
COVERAGE_WARNING = 0.90  # below this a warning
MIN_COMPANIES_FOR_COVERAGE_ERROR = 20
# Format drift: one kind of reason for most of a day's quarantined records, at least this many of
# them and more than MAX_QUARANTINED_SHARE of the day (one odd record is not a format change).
DRIFT_MIN_RECORDS = 3
# The ledger's summary of a day's quarantined usage records stays small (an Azure Table property
# holds 64 KiB): this many companies, kinds of reason, and characters of an example.
SUMMARY_COMPANIES = 5
SUMMARY_KINDS = 8
SUMMARY_TEXT = 120
FORCE_ADVICE = "replay the day with force to override"


@dataclass(frozen=True)
class GateResult:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    overridden: bool = False  # a forced replay let the errors through
    advice: str = ""  # what to do about the errors, when a forced replay is not it

    @property
    def passed(self) -> bool:
        return not self.errors or self.overridden


def check_snapshot_size(
    companies: int, previous: int | None, previous_date: date | None
) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a CRM snapshot of `companies` rows against the one before it: a
    snapshot that lost more than half its companies is more likely a broken export than a
    business event, so it does not replace the good one unless forced."""
    if not previous or companies >= previous:
        return [], []
    drop = (previous - companies) / previous
    text = f"{counted(companies, 'company', 'companies')}, down {drop:.0%} against the {previous} of the snapshot of {previous_date}"
    if drop > DROP_ERROR:
        return [text], []
    if drop > DROP_WARNING:
        return [], [text]
    return [], []


def summarize_quarantine(rejected: Sequence[RejectedRecord], files: Sequence[str] = ()) -> str:
    """The ledger's compact summary of a day's quarantined usage records, as JSON text (a ledger
    field is flat): `kinds`, `[kind, records, first reason, its company]` by count, at most
    SUMMARY_KINDS; `companies`, the first SUMMARY_COMPANIES companies named; `file`, the first
    quarantine file; `files`, how many there are. Empty text when nothing was quarantined."""
    if not rejected:
        return ""
    kinds: dict[str, list[Any]] = {}
    companies: list[str] = []
    for item in rejected:
        company = _company_label(item.record)
        kind = reason_kind(item.reason)
        if kind in kinds:
            kinds[kind][1] += 1
        else:
            kinds[kind] = [kind, 1, item.reason[:SUMMARY_TEXT], company]
        if company and company not in companies and len(companies) < SUMMARY_COMPANIES:
            companies.append(company)
    ordered = sorted(kinds.values(), key=lambda k: -int(k[1]))[:SUMMARY_KINDS]
    summary = {
        "kinds": ordered,
        "companies": companies,
        "file": files[0] if files else "",
        "files": len(files),
    }
    return json.dumps(summary, ensure_ascii=False, separators=(",", ":"))


def _company_label(record: Any) -> str | None:
    """The company a quarantined record names, printable: its id, or what was there instead."""
    value = record.get("company_id") if isinstance(record, dict) else None
    if isinstance(value, str):
        text = json.dumps(value.strip()[:SUMMARY_TEXT], ensure_ascii=False)[1:-1]
        return text.encode("utf-8", "backslashreplace").decode("utf-8") or None
    return None if value is None else shown(value)


def _summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    try:
        summary = json.loads(str(entry.get("quarantine_summary") or "{}"))
    except ValueError:
        return {}
    return summary if isinstance(summary, dict) else {}


@dataclass(frozen=True)
class Coverage:
    """What `coverage_day.sql` found for a day: of its usage companies, how many the effective
    snapshot does not hold exactly, how many of those it holds ignoring case and surrounding
    spaces, and a few of them (usage id, the snapshot's near match or None)."""

    snapshot_date: date
    companies: int
    unmatched: int
    near_matches: int = 0
    examples: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def from_rows(cls, snapshot_date: date, rows: Iterable[Mapping[str, Any]]) -> Coverage:
        rows = list(rows)
        if not rows:
            return cls(snapshot_date, 0, 0)
        first = rows[0]
        examples = tuple(
            (str(r["company_id"]), None if r["crm_company_id"] is None else str(r["crm_company_id"]))
            for r in rows
            if r.get("company_id") is not None
        )
        return cls(
            snapshot_date,
            int(first["usage_companies"]),
            int(first["unmatched"]),
            int(first["near_matches"] or 0),
            examples,
        )


def check_coverage(day: date, coverage: Coverage) -> tuple[list[str], list[str], str]:
    """(errors, warnings, advice) for the share of the day's usage companies found in its CRM
    snapshot: below 50% an error once the day has 20 companies, below 90% a warning."""
    companies, matched = coverage.companies, coverage.companies - coverage.unmatched
    if not companies or matched / companies >= COVERAGE_WARNING:
        return [], [], ""
    share = matched / companies
    text = (
        f"only {matched} of {counted(companies, 'company', 'companies')} with usage on {day} are in the CRM snapshot of"
        f" {coverage.snapshot_date} ({share:.0%}); the others get empty CRM columns and may be flagged at risk"
    )
    near = [(u, c) for u, c in coverage.examples if c is not None]
    advice = ""
    if coverage.near_matches and near:
        usage_id, crm_id = near[0]
        text += (
            f". {coverage.near_matches} of them match when case and surrounding spaces are ignored"
            f" (API {shown(usage_id)}, CRM {shown(crm_id)}): the API and the CRM write the ids"
            " differently. Make them write the same id (fix the CRM export, or the API), then drop"
            " the snapshot again; a forced replay cannot help: it would build the day with these"
            " companies unmatched"
        )
        advice = "make the API and the CRM write the same ids, then drop the snapshot again"
    else:
        missing = [u for u, c in coverage.examples if c is None][:3]
        if missing:
            text += f". Not found, for example: {', '.join(shown(u) for u in missing)}"
        text += ". Check that the CRM export is the whole customer list and the right file"
    if share < COVERAGE_ERROR and companies >= MIN_COMPANIES_FOR_COVERAGE_ERROR:
        if not advice:
            text += "; if it is, replay the day with force"
        return [text], [], advice
    return [], [text], advice


def _quarantine_text(
    day: date, entry: Mapping[str, Any], quarantined: int, received: int
) -> tuple[str, bool]:
    """What the day's quarantined records say, from the ledger's summary: a format change of
    the API when most share one kind of reason (True), else how many, whose, and why."""
    summary = _summary(entry)
    kinds = [k for k in summary.get("kinds") or [] if isinstance(k, list) and len(k) == 4]
    place = _quarantine_place(summary)
    drift = _format_change(day, kinds, quarantined, received, place)
    if drift is not None:
        return drift, True
    whose = _whose(summary, quarantined)
    why = "; ".join(str(k[2]) + (f" ({int(k[1])} records)" if int(k[1]) > 1 else "") for k in kinds[:3])
    text = (
        f"{quarantined} of {received} usage records quarantined ({quarantined / received:.1%}){whose}"
        + (f": {why}" if why else "")
        + f"; {_unknown_usage(day, entry)}{place}. Once the API sends them right, fetch the day again"
        f" ({_refetch(day)})"
    )
    return text, False


def _quarantine_place(summary: Mapping[str, Any]) -> str:
    """Where the quarantined records are, as a clause ("; the records are in quarantine/..."),
    or "" when the summary names no file."""
    where = str(summary.get("file") or "")
    files = int(summary.get("files") or 0)
    if not where:
        return ""
    return f"; the records are in quarantine/{where}" + (
        f" (and {files - 1} more files)" if files > 1 else ""
    )


def _format_change(day: date, kinds: list[Any], quarantined: int, received: int, place: str) -> str | None:
    """The format change the most common kind of reason shows, when it is most of the day's
    quarantined records and enough of them (never conflicting duplicates); else None."""
    top = kinds[0] if kinds else None
    if (
        top is None
        or str(top[0]) == "conflicting duplicate of company_id"
        or 2 * int(top[1]) <= quarantined
        or int(top[1]) < DRIFT_MIN_RECORDS
        or int(top[1]) / received <= MAX_QUARANTINED_SHARE
    ):
        return None
    kind, count, reason, company = str(top[0]), int(top[1]), str(top[2]), top[3]
    example = reason.split(": ", 1)[1] if ": " in reason else ""
    return (
        f"the usage API's format changed: {kind} in {count} of {received} records"
        + (f" (e.g. {example}" + (f" for company {company}" if company else "") + ")" if example else "")
        + f"; none of them is staged{place}. Have the API fixed, or the contract extended to"
        f" accept it, then fetch the day again ({_refetch(day)}); forcing before that cannot"
        " help: it builds the day with their usage unknown"
    )


def _whose(summary: Mapping[str, Any], quarantined: int) -> str:
    """The companies the quarantined records name, as a clause (", companies a, b and others")."""
    companies = [str(c) for c in summary.get("companies") or []]
    if not companies:
        return ""
    whose = f", {'company' if len(companies) == 1 else 'companies'} {', '.join(companies)}"
    return whose + (
        " and others" if quarantined > len(companies) and len(companies) >= SUMMARY_COMPANIES else ""
    )


def _refetch(day: date) -> str:
    """How to fetch a day again: a day already fetched is not fetched again without force."""
    return f"python -m shared.cli run --date {day} --force, or POST /api/replay with force"


def _unknown_usage(day: date, entry: Mapping[str, Any]) -> str:
    """What the refused records do to the table (contract section 3): the companies whose counts
    were refused have unknown usage that day (NULL, never 0), and cannot be flagged from it."""
    unknown = entry.get("unknown")
    if unknown is None:  # an entry staged before the ledger counted them
        return (
            f"a company whose counts were refused has unknown usage on {day} (NULL, never 0)"
            " and cannot be flagged at churn risk from it"
        )
    if int(unknown) == 0:
        return f"they add no row and no usage on {day}"
    who = "1 company" if int(unknown) == 1 else f"{int(unknown)} companies"
    them = "it" if int(unknown) == 1 else "they"
    return (
        f"the usage of {who} on {day} is unknown (NULL, never 0), and {them} cannot be flagged"
        " at churn risk from it"
    )


def check_day(
    day: date, usage: Mapping[str, Mapping[str, Any]], coverage: Coverage | None = None
) -> GateResult:
    """`usage` is the ledger's staged-usage entries by ISO date (staged, quarantined, force and
    the quarantine summary); `coverage` what the day's CRM snapshot holds of its companies
    (None: not checked, as for a day waiting for a snapshot)."""
    entry = usage[day.isoformat()]
    staged = int(entry.get("staged", 0))
    quarantined = int(entry.get("quarantined", 0))
    received = staged + quarantined
    errors: list[str] = []
    warnings: list[str] = []
    advice: list[str] = []

    drift = False
    text = ""
    if quarantined:
        text, drift = _quarantine_text(day, entry, quarantined, received)
        if drift:
            advice.append(
                f"have the API fixed or the contract extended, then fetch the day again ({_refetch(day)});"
                " forcing before that cannot help a format change"
            )
    if staged == 0:
        errors.append(
            f"zero usage records staged for {day}: "
            + (
                text
                if quarantined
                else "the API sent none for the day; if that is right, replay the day with force"
            )
        )
    elif quarantined:
        # Any quarantined record is said (contract section 5); above 5% of a day large enough
        # to judge, it stops the build.
        over = quarantined / received > MAX_QUARANTINED_SHARE
        if over and not drift:
            text += f" (above the {MAX_QUARANTINED_SHARE:.0%} limit)"
        (errors if over and received >= MIN_RECORDS_FOR_SHARE_ERROR else warnings).append(text)

    more_errors, more_warnings = _volume_drop(day, usage, staged)
    errors += more_errors
    warnings += more_warnings

    if coverage is not None:
        more_errors, more_warnings, coverage_advice = check_coverage(day, coverage)
        errors += more_errors
        warnings += more_warnings
        if more_errors and coverage_advice:
            advice.append(coverage_advice)

    return GateResult(
        errors, warnings, overridden=bool(errors) and bool(entry.get("force")), advice="; ".join(advice)
    )


def _volume_drop(
    day: date, usage: Mapping[str, Mapping[str, Any]], staged: int
) -> tuple[list[str], list[str]]:
    """The error or warning a drop of the day's staged records against the median of the
    previous BASELINE_DAYS staged days calls for: (errors, warnings)."""
    baseline = [
        int(usage[d]["staged"])
        for d in ((day - timedelta(days=n)).isoformat() for n in range(1, BASELINE_DAYS + 1))
        if d in usage
    ]
    if not baseline or not staged:
        return [], []
    median = statistics.median(baseline)
    if median <= 0:
        return [], []
    drop = (median - staged) / median
    text = (
        f"{staged} usage records, down {drop:.0%} against the median {median:g}"
        f" of the previous {counted(len(baseline), 'staged day')}"
    )
    if drop > DROP_ERROR:
        return [f"{text}; if the API really has fewer, replay the day with force"], []
    if drop > DROP_WARNING:
        return [], [text]
    return [], []
