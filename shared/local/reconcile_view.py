"""How `reconcile` reads on a terminal: the verdict, the sources, each difference and note."""

from __future__ import annotations

from typing import Any

from shared.domain.wording import counted
from shared.observability.redact import printable

MAX_SHOWN = 40  # differences listed; the rest are counted (--json has them all)
_VERDICTS = {
    "agree": "everything agrees",
    "differ": "differs",
    "incomplete": "incomplete: the stored sources agree, but the API could not be asked",
}


def reconcile_text(result: dict[str, Any]) -> str:
    """The JSON answer of GET /api/reconcile, as lines for a person."""
    s = result["summary"]
    lines = [
        _headline(result),
        f"  sources: {_api_source(s)}; {_landed_source(s)}; staged {_count(s['staged_rows'], 'row')}"
        f" ({s['quarantined']} quarantined); table {_count(s['analytics_rows'], 'row')} (day {s['day_state']})",
        *_unknown_line(s),
        *_findings(result["differences"], "differences (--json lists them all)"),
        *_notes(result["notes"]),
        *[_company_line(company) for company in result.get("companies") or []],
    ]
    if result.get("explanation"):
        lines.append("  every number of the row:")
        lines += [f"    {line}" for line in result["explanation"]]
    return "\n".join(lines)


def _count(value: Any, noun: str, plural: str = "") -> str:
    """A count of the answer in words (a value that is not a count as it is)."""
    return counted(value, noun, plural) if isinstance(value, int) else f"{value} {plural or noun + 's'}"


def _headline(result: dict[str, Any]) -> str:
    s = result["summary"]
    who = f" {result['company_id']}" if result.get("company_id") else ""
    head = f"reconcile {result['date']}{who}: {_VERDICTS[result['verdict']]}"
    if result["verdict"] == "differ" and not who and s["companies_differing"]:
        head += f" ({s['companies_differing']} of {_count(s['companies_compared'], 'company', 'companies')})"
    return head


def _api_source(s: dict[str, Any]) -> str:
    if s["api_records"] is not None:
        return f"API now: {_count(s['api_records'], 'record')}"
    if s["api_error"]:
        return f"API could not be asked ({s['api_error']})"
    return "API not asked (--skip-api)"


def _landed_source(s: dict[str, Any]) -> str:
    landed = (
        f"landed by {s['landed_by']} at {s['fetched_at']}: {_count(s['landed_records'], 'record')}"
        if s["landed_by"] and s["landed_records"]
        else "nothing landed"
    )
    if not s.get("landed_by"):
        return landed
    if s.get("last_checked"):
        return f"{landed}; last checked against the API {s['last_checked']}"
    return f"{landed}; not re-checked against the API since"


def _unknown_line(s: dict[str, Any]) -> list[str]:
    if not (s.get("usage_unknown") or s.get("churn_cannot_tell")):
        return []
    unknown = int(s.get("usage_unknown") or 0)
    return [
        f"  unknown usage: {unknown} {'company' if unknown == 1 else 'companies'} (a record refused:"
        f" NULL, not 0); churn flag cannot tell: {s.get('churn_cannot_tell', 0)}"
    ]


def _findings(findings: list[dict[str, Any]], what: str) -> list[str]:
    """The first MAX_SHOWN findings, one a line, then how many more `what` there are."""
    lines = [
        f"  {printable(finding['company_id'] or 'day'):<10} {printable(finding['text'])}"
        for finding in findings[:MAX_SHOWN]
    ]
    return lines + (
        [f"  ... and {len(findings) - MAX_SHOWN} more {what}"] if len(findings) > MAX_SHOWN else []
    )


def _notes(notes: list[dict[str, Any]]) -> list[str]:
    if not notes:
        return []
    return [
        "  notes (numbers that agree, explained):",
        *_findings(notes, "notes"),
    ]


def _company_line(company: dict[str, Any]) -> str:
    table = "unknown (NULL)" if company.get("unknown") else _counts(company["analytics"])
    return (
        f"  {printable(company['company_id'])}: API {_counts(company['api'])} | landed {_counts(company['landed'])}"
        f" | staged {_counts(company['staged'])} | table {table}"
    )


def _counts(value: Any) -> str:
    return "-" if value is None else f"{value[0]} users/{value[1]} events"
