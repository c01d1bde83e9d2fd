"""The churn rule of contract section 3, declared once: its parts, its thresholds, its answer
(three-valued) and its words.

`is_churn_risk` is true when the company had no activity in the rolling window, or fewer
user-days than CHURN_MIN_ROLLING_USERS and no contact for more than CHURN_MAX_CONTACT_AGE_DAYS
(or never). It is NULL, "cannot tell", when the rule says true and the company's usage is
unknown on a day of the window: the unknown days count 0, and more users could only make the
rule false, so a false stays false.

The warehouses state it in SQL (sql/<dialect>/build_days.sql), as set-based SQL must;
tests/infra/test_churn_rule_dialects.py evaluates both over every combination of the inputs
against `ChurnRule.is_churn_risk`. What users read about the rule (`Rules.describe`, reconcile's
explanation of a row) is derived from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.days import ROLLING_DAYS
from shared.domain.wording import counted


@dataclass(frozen=True)
class ChurnRule:
    min_rolling_users: int  # CHURN_MIN_ROLLING_USERS
    max_contact_age_days: int  # CHURN_MAX_CONTACT_AGE_DAYS

    # --- the parts ---
    @staticmethod
    def inactive(rolling_users: int) -> bool:
        """No activity in the rolling window."""
        return rolling_users == 0

    def few_users(self, rolling_users: int) -> bool:
        return rolling_users < self.min_rolling_users

    def out_of_touch(self, days_since_contact: int | None) -> bool:
        """Never contacted, or not for more than the limit."""
        return days_since_contact is None or days_since_contact > self.max_contact_age_days

    # --- the rule ---
    def flags(self, rolling_users: int, days_since_contact: int | None) -> bool:
        """The two-valued rule, on the window's sums as they are."""
        return self.inactive(rolling_users) or (
            self.few_users(rolling_users) and self.out_of_touch(days_since_contact)
        )

    def is_churn_risk(
        self, rolling_users: int, days_since_contact: int | None, unknown_days: int
    ) -> bool | None:
        """`is_churn_risk`: the rule, or None (cannot tell) when it flags a company whose usage
        is unknown on `unknown_days` days of the window."""
        flagged = self.flags(rolling_users, days_since_contact)
        return None if flagged and unknown_days > 0 else flagged

    # --- in words ---
    def describe(self) -> str:
        """The rule with its thresholds, in a sentence (status, report)."""
        return (
            f"churn risk: no activity in {ROLLING_DAYS} days, or under {self.min_rolling_users}"
            f" user-days in {ROLLING_DAYS} days and no contact for more than {counted(self.max_contact_age_days, 'day')}"
        )

    def reason(self, rolling_users: int, days_since_contact: int | None) -> str:
        """Which part decided `flags` for these inputs, and why, in words (reconcile)."""
        if self.inactive(rolling_users):
            return f"no activity in {ROLLING_DAYS} days"
        if not self.few_users(rolling_users):
            return f"{rolling_users} user-days in {ROLLING_DAYS} days, at least {self.min_rolling_users}"
        if self.out_of_touch(days_since_contact):
            contact = (
                "never contacted"
                if days_since_contact is None
                else f"last contact {counted(days_since_contact, 'day')} ago"
            )
            return (
                f"{rolling_users} user-days, under {self.min_rolling_users}, and {contact}"
                f" (more than {self.max_contact_age_days})"
            )
        assert days_since_contact is not None  # None is out of touch, answered above
        return (
            f"{rolling_users} user-days, under {self.min_rolling_users}, but contacted"
            f" {counted(days_since_contact, 'day')} ago (within {self.max_contact_age_days})"
        )
