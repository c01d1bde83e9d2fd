"""What `reconcile` may ask about (GET /api/reconcile and the CLI, which calls it): a finished day,
optionally one company on it, with or without a fresh look at the API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from shared.domain.days import parse_day, too_early, unfinished_day
from shared.domain.text_limits import MAX_COMPANY_ID, length_problem, too_long

KNOWN_PARAMETERS = frozenset({"date", "company_id", "api", "code"})  # code: the function key


class BadReconcileRequest(ValueError):
    """Answered with HTTP 400 and this one-line message."""


@dataclass(frozen=True)
class ReconcileRequest:
    day: date
    company: str | None
    ask_api: bool

    @classmethod
    def parse(cls, params: Mapping[str, str], today: date) -> ReconcileRequest:
        unknown = sorted(set(params) - KNOWN_PARAMETERS)
        if unknown:
            raise BadReconcileRequest(
                f"unknown parameter(s): {', '.join(unknown)}; known: date, company_id, api"
            )
        raw = params.get("date")
        if raw is None or not raw.strip():
            raise BadReconcileRequest("date is required: give the day to reconcile as YYYY-MM-DD")
        try:
            day = parse_day(raw)
        except ValueError:
            raise BadReconcileRequest(f"date must be YYYY-MM-DD, got {raw[:40]!r}") from None
        if refusal := unfinished_day(day, today) or too_early(day):
            raise BadReconcileRequest(refusal)
        company = params.get("company_id")
        if company is not None:
            company = company.strip()  # as staging keeps ids
            if not company:
                raise BadReconcileRequest(
                    "company_id is empty; give a company's id, or leave it out for the whole day"
                )
            if not company.isprintable():
                raise BadReconcileRequest(f"company_id has control characters: {company[:40]!r}")
            if too_long(company, MAX_COMPANY_ID):
                raise BadReconcileRequest(length_problem("company_id", company, MAX_COMPANY_ID))
        api = params.get("api", "true").strip().lower()
        if api not in ("true", "false"):
            raise BadReconcileRequest(f"api must be true or false, got {api[:20]!r}")
        return cls(day, company, api == "true")
