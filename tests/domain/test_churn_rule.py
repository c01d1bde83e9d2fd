"""The churn rule as declared once (shared/domain/churn_rule.py), held to contract section 3
written out by hand, and the words derived from it."""

from __future__ import annotations

import itertools

import pytest

from shared.domain.churn_rule import ChurnRule
from shared.domain.rules import Rules

RULE = ChurnRule(min_rolling_users=10, max_contact_age_days=30)

# (rolling_7d_active_users, days_since_last_contact, usage_unknown_7d) -> is_churn_risk, at 10/30.
CONTRACT = [
    ((0, 0, 0), True),  # no activity, whatever the contact
    ((0, None, 0), True),
    ((9, None, 0), True),  # few users, never contacted
    ((9, 31, 0), True),  # few users, contact too old
    ((9, 30, 0), False),  # few users, contacted within the limit
    ((9, 0, 0), False),
    ((10, None, 0), False),  # enough users
    ((10, 31, 0), False),
    ((0, 0, 1), None),  # would flag, usage unknown on a day: cannot tell
    ((9, 31, 7), None),
    ((9, 30, 1), False),  # a false stays false
    ((11, None, 3), False),
]


@pytest.mark.parametrize(("inputs", "expected"), CONTRACT)
def test_the_rule_says_what_the_contract_says(
    inputs: tuple[int, int | None, int], expected: bool | None
) -> None:
    assert RULE.is_churn_risk(*inputs) is expected


def test_the_reason_names_the_part_that_decided_the_flag() -> None:
    for rolling, since in itertools.product((0, 1, 9, 10, 11), (None, 0, 29, 30, 31)):
        reason = RULE.reason(rolling, since)
        clears = "at least" in reason or "(within" in reason
        assert clears is not RULE.flags(rolling, since), (rolling, since, reason)
    assert RULE.reason(0, 3) == "no activity in 7 days"
    assert RULE.reason(12, None) == "12 user-days in 7 days, at least 10"
    assert RULE.reason(4, None) == "4 user-days, under 10, and never contacted (more than 30)"
    assert RULE.reason(4, 31) == "4 user-days, under 10, and last contact 31 days ago (more than 30)"
    assert RULE.reason(4, 30) == "4 user-days, under 10, but contacted 30 days ago (within 30)"


def test_the_rules_describe_the_declared_churn_rule() -> None:
    rules = Rules(churn_min_rolling_users=20, churn_max_contact_age_days=14, crm_max_snapshot_age_days=7)
    assert rules.churn == ChurnRule(20, 14)
    assert rules.describe() == (
        "churn risk: no activity in 7 days, or under 20 user-days in 7 days and no contact for more"
        " than 14 days; CRM snapshots count for 7 days"
    )
