"""The health verdict and its shape (contract section 8): pure, no port."""

from __future__ import annotations

from shared.domain.health import (
    CHECKS,
    MAX_DETAIL,
    TIMEOUTS_S,
    CheckResult,
    one_line,
    report,
    spoken_duration,
    timed_out,
)


def passing(name: str) -> CheckResult:
    return CheckResult(name, True, f"{name} fine", 3)


def test_all_passing_is_ok_200_and_exit_0_in_the_fixed_order() -> None:
    result = report(passing(n) for n in reversed(CHECKS))
    assert [c.name for c in result.checks] == list(CHECKS)
    assert (result.status, result.http_status, result.exit_code) == ("ok", 200, 0)
    assert result.to_json() == {
        "status": "ok",
        "checks": [{"name": n, "ok": True, "detail": f"{n} fine", "ms": 3} for n in CHECKS],
    }


def test_one_failing_check_fails_the_whole() -> None:
    result = report([*(passing(n) for n in CHECKS[:-1]), CheckResult("alert_sink", False, "fix it", 12)])
    assert (result.status, result.http_status, result.exit_code) == ("failing", 503, 1)
    assert [c.name for c in result.failing()] == ["alert_sink"]


def test_lines_give_name_ok_or_fail_ms_and_detail() -> None:
    result = report(
        [CheckResult("settings", True, "loaded", 0), CheckResult("warehouse", False, "move it", 1234)]
    )
    assert result.lines() == [
        "settings   ok         0 ms  loaded",
        "warehouse  FAIL    1234 ms  move it",
    ]


def test_a_detail_is_one_short_line() -> None:
    assert one_line("first\nsecond\r\n\tthird\x00") == "first second third"
    long = one_line("x" * 1000)
    assert len(long) == MAX_DETAIL and long.endswith("...")


def test_a_timeout_says_so_and_what_to_do() -> None:
    for name in CHECKS:
        result = timed_out(name, TIMEOUTS_S[name])
        assert not result.ok and result.detail.startswith(f"no answer within {TIMEOUTS_S[name]:g} s;")
        assert result.ms == int(TIMEOUTS_S[name] * 1000)
    assert "resume" in timed_out("warehouse", 45).detail
    assert max(TIMEOUTS_S.values()) <= 60 and set(TIMEOUTS_S) == set(CHECKS)


def test_a_wait_is_said_as_a_person_says_it() -> None:
    said = {
        s: spoken_duration(s) for s in (0, 45, 90, 3600, 5400, 86400, 93784, 7 * 86400 + 59, float("inf"))
    }
    assert said == {
        0: "0 s",
        45: "45 s",
        90: "1 min 30 s",
        3600: "1 h",
        5400: "1 h 30 min",
        86400: "1 day",
        93784: "1 day 2 h 3 min",
        7 * 86400 + 59: "7 days",
        float("inf"): "for ever",
    }
