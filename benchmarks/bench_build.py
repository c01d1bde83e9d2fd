"""Benchmark 4: building one day for 100,000 companies with 7 versus 730 days of history,
and one day for 1,000,000 companies.

History is generated straight into the staging and analytics tables with SQL (this measures
the build, not the loaders): every company has usage on most days, a CRM snapshot every 7
days, and the analytics table holds every earlier day already built. Then the new day's usage
is staged through the warehouse port and `build_days([day])` is timed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import Targets, line, save, timed
from shared.adapters.warehouse_duckdb import DuckDbWarehouse
from shared.ports import BuildParams, Lineage

LAST_DAY = date(2026, 10, 31)
PARAMS = BuildParams(
    "bench", churn_min_rolling_users=10, churn_max_contact_age_days=30, crm_max_snapshot_age_days=7
)

# Generated history, set-based; $companies and $days are the only inputs.
HISTORY_SQL = [
    """
    INSERT INTO stg.product_usage_daily
    SELECT 'c-' || lpad(CAST(c AS VARCHAR), 7, '0'), $last_day - CAST(d AS INTEGER), (c * 7 + d) % 40,
           ((c * 7 + d) % 40) * 13, 'bench', 'bench', TIMESTAMP '2026-11-01'
    FROM range(1, $companies + 1) AS cs(c), range(1, $days + 1) AS ds(d)
    WHERE (c + d) % 10 <> 0
    ORDER BY 2, 1
    """,
    """
    INSERT INTO stg.usage_dataset
    SELECT $last_day - CAST(d AS INTEGER), 0, 0, 'x', 'v', 'bench', 'bench', TIMESTAMP '2026-11-01'
    FROM range(1, $days + 1) AS ds(d)
    """,
    """
    INSERT INTO stg.crm_company_snapshot
    SELECT $last_day - CAST(d AS INTEGER), 'c-' || lpad(CAST(c AS VARCHAR), 7, '0'), 'Company ' || c, 'DE', 'saas',
           TIMESTAMP '2026-06-01' + to_days(CAST((c % 150) AS INTEGER)), 'bench', 'bench', TIMESTAMP '2026-11-01'
    FROM range(0, $days + 7, 7) AS ds(d), range(1, $companies + 1) AS cs(c)
    ORDER BY 1, 2
    """,
    """
    INSERT INTO stg.crm_snapshot
    SELECT $last_day - CAST(d AS INTEGER), $companies, 'x', 'v', 'bench', 'bench', TIMESTAMP '2026-11-01'
    FROM range(0, $days + 7, 7) AS ds(d)
    """,
    """
    INSERT INTO analytics.company_daily_activity
    SELECT 'c-' || lpad(CAST(c AS VARCHAR), 7, '0'), $last_day - CAST(d AS INTEGER), 'Company ' || c, 'DE', 'saas',
           TIMESTAMP '2026-06-01', $last_day - CAST(d AS INTEGER), 5, 60, 12.0, 35, 420, 7, 30, false, 'bench',
           TIMESTAMP '2026-11-01'
    FROM range(1, $days + 1) AS ds(d), range(1, $companies + 1) AS cs(c)
    ORDER BY 2, 1
    """,
]


def build_once(companies: int, history_days: int, new_days: int = 3) -> dict[str, float]:
    """Seed the history, then stage and build `new_days` further days one by one (as the daily
    job does) and report the median build: one run on a busy 2-core machine is noisy."""
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = DuckDbWarehouse(Path(tmp) / "w.duckdb")
        warehouse.apply_schema()
        con = warehouse._con  # the benchmark seeds history directly
        seed_end = LAST_DAY - timedelta(days=new_days)
        params = {"companies": companies, "days": history_days, "last_day": seed_end + timedelta(days=1)}
        _, seed_s = timed(
            lambda: [
                con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql}) for sql in HISTORY_SQL
            ]
        )
        builds, rebuilds, stages = [], [], []
        for offset in range(new_days, 0, -1):
            day = LAST_DAY - timedelta(days=offset - 1)
            rows = [
                (f"c-{c:07d}", (c * 3 + offset) % 40, ((c * 3) % 40) * 11) for c in range(1, companies + 1)
            ]
            lineage = Lineage("bench", "bench", datetime.now(UTC))
            _, stage_s = timed(
                lambda day=day, rows=rows, lineage=lineage: warehouse.replace_usage_day(
                    day, rows, lineage, checksum=str(day), quarantined=0, version="z"
                )
            )
            result, build_s = timed(lambda day=day: warehouse.build_days([day], PARAMS))
            assert result.days and result.days[0].rows >= companies, result
            _, rebuild_s = timed(lambda day=day: warehouse.build_days([day], PARAMS))  # nothing changed
            stages.append(stage_s)
            builds.append(build_s)
            rebuilds.append(rebuild_s)
        warehouse.close()
        return {
            "seed_s": seed_s,
            "stage_s": statistics.median(stages),
            "build_s": statistics.median(builds),
            "rebuild_s": statistics.median(rebuilds),
            "builds_s": builds,
            "rows": result.days[0].rows,
        }


def main() -> int:
    targets = Targets()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=1_000_000, help="companies for the large single day")
    args = parser.parse_args()
    print(f"Benchmark 4: build one day ({args.companies:,} companies)")
    short = build_once(args.companies, 7)
    line("7 days of history: build", f"{short['build_s']:.2f} s (no-op rebuild {short['rebuild_s']:.2f} s)")
    long = build_once(args.companies, 730)
    line("730 days of history: build", f"{long['build_s']:.2f} s (no-op rebuild {long['rebuild_s']:.2f} s)")
    ratio = long["build_s"] / short["build_s"]
    targets.at_most("ratio 730 / 7 days", ratio, 1.3, f"{ratio:.2f}")
    big = build_once(args.big, 7)
    targets.at_most(
        f"{args.big:,} companies, 7 days of history: build, s", big["build_s"], 30, f"{big['build_s']:.2f} s"
    )
    save(
        "build",
        {
            "companies": args.companies,
            "history_7": short,
            "history_730": long,
            "ratio": ratio,
            "big_companies": args.big,
            "big": big,
            "targets": targets.checked,
        },
    )
    return targets.exit_status


if __name__ == "__main__":
    sys.exit(main())
