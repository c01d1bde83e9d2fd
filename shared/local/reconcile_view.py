"""How `reconcile` reads on a terminal: the verdict, the sources, each difference and note."""

from __future__ import annotations

from typing import Any

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
    who = f" {result['company_id']}" if result.get("company_id") else ""
    head = f"reconcile {result['date']}{who}: {_VERDICTS[result['verdict']]}"
    if result["verdict"] == "differ" and not who and s["companies_differing"]:
        head += f" ({s['companies_differing']} of {s['companies_compared']} companies)"
    if s["api_records"] is not None:
        api = f"API now: {s['api_records']} records"
    elif s["api_error"]:
        api = f"API could not be asked ({s['api_error']})"
    else:
        api = "API not asked (--skip-api)"
    landed = (
        f"landed by {s['landed_by']} at {s['fetched_at']}: {s['landed_records']} records"
        if s["landed_by"] and s["landed_records"]
        else "nothing landed"
    )
    if s.get("landed_by"):
        landed += (
            f"; last checked against the API {s['last_checked']}"
            if s.get("last_checked")
            else "; not re-checked against the API since"
        )
    lines = [
        head,
        f"  sources: {api}; {landed}; staged {s['staged_rows']} rows ({s['quarantined']} quarantined);"
        f" table {s['analytics_rows']} rows (day {s['day_state']})",
    ]
    if s.get("usage_unknown") or s.get("churn_cannot_tell"):
        unknown = int(s.get("usage_unknown") or 0)
        lines.append(
            f"  unknown usage: {unknown} {'company' if unknown == 1 else 'companies'} (a record refused:"
            f" NULL, not 0); churn flag cannot tell: {s.get('churn_cannot_tell', 0)}"
        )
    differences, notes = result["differences"], result["notes"]
    for finding in differences[:MAX_SHOWN]:
        lines.append(f"  {printable(finding['company_id'] or 'day'):<10} {printable(finding['text'])}")
    if len(differences) > MAX_SHOWN:
        lines.append(f"  ... and {len(differences) - MAX_SHOWN} more differences (--json lists them all)")
    if notes:
        lines.append("  notes (numbers that agree, explained):")
        for finding in notes[:MAX_SHOWN]:
            lines.append(f"  {printable(finding['company_id'] or 'day'):<10} {printable(finding['text'])}")
        if len(notes) > MAX_SHOWN:
            lines.append(f"  ... and {len(notes) - MAX_SHOWN} more notes")
    for company in result.get("companies") or []:
        lines.append(
            f"  {printable(company['company_id'])}: API {_counts(company['api'])} | landed {_counts(company['landed'])}"
            f" | staged {_counts(company['staged'])} | table"
            f" {'unknown (NULL)' if company.get('unknown') else _counts(company['analytics'])}"
        )
    if result.get("explanation"):
        lines.append("  every number of the row:")
        lines += [f"    {line}" for line in result["explanation"]]
    return "\n".join(lines)


def _counts(value: Any) -> str:
    return "-" if value is None else f"{value[0]} users/{value[1]} events"
