"""Client-side pacing for the Product Usage API: a token bucket whose rate adapts to 429s."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """A token bucket in front of every request, whose rate adapts to 429s (AIMD).

    One per fetch, shared by its worker threads. `rate_rps` 0 means no limit until the server
    says 429; the first 429 then starts limiting at `first_decrease` of the send rate observed
    over the last `window_s` (cut hard: one 429 says nothing about how far over the limit we
    are). Later 429s multiply the rate by `decrease` (0.7, as botocore's adaptive mode: with 0.5
    the sawtooth averages 75 % of the server's limit), never below `floor_share` of the configured
    rate (or of that first observed rate). Each success adds a fixed step back (additive
    increase), up to the configured rate: `recovery` of the rate found too high, so the climb
    back takes about (1 - decrease) / recovery successes whatever the scale. The rate only grows
    while it is what holds the requests back (the last caller had to wait for a token): a limit
    far above what is being sent would otherwise grow without bound and take many 429s to
    bring down again.

    Answers to requests admitted before the last decrease belong to the congestion that caused
    it: they do not lower the rate again (`acquire` returns a generation ticket for that), so a
    burst of 429s from eight in-flight requests is one halving, not eight.

    Waits are reservations: a caller takes a token now (the count may go negative) and sleeps
    until it is due, outside the lock, so waiting threads queue in order and never busy-wait.
    """

    def __init__(
        self,
        rate_rps: float = 0.0,
        *,
        burst: float = 1.0,
        decrease: float = 0.7,
        first_decrease: float = 0.5,
        floor_share: float = 0.1,
        recovery: float = 0.002,
        window_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_rps >= 0 or burst < 1 or not 0 < decrease < 1 or not 0 < first_decrease < 1:
            raise ValueError("rate_rps >= 0, burst >= 1 and decreases in (0, 1) are required")
        if math.isinf(rate_rps):
            rate_rps = 0.0  # no fixed limit
        self.configured_rps = rate_rps
        self.burst = burst
        self.decrease = decrease
        self.first_decrease = first_decrease
        self.floor_share = floor_share
        self.recovery = recovery
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate: float | None = rate_rps or None  # None: not limiting (yet)
        self._floor = rate_rps * floor_share
        self._step = rate_rps * recovery
        # At most `burst` requests at once, so the start is not a spike. 1 by default: a server
        # whose own bucket is small then keeps a token of headroom for jitter.
        self._tokens = burst
        self._updated = clock()
        self._generation = 0
        self._binding = False  # the last caller had to wait for its token
        self._sent: deque[float] = deque(maxlen=4096)  # admissions while unlimited: the observed rate
        self.throttled = 0  # 429s reported
        self.decreases = 0  # of which lowered the rate

    @property
    def rate(self) -> float | None:
        """Requests per second allowed now; None while not limiting."""
        with self._lock:
            return self._rate

    def acquire(self) -> int:
        """Wait for a token; returns the generation ticket to hand to `on_throttled`."""
        with self._lock:
            now = self._clock()
            due = now
            if self._rate is not None:
                self._refill(now)
                self._tokens -= 1.0
                if self._tokens < 0:
                    due = now - self._tokens / self._rate
            else:
                self._sent.append(now)
            self._binding = due > now
            ticket = self._generation
        if due > now:
            self._sleep(due - now)
        return ticket

    def on_success(self) -> None:
        with self._lock:
            if self._rate is None or not self._binding:
                return
            ceiling = self.configured_rps or float("inf")
            if self._rate < ceiling:
                self._refill(self._clock())  # tokens earned so far at the old rate
                self._rate = min(ceiling, self._rate + self._step)

    def on_throttled(self, ticket: int) -> bool:
        """The server said 429 to a request admitted with `ticket`. True when the rate was lowered."""
        with self._lock:
            self.throttled += 1
            if ticket != self._generation:
                return False  # same congestion as the last decrease
            now = self._clock()
            if self._rate is None:  # the first 429 while unlimited: start limiting below what we sent
                too_high, factor = self._observed_rate(now), self.first_decrease
                self._floor = too_high * self.floor_share
                self._tokens = 0.0  # over the limit already: no burst now
            else:
                # Not min(rate, observed): the send rate is low right after a 429 for the wrong
                # reason (workers sleeping out Retry-After), and would cut far too deep.
                self._refill(now)
                too_high, factor = self._rate, self.decrease
            self._rate = max(too_high * factor, self._floor)
            self._step = too_high * self.recovery
            self._updated = now
            self._generation += 1
            self.decreases += 1
            return True

    def _refill(self, now: float) -> None:
        if self._rate is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def _observed_rate(self, now: float) -> float:
        """Admissions per second over the last `window_s` (at least one: the throttled request)."""
        while self._sent and self._sent[0] < now - self.window_s:
            self._sent.popleft()
        count = max(1, len(self._sent))
        oldest = self._sent[0] if self._sent else now
        return count / max(now - oldest, 1e-3)


_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(base_url: str, rate_rps: float) -> RateLimiter:
    """The one limiter of this process for the API at `base_url` limited to `rate_rps`:
    USAGE_API_MAX_RPS holds for the process, over every day a lookback or backfill fetches
    (each fetch builds its own client), not within one fetch only."""
    key = (base_url.rstrip("/"), float(rate_rps))
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = RateLimiter(rate_rps)
        return limiter
