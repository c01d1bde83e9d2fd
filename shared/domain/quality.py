"""The quality gate (contract section 5): checks a day's staged usage before the day is built."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

MAX_QUARANTINED_SHARE = 0.05
# A share needs a sample: 2 bad records among 38 is 5.3% but says little about the API. Below
# this many received records an excess share is a warning, not an error (contract section 5).
MIN_RECORDS_FOR_SHARE_ERROR = 100
DROP_ERROR = 0.50
DROP_WARNING = 0.10
BASELINE_DAYS = 7


@dataclass(frozen=True)
class GateResult:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    overridden: bool = False  # a forced replay let the errors through

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
    text = f"{companies} companies, down {drop:.0%} against the {previous} of the snapshot of {previous_date}"
    if drop > DROP_ERROR:
        return [text], []
    if drop > DROP_WARNING:
        return [], [text]
    return [], []


def check_day(day: date, usage: Mapping[str, Mapping[str, Any]]) -> GateResult:
    """`usage` is the ledger's staged-usage entries by ISO date (staged, quarantined, force)."""
    entry = usage[day.isoformat()]
    staged = int(entry.get("staged", 0))
    quarantined = int(entry.get("quarantined", 0))
    received = staged + quarantined
    errors: list[str] = []
    warnings: list[str] = []

    if staged == 0:
        errors.append(
            f"zero usage records staged for {day}" + (f" ({quarantined} quarantined)" if quarantined else "")
        )
    if received and quarantined / received > MAX_QUARANTINED_SHARE:
        text = (
            f"{quarantined} of {received} usage records quarantined ({quarantined / received:.1%}),"
            f" above the {MAX_QUARANTINED_SHARE:.0%} limit"
        )
        (errors if received >= MIN_RECORDS_FOR_SHARE_ERROR else warnings).append(text)

    baseline = [
        int(usage[d]["staged"])
        for d in ((day - timedelta(days=n)).isoformat() for n in range(1, BASELINE_DAYS + 1))
        if d in usage
    ]
    if baseline and staged:
        median = statistics.median(baseline)
        if median > 0:
            drop = (median - staged) / median
            text = (
                f"{staged} usage records, down {drop:.0%} against the median {median:g}"
                f" of the previous {len(baseline)} staged days"
            )
            if drop > DROP_ERROR:
                errors.append(text)
            elif drop > DROP_WARNING:
                warnings.append(text)

    return GateResult(errors, warnings, overridden=bool(errors) and bool(entry.get("force")))
