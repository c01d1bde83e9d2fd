"""The minimal pipeline (issue 24's reference): what the same work costs with nothing but the
work. 8 threads fetch the day's pages from the API, each page is parsed once, the records go
through one CSV file into DuckDB, and one window query computes the daily table. No keys, no
landing, no ledger, no validation, no quality gate, no lineage: a floor, not a pipeline anyone
should run.

    python benchmarks/minimal_pipeline.py crm DB FILE...          # CRM snapshots (untimed)
    python benchmarks/minimal_pipeline.py usage DB FIRST LAST     # USAGE_API_BASE_URL, USAGE_API_KEY
"""

from __future__ import annotations

import csv
import functools
import os
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import requests

PAGE_SIZE = 500
THREADS = 8

TABLE_SQL = """
CREATE OR REPLACE TABLE daily AS
WITH snap AS (
    SELECT d.activity_date, MAX(s.snapshot_date) AS snapshot_date
    FROM (SELECT DISTINCT activity_date FROM usage) AS d
    JOIN (SELECT DISTINCT snapshot_date FROM crm) AS s
      ON s.snapshot_date BETWEEN d.activity_date - 7 AND d.activity_date
    GROUP BY d.activity_date
),
rows AS (
    SELECT n.activity_date, c.company_id FROM snap AS n JOIN crm AS c ON c.snapshot_date = n.snapshot_date
    UNION
    SELECT activity_date, company_id FROM usage
),
timeline AS (
    SELECT r.company_id, r.activity_date, u.active_users, u.events
    FROM rows AS r LEFT JOIN usage AS u ON u.company_id = r.company_id AND u.activity_date = r.activity_date
),
summed AS (
    SELECT *, SUM(active_users) OVER w AS rolling_users, SUM(events) OVER w AS rolling_events
    FROM timeline
    WINDOW w AS (PARTITION BY company_id ORDER BY activity_date
                 RANGE BETWEEN INTERVAL 6 DAY PRECEDING AND CURRENT ROW)
)
SELECT s.company_id, s.activity_date, c.name, c.country, c.industry_tag, c.last_contact_at,
       s.active_users, s.events, s.rolling_users, s.rolling_events,
       COALESCE(s.rolling_users, 0) < 10 AS is_churn_risk
FROM summed AS s
JOIN snap AS n ON n.activity_date = s.activity_date
LEFT JOIN crm AS c ON c.snapshot_date = n.snapshot_date AND c.company_id = s.company_id
"""


def load_crm(db: str, files: list[str]) -> None:
    con = duckdb.connect(db)
    con.execute(
        "CREATE TABLE IF NOT EXISTS crm (company_id VARCHAR, name VARCHAR, country VARCHAR,"
        " industry_tag VARCHAR, last_contact_at VARCHAR, snapshot_date DATE)"
    )
    for name in files:
        day = Path(name).stem.rsplit("_", 1)[-1]
        con.execute(
            "INSERT INTO crm SELECT *, CAST($day AS DATE) FROM read_csv($f, header = true, all_varchar = true)",
            {"f": name, "day": day},
        )
    con.close()


_local = threading.local()


def _page(base: str, key: str, day: str, page: int) -> dict[str, Any]:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    answer = session.get(
        f"{base}/v2/usage",
        params={"date": day, "page": page, "page_size": PAGE_SIZE},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def load_usage(db: str, first: date, last: date) -> int:
    base, key = os.environ["USAGE_API_BASE_URL"].rstrip("/"), os.environ.get("USAGE_API_KEY", "")
    con = duckdb.connect(db)
    con.execute(
        "CREATE TABLE IF NOT EXISTS usage (company_id VARCHAR, activity_date DATE, active_users INTEGER, events INTEGER)"
    )
    records = 0
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(THREADS) as pool:
        day = first
        while day <= last:
            iso = day.isoformat()
            head = _page(base, key, iso, 1)
            pages = [
                head,
                *pool.map(functools.partial(_page, base, key, iso), range(2, int(head["total_pages"]) + 1)),
            ]
            path = Path(tmp) / f"{iso}.csv"
            with path.open("w", newline="") as handle:
                out = csv.writer(handle)
                for body in pages:
                    out.writerows(
                        (r["company_id"], r["date"], r["active_users"], r["events"]) for r in body["data"]
                    )
                    records += len(body["data"])
            con.execute(
                "INSERT INTO usage SELECT * FROM read_csv($f, header = false, columns ="
                " {'company_id': 'VARCHAR', 'activity_date': 'DATE', 'active_users': 'INTEGER', 'events': 'INTEGER'})",
                {"f": str(path)},
            )
            day += timedelta(days=1)
    con.execute(TABLE_SQL)
    con.close()
    return records


def main() -> int:
    command, db, *rest = sys.argv[1:]
    if command == "crm":
        load_crm(db, rest)
    else:
        print(load_usage(db, date.fromisoformat(rest[0]), date.fromisoformat(rest[1])), "records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
