"""Benchmarks 2 and 5: `python -m shared.cli run` end to end, as a separate process.

2. peak memory (RSS) of `run` for one day of 200,000 records;
5. wall time of `run` for a day of 100,000 companies.

The API simulator (in this process) serves the day in pages of 1,000; a CRM snapshot with
every company is dropped first (in its own process, not measured), so `run` fetches, stages,
and builds the whole day. Baseline for memory: the same `run` for a day of 1,000 records.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import Targets, compile_project, line, run_child, save  # noqa: E402
from shared.local.simulator import UsageApiSimulator  # noqa: E402

DAY = date(2026, 10, 1)


def records(n: int) -> list[dict[str, Any]]:
    return [
        {"company_id": f"c-{i:07d}", "date": DAY.isoformat(), "active_users": i % 50, "events": (i % 50) * 17}
        for i in range(n)
    ]


def crm(path: Path, n: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["company_id", "name", "country", "industry_tag", "last_contact_at"])
        writer.writerows([f"c-{i:07d}", f"Company {i}", "DE", "saas", "2026-09-01"] for i in range(n))


def run_day(n: int) -> dict[str, float]:
    day_records = records(n)
    with (
        tempfile.TemporaryDirectory() as tmp,
        UsageApiSimulator(lambda d: day_records if d == DAY else [], api_key="k") as api,
    ):
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "LOCAL_DATA_DIR": str(Path(tmp) / "local"),
            "USAGE_API_BASE_URL": api.base_url,
            "USAGE_API_KEY": "k",
            "USAGE_API_PAGE_SIZE": "1000",
        }
        snapshot = Path(tmp) / f"companies_{DAY.isoformat()}.csv"
        crm(snapshot, n)
        subprocess.run(
            [sys.executable, "-m", "shared.cli", "crm-drop", str(snapshot)],
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        wall, peak, out = run_child(
            [sys.executable, "-m", "shared.cli", "run", "--date", DAY.isoformat()], env, REPO
        )
        if " built " not in out:
            raise SystemExit(f"run did not build the day: {out}")
        return {"records": n, "wall_s": wall, "peak_rss_mb": peak, "pages": api.count()}


def main() -> int:
    compile_project()
    print("Benchmarks 2 and 5: `run` end to end, in its own process")
    targets = Targets()
    baseline = run_day(1_000)
    line(
        "1,000 records (baseline): peak RSS", f"{baseline['peak_rss_mb']:.0f} MB, {baseline['wall_s']:.1f} s"
    )
    big = run_day(200_000)
    targets.at_most(
        "200,000 records: peak RSS, MB",
        big["peak_rss_mb"],
        250,
        f"{big['peak_rss_mb']:.0f} MB ({big['wall_s']:.1f} s)",
    )
    hundred = run_day(100_000)
    targets.at_most(
        "100,000 companies: wall time, s",
        hundred["wall_s"],
        60,
        f"{hundred['wall_s']:.1f} s, {hundred['peak_rss_mb']:.0f} MB",
    )
    save(
        "run",
        {"baseline": baseline, "records_200k": big, "companies_100k": hundred, "targets": targets.checked},
    )
    return targets.exit_status


if __name__ == "__main__":
    sys.exit(main())
