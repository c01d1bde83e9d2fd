"""Fetch benchmark: concurrent pages versus a plain page loop, and pacing under a server rate limit.

    .venv/bin/python benchmarks/bench_fetch.py [--quick] [--repeat N]

(a) `PAGES_A` pages behind `LATENCY_S` of latency per request: a plain sequential loop (requests,
    by has_next_page, nothing landed) versus our `fetch_day` with USAGE_API_CONCURRENCY=8, which
    also lands every page in the folder store and writes the manifest. Target: ratio <= 0.35.
(b) `PAGES_B` pages behind the same latency and a server rate limit of `RPS` requests per second
    (the simulator's token bucket, burst RPS/10; over it: 429 with Retry-After: 1): our fetch
    with USAGE_API_MAX_RPS unset (adaptive: unlimited until the first 429) and with it set to
    the server's limit. Targets: wall time <= 1.2 x PAGES_B / RPS, and at most 2 % of all
    answers 429. Each mode runs `--repeat` times (3): the adaptive one varies from run to run
    (how many requests are in flight when the first 429 comes back), so the median is judged
    and the worst run is shown next to it.

Everything runs over real sockets against `shared.local.simulator.UsageApiSimulator`, with the real
fetch service on `build_services(Settings(...), local_bus=True)` in a temporary folder.
Results go to benchmarks/results/fetch.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.bootstrap import build_services
from shared.config import Settings
from shared.local.simulator import UsageApiSimulator
from shared.services import fetch  # after the path set-up: runnable as a script

RESULTS = Path(__file__).resolve().parent / "results" / "fetch.json"
DAY = date(2026, 11, 20)
KEY = "bench-key"
PAGE_SIZE = 100
LATENCY_S = 0.040
CONCURRENCY = 8
PAGES_A = 300
PAGES_B = 300
RPS = 50.0
TARGET_RATIO_A = 0.35
TARGET_WALL_B = 1.2  # x PAGES_B / RPS
TARGET_429_SHARE = 0.02


def day_records(pages: int) -> list[dict[str, Any]]:
    return [
        {"company_id": f"c-{i:06d}", "date": DAY.isoformat(), "active_users": i % 50, "events": i % 997}
        for i in range(pages * PAGE_SIZE)
    ]


def simulator(records: list[dict[str, Any]], **kwargs: Any) -> UsageApiSimulator:
    return UsageApiSimulator(lambda d: records if d == DAY else [], api_key=KEY, **kwargs)


def plain_loop(base_url: str) -> tuple[float, int]:
    """The baseline: one request after another while has_next_page says so."""
    started = time.perf_counter()
    pages = 0
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {KEY}"
        page = 1
        while True:
            response = session.get(
                f"{base_url}/v2/usage",
                params={"date": DAY.isoformat(), "page": page, "page_size": PAGE_SIZE},
                timeout=30,
            )
            response.raise_for_status()
            pages += 1
            if not response.json()["has_next_page"]:
                break
            page += 1
    return time.perf_counter() - started, pages


def our_fetch(base_url: str, workdir: Path, **settings: Any) -> dict[str, Any]:
    """`fetch_day` on the local services (folder blobs, SQLite ledger, in-process bus)."""
    services = build_services(
        Settings(
            usage_api_base_url=base_url,
            usage_api_key=KEY,
            usage_api_page_size=PAGE_SIZE,
            usage_api_concurrency=CONCURRENCY,
            local_data_dir=workdir,
            **settings,
        ),
        local_bus=True,
    )
    try:
        client = services.usage_api(services.settings)
        started = time.perf_counter()
        outcome = fetch.fetch_day(services, DAY, client=client)
        seconds = time.perf_counter() - started
    finally:
        services.warehouse.close()
    if outcome.status != "fetched":
        raise RuntimeError(f"fetch did not complete: {outcome}")
    limiter = client.limiter
    return {
        "seconds": seconds,
        "pages": outcome.pages,
        "limiter_final_rps": limiter.rate if limiter else None,
        "limiter_decreases": limiter.decreases if limiter else 0,
    }


def scenario_a(pages: int, tmp: Path) -> dict[str, Any]:
    records = day_records(pages)
    with simulator(records, latency_s=LATENCY_S) as api:
        baseline_s, baseline_pages = plain_loop(api.base_url)
    with simulator(records, latency_s=LATENCY_S) as api:
        ours = our_fetch(api.base_url, tmp / "a")
        requests_made = api.count()
        max_in_flight = api.max_in_flight
    assert baseline_pages == ours["pages"] == pages == requests_made, (baseline_pages, ours, requests_made)
    ratio = ours["seconds"] / baseline_s
    return {
        "pages": pages,
        "latency_s": LATENCY_S,
        "concurrency": CONCURRENCY,
        "baseline_s": round(baseline_s, 3),
        "ours_s": round(ours["seconds"], 3),
        "ratio": round(ratio, 3),
        "max_in_flight": max_in_flight,
        "target_ratio": TARGET_RATIO_A,
        "met": ratio <= TARGET_RATIO_A,
    }


def scenario_b(pages: int, rps: float, repeat: int, tmp: Path) -> list[dict[str, Any]]:
    records = day_records(pages)
    ideal_s = pages / rps
    modes = []
    for label, max_rps in (("adaptive (USAGE_API_MAX_RPS unset)", 0.0), (f"USAGE_API_MAX_RPS={rps:g}", rps)):
        runs = []
        for i in range(repeat):
            with simulator(records, latency_s=LATENCY_S, rate_limit_rps=rps) as api:
                ours = our_fetch(api.base_url, tmp / f"b-{max_rps:g}-{i}", usage_api_max_rps=max_rps)
                total, throttled = api.count(), api.count(status=429)
            final = ours["limiter_final_rps"]
            runs.append(
                {
                    "seconds": round(ours["seconds"], 3),
                    "wall_ratio": round(ours["seconds"] / ideal_s, 3),
                    "requests": total,
                    "answers_429": throttled,
                    "share_429": round(throttled / total, 4),
                    "limiter_decreases": ours["limiter_decreases"],
                    "limiter_final_rps": None if final is None else round(final, 1),
                }
            )
        wall = statistics.median(r["wall_ratio"] for r in runs)
        share = statistics.median(r["share_429"] for r in runs)
        modes.append(
            {
                "run": label,
                "pages": pages,
                "server_rps": rps,
                "max_rps": max_rps,
                "ideal_s": round(ideal_s, 3),
                "median_wall_ratio": wall,
                "worst_wall_ratio": max(r["wall_ratio"] for r in runs),
                "median_share_429": share,
                "worst_share_429": max(r["share_429"] for r in runs),
                "met": wall <= TARGET_WALL_B and share <= TARGET_429_SHARE,
                "runs": runs,
            }
        )
    return modes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the pages: a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each rate-limited mode (3)")
    args = parser.parse_args(argv)
    repeat = max(1, args.repeat)
    logging.getLogger("shared").setLevel(logging.ERROR)  # a 429 retry is expected here, not news
    pages_a, pages_b = (PAGES_A // 10, PAGES_B // 10) if args.quick else (PAGES_A, PAGES_B)

    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
        a = scenario_a(pages_a, Path(tmp))
        b = scenario_b(pages_b, RPS, repeat, Path(tmp))

    print(f"(a) {a['pages']} pages, {LATENCY_S * 1000:.0f} ms latency per request")
    print(f"    {'plain page loop':<38} {a['baseline_s']:>8.2f} s")
    print(f"    {f'fetch_day, concurrency {CONCURRENCY}':<38} {a['ours_s']:>8.2f} s")
    print(
        f"    ratio {a['ratio']:.3f} (target <= {TARGET_RATIO_A}): {'met' if a['met'] else 'NOT met'}"
        f"; max requests in flight {a['max_in_flight']}"
    )
    print()
    print(
        f"(b) {pages_b} pages, server limit {RPS:g} rps (ideal {pages_b / RPS:.1f} s),"
        f" {LATENCY_S * 1000:.0f} ms latency; median (worst) of {repeat} runs"
    )
    print(f"    {'run':<38} {'x ideal':>15} {'429 share':>17} {'met':>5}")
    for mode in b:
        print(
            f"    {mode['run']:<38} {mode['median_wall_ratio']:>7.3f} ({mode['worst_wall_ratio']:.3f})"
            f" {mode['median_share_429']:>8.2%} ({mode['worst_share_429']:>6.2%}) {'yes' if mode['met'] else 'NO':>5}"
        )
        answers = [r["answers_429"] for r in mode["runs"]]
        print(f"      429s per run: {answers} of {[r['requests'] for r in mode['runs']]} requests")
    print(
        f"    targets (on the median): wall <= {TARGET_WALL_B} x ideal, 429 share <= {TARGET_429_SHARE:.0%}"
    )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "fetch",
                "quick": args.quick,
                "repeat": repeat,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "page_size": PAGE_SIZE,
                "concurrent_pages": a,
                "rate_limited": b,
            },
            indent=1,
        )
        + "\n"
    )
    print(
        f"\nwritten to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}"
    )
    return 0 if a["met"] and all(mode["met"] for mode in b) else 1


if __name__ == "__main__":
    sys.exit(main())
