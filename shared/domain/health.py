"""GET /api/health and `python -m shared.cli health` (contract section 8): the verdict and its shape.

Pure: which checks there are, how long each may take, what the answer is made of. Running
them is `shared.services.health`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shared.domain.text_limits import flattened, shortened

# Every piece the app depends on, in the order they are reported.
CHECKS = ("settings", "blob_store", "ledger", "bus", "warehouse", "usage_api", "alert_sink")

# Each check's own limit, in seconds: answered concurrently, the whole answer takes at most the
# settings' (which come first: every other check needs the services they build) plus the
# longest other. Azure SQL serverless resumes a paused database in up to a minute, hence its
# 45 s; the first request after a cold start builds the services, importing the Azure SDKs.
TIMEOUTS_S: dict[str, float] = {
    "settings": 20.0,
    "blob_store": 10.0,
    "ledger": 10.0,
    "bus": 10.0,
    "warehouse": 45.0,
    "usage_api": 15.0,
    "alert_sink": 15.0,
}

MAX_DETAIL = 500  # characters: a detail is one line (the cause first, then its fix)

Status = Literal["ok", "failing"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str  # what was found; on a failure, what to fix, in one line
    ms: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "ms": self.ms}


def one_line(text: str) -> str:
    """A detail as one line of at most MAX_DETAIL characters, no control characters."""
    return shortened(flattened(text), MAX_DETAIL)


# What a timeout most likely means, per check.
_SLOW = {
    "settings": "loading the settings and building the app's clients took too long (the first request"
    " after a cold start imports the Azure SDKs): try again",
    "warehouse": "a paused serverless Azure SQL database takes about a minute to resume: try again in a"
    " minute; if it persists, check SQL_SERVER and that the server's firewall lets Azure services in",
}


def timed_out(name: str, timeout_s: float) -> CheckResult:
    hint = _SLOW.get(
        name,
        f"the {name.replace('_', ' ')} hangs or is very slow: try again, and if it persists check that it"
        " is up and reachable from the app",
    )
    return CheckResult(name, False, f"no answer within {timeout_s:g} s; {hint}", int(timeout_s * 1000))


@dataclass(frozen=True)
class HealthReport:
    checks: Sequence[CheckResult]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def status(self) -> Status:
        return "ok" if self.ok else "failing"

    @property
    def http_status(self) -> int:
        return 200 if self.ok else 503

    @property
    def exit_code(self) -> int:
        """The CLI's: 0 when every check passes, 1 when one fails."""
        return 0 if self.ok else 1

    def failing(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "checks": [c.to_json() for c in self.checks]}

    def lines(self) -> list[str]:
        """One line per check, as `health` prints them: name, ok/FAIL, ms, detail."""
        width = max((len(c.name) for c in self.checks), default=0)
        return [
            f"{c.name:<{width}}  {'ok' if c.ok else 'FAIL':<4}  {c.ms:>6} ms  {c.detail}" for c in self.checks
        ]


def report(results: Iterable[CheckResult]) -> HealthReport:
    """The checks in their fixed order (unknown names last, as given)."""
    order = {name: i for i, name in enumerate(CHECKS)}
    listed = list(results)
    return HealthReport(sorted(listed, key=lambda c: (order.get(c.name, len(CHECKS)), listed.index(c))))


def spoken_duration(seconds: float) -> str:
    """A wait as a person says it, to the minute past an hour: 45 -> "45 s", 90 -> "1 min 30 s",
    5400 -> "1 h 30 min", 86400 -> "1 day", 93784 -> "1 day 2 h 3 min"."""
    if not seconds < 10**12:  # inf, nan, or beyond any calendar
        return "for ever"
    whole = max(0, round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days:,} day{'s' if days != 1 else ''}" if days else "", f"{hours} h" if hours else ""]
    parts += [f"{minutes} min" if minutes else "", f"{secs} s" if secs and not (days or hours) else ""]
    return " ".join(p for p in parts if p) or "0 s"
