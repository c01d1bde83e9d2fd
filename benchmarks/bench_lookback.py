"""The cost of the lookback (issue 23): the daily run with USAGE_API_LOOKBACK_DAYS=3 against 0.

100,000 companies a day. The three days before yesterday were fetched and built before (set up,
not measured); the CRM snapshot covers every company. Then, from two copies of that same data
folder, `python -m shared.cli run` (no --date: what the daily timer does) runs once with the
lookback at 3 and once at 0, each in its own process, against the same API, in which nothing
changed. Measured: API requests (the simulator's log), wall time, and rows written to the table
(rows whose `loaded_at` is after the run started). Reported as ratios, measured in one run.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import compile_project, line, run_child, save  # noqa: E402
from shared.local.simulator import UsageApiSimulator  # noqa: E402

COMPANIES = 100_000
LOOKBACK = 3


def records(day: date) -> list[dict[str, Any]]:
    salt = day.toordinal() % 7
    return [
        {
            "company_id": f"c-{i:07d}",
            "date": day.isoformat(),
            "active_users": (i + salt) % 50,
            "events": ((i + salt) % 50) * 17,
        }
        for i in range(COMPANIES)
    ]


def crm(path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["company_id", "name", "country", "industry_tag", "last_contact_at"])
        writer.writerows([f"c-{i:07d}", f"Company {i}", "DE", "saas", "2026-09-01"] for i in range(COMPANIES))


def rows_written(data_dir: Path, since: datetime) -> int:
    import duckdb

    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        found = con.execute(
            "SELECT COUNT(*) FROM analytics.company_daily_activity WHERE loaded_at >= ?",
            [since.replace(tzinfo=None)],
        ).fetchone()
    finally:
        con.close()
    return int(found[0]) if found else 0


def main() -> int:
    compile_project()
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    before = [yesterday - timedelta(days=n) for n in range(LOOKBACK, 0, -1)]
    by_day = {d: records(d) for d in [*before, yesterday]}
    print(f"The daily run with USAGE_API_LOOKBACK_DAYS={LOOKBACK} against 0, {COMPANIES:,} companies a day")
    with (
        tempfile.TemporaryDirectory() as tmp,
        UsageApiSimulator(lambda d: by_day.get(d, []), api_key="k") as api,
    ):
        prepared = Path(tmp) / "prepared"
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "USAGE_API_BASE_URL": api.base_url,
            "USAGE_API_KEY": "k",
            "USAGE_API_PAGE_SIZE": "1000",
        }
        setup = {**env, "LOCAL_DATA_DIR": str(prepared)}
        snapshot = Path(tmp) / f"companies_{before[0].isoformat()}.csv"
        crm(snapshot)
        for command in (
            ["crm-drop", str(snapshot)],
            ["backfill", "--from", before[0].isoformat(), "--to", before[-1].isoformat()],
        ):
            subprocess.run(
                [sys.executable, "-m", "shared.cli", *command],
                env=setup,
                cwd=REPO,
                check=True,
                capture_output=True,
            )

        measured: dict[int, dict[str, float]] = {}
        for lookback in (0, LOOKBACK):
            data_dir = Path(tmp) / f"lookback-{lookback}"
            shutil.copytree(prepared, data_dir)
            asked = api.count()
            started = datetime.now(UTC)
            wall, peak, out = run_child(
                [sys.executable, "-m", "shared.cli", "run"],
                {**env, "LOCAL_DATA_DIR": str(data_dir), "USAGE_API_LOOKBACK_DAYS": str(lookback)},
                REPO,
            )
            if " built " not in out:
                raise SystemExit(f"run did not build yesterday: {out}")
            measured[lookback] = {
                "requests": api.count() - asked,
                "wall_s": wall,
                "peak_rss_mb": peak,
                "rows_written": rows_written(data_dir, started),
            }
        off, on = measured[0], measured[LOOKBACK]
        ratios = {
            k: (on[k] / off[k] if off[k] else float("nan")) for k in ("requests", "wall_s", "rows_written")
        }
        line(
            "lookback 0: requests, wall, rows written",
            f"{off['requests']:.0f}, {off['wall_s']:.1f} s, {off['rows_written']:.0f}",
        )
        line(
            f"lookback {LOOKBACK}: requests, wall, rows written",
            f"{on['requests']:.0f}, {on['wall_s']:.1f} s, {on['rows_written']:.0f}",
        )
        line(
            f"ratio {LOOKBACK} / 0",
            f"requests x{ratios['requests']:.2f}, wall x{ratios['wall_s']:.2f}, rows x{ratios['rows_written']:.2f}",
        )
        save(
            "lookback",
            {"companies": COMPANIES, "lookback_0": off, f"lookback_{LOOKBACK}": on, "ratios": ratios},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
