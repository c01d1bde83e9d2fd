"""Benchmark 3: staging throughput.

* usage: rows per second through `Warehouse.replace_usage_day` into DuckDB (the bulk load and
  the day's replacement), for one day of 1,000,000 rows, versus a row-by-row `executemany`
  baseline into the same table in the same run;
* CRM: a generated 1,000,000-row CSV dropped through the real CRM loader (parse, validate,
  quarantine, checksum, stage), wall time.
"""

from __future__ import annotations

import csv
import random
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import Targets, line, save, timed
from shared.bootstrap import build_services
from shared.config import Settings
from shared.domain import names
from shared.ports import Lineage
from shared.services.staging import load_crm_drop

DAY = date(2026, 10, 1)


def usage_rows(n: int) -> list[tuple[str, int, int]]:
    rng = random.Random(5)
    return [(f"c-{i:07d}", rng.randrange(0, 80), rng.randrange(0, 5000)) for i in range(n)]


def crm_file(path: Path, n: int) -> None:
    rng = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["company_id", "name", "country", "industry_tag", "last_contact_at"])
        for i in range(n):
            contact = (
                "" if i % 13 == 0 else f"2026-{rng.randrange(1, 10):02d}-{rng.randrange(1, 28):02d}T10:00:00Z"
            )
            writer.writerow([f"c-{i:07d}", f"Company, {i}", rng.choice(["DE", "FR", "US"]), "saas", contact])


def main() -> int:
    targets = Targets()
    n = 1_000_000
    print(f"Benchmark 3: staging ({n:,} rows)")
    rows = usage_rows(n)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(local_data_dir=Path(tmp))
        services = build_services(settings, local_bus=True)
        warehouse = services.warehouse
        lineage = Lineage("bench", "bench", datetime.now(UTC))
        status, usage_s = timed(
            lambda: warehouse.replace_usage_day(DAY, rows, lineage, checksum="a", quarantined=0, version="1")
        )
        assert status == "staged"
        targets.at_least(
            "usage into DuckDB: replace_usage_day, rows/s",
            n / usage_s,
            500_000,
            f"{usage_s:.2f} s = {n / usage_s:,.0f} rows/s",
        )

        # Baseline: the row-by-row path the bulk load replaces (100,000 rows, scaled).
        sample = rows[:100_000]
        con = warehouse._con.cursor()
        con.execute("CREATE TEMP TABLE row_by_row (company_id VARCHAR, active_users INTEGER, events INTEGER)")
        _, baseline_s = timed(lambda: con.executemany("INSERT INTO row_by_row VALUES (?, ?, ?)", sample))
        baseline_rate = len(sample) / baseline_s
        line(
            "baseline: executemany row by row",
            f"{baseline_rate:,.0f} rows/s ({n / usage_s / baseline_rate:.0f}x slower)",
        )

        path = Path(tmp) / "companies_2026-10-01.csv"
        crm_file(path, n)
        services.blobs.put(names.CRM_CONTAINER, path.name, path.read_bytes())
        outcome, crm_s = timed(lambda: load_crm_drop(services, path.name))
        assert outcome.staged == n, outcome
        targets.at_most("CRM file of 1,000,000 rows through the loader, s", crm_s, 10, f"{crm_s:.2f} s")
        warehouse.close()
    save(
        "staging",
        {
            "usage_rows": n,
            "usage_s": usage_s,
            "usage_rows_per_s": n / usage_s,
            "baseline_rows_per_s": baseline_rate,
            "crm_rows": n,
            "crm_s": crm_s,
            "targets": targets.checked,
        },
    )
    return targets.exit_status


if __name__ == "__main__":
    sys.exit(main())
