"""The quality gate of contract section 5."""

from __future__ import annotations

from datetime import date, timedelta

from shared.domain.quality import MIN_RECORDS_FOR_SHARE_ERROR, check_day

D = date(2026, 10, 10)


def ledger(counts: dict[int, tuple[int, int]], force: bool = False) -> dict[str, dict]:
    """days-before-D -> (staged, quarantined)."""
    return {
        (D - timedelta(days=n)).isoformat(): {"staged": s, "quarantined": q, "force": force and n == 0}
        for n, (s, q) in counts.items()
    }


def test_a_normal_day_passes() -> None:
    result = check_day(D, ledger({0: (100, 0), 1: (100, 0), 2: (98, 1)}))
    assert result.passed and not result.errors and not result.warnings


def test_zero_records_is_an_error_that_force_overrides() -> None:
    assert check_day(D, ledger({0: (0, 0)})).errors
    assert not check_day(D, ledger({0: (0, 0)})).passed
    forced = check_day(D, ledger({0: (0, 0)}, force=True))
    assert forced.passed and forced.overridden and forced.errors


def test_quarantined_share_above_five_percent() -> None:
    n = MIN_RECORDS_FOR_SHARE_ERROR
    assert not check_day(D, ledger({0: (n, n // 10)})).passed  # ~9% of a large day: error
    assert check_day(D, ledger({0: (n, n // 20 - 1)})).passed  # under 5%
    small = check_day(D, ledger({0: (36, 2)}))  # 5.3% of 38 records: a warning, too few to judge
    assert small.passed and small.warnings


def test_drop_against_the_median_of_the_previous_seven_days() -> None:
    history = {n: (100, 0) for n in range(1, 8)}
    assert not check_day(D, ledger({0: (49, 0), **history})).passed  # down 51%: error
    warn = check_day(D, ledger({0: (85, 0), **history}))
    assert warn.passed and warn.warnings  # down 15%: warning
    assert not check_day(D, ledger({0: (95, 0), **history})).warnings  # down 5%: fine
    # Days older than the seven before D are not part of the baseline.
    assert check_day(D, ledger({0: (40, 0), 8: (100, 0), 9: (100, 0)})).passed
