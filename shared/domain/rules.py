"""The rule settings a day is built with (contract section 3: rules are part of the input).

A built day records the rules it used. When the rules in force differ, the table would be
mixed (some days at churn threshold 10, others at 20), so every day built or waiting under
other rules is planned again with the next build: `stale_days` finds them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from shared.domain.churn_rule import ChurnRule
from shared.domain.wording import counted

# Day states whose outcome depends on the rules: a built day's rows, a waiting day's wait (the
# snapshot age limit decides it). A day the quality gate blocked has no rows of its build.
RULED_STATES = ("built", "waiting")


@dataclass(frozen=True)
class Rules:
    churn_min_rolling_users: int
    churn_max_contact_age_days: int
    crm_max_snapshot_age_days: int

    def encode(self) -> str:
        """As the ledger stores it: flat JSON text, the same for the same rules."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, text: Any) -> Rules | None:
        """The rules a ledger entry recorded; None for a day built before rules were recorded."""
        try:
            values = json.loads(text) if isinstance(text, str) else text
            return cls(**values) if isinstance(values, Mapping) else None
        except (TypeError, ValueError):
            return None

    def short(self) -> str:
        """10/30/7: CHURN_MIN_ROLLING_USERS / CHURN_MAX_CONTACT_AGE_DAYS / CRM_MAX_SNAPSHOT_AGE_DAYS."""
        return f"{self.churn_min_rolling_users}/{self.churn_max_contact_age_days}/{self.crm_max_snapshot_age_days}"

    @property
    def churn(self) -> ChurnRule:
        """The churn rule at these thresholds."""
        return ChurnRule(self.churn_min_rolling_users, self.churn_max_contact_age_days)

    def describe(self) -> str:
        return f"{self.churn.describe()}; CRM snapshots count for {counted(self.crm_max_snapshot_age_days, 'day')}"


RULES_LEGEND = "CHURN_MIN_ROLLING_USERS/CHURN_MAX_CONTACT_AGE_DAYS/CRM_MAX_SNAPSHOT_AGE_DAYS"


def stale_days(days: Mapping[str, Mapping[str, Any]], rules: Rules) -> list[date]:
    """Days of the ledger's `days` partition whose outcome was decided under other rules."""
    return sorted(
        date.fromisoformat(key)
        for key, entry in days.items()
        if entry.get("status") in RULED_STATES and Rules.decode(entry.get("rules")) != rules
    )
