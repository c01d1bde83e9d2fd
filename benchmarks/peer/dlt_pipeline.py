"""The peer: what a data engineer would build with dlt instead of this project.

Runs in `.venv-bench` (dlt is a benchmark-only dependency, `benchmarks/peer/requirements.txt`),
never imported by the project. Two steps, each its own process so each can be timed alone:

    crm   FILE...            load CRM snapshot CSVs (merge on snapshot_date, company_id)
    usage FIRST LAST         fetch every day FIRST..LAST with dlt's RESTClient and a page-number
                             paginator (has_next_page), merge into DuckDB through parquet files,
                             then build analytics.company_daily_activity with one SQL statement

The SQL is the contract's table computed from scratch over everything loaded, the way a dbt
model would do it; `bench_peer_dlt.py` checks it matches our table row for row.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import PageNumberPaginator

PIPELINE = "company_activity_peer"
DATASET = "peer"
PAGE_SIZE = 500

# The contract's table from scratch (section 3): effective snapshot within 7 days, companies of
# the snapshot plus companies with usage, 7-day rolling sums, churn rule with the defaults.
ANALYTICS_SQL = """
CREATE OR REPLACE TABLE peer.company_daily_activity AS
WITH usage AS (
    SELECT company_id, CAST("date" AS DATE) AS activity_date, active_users, events
    FROM peer.product_usage_daily
),
usage_days AS (SELECT DISTINCT activity_date FROM usage),
snapshots AS (SELECT DISTINCT snapshot_date FROM peer.crm_company_snapshot),
effective AS (
    SELECT d.activity_date, MAX(s.snapshot_date) AS snapshot_date
    FROM usage_days AS d
    JOIN snapshots AS s ON s.snapshot_date BETWEEN d.activity_date - 7 AND d.activity_date
    GROUP BY d.activity_date
),
day_companies AS (
    SELECT e.activity_date, c.company_id
    FROM effective AS e JOIN peer.crm_company_snapshot AS c ON c.snapshot_date = e.snapshot_date
    UNION
    SELECT u.activity_date, u.company_id
    FROM usage AS u JOIN effective AS e ON e.activity_date = u.activity_date
),
rolling AS (
    SELECT dc.activity_date, dc.company_id,
           COALESCE(SUM(u.active_users) FILTER (WHERE u.activity_date = dc.activity_date), 0) AS active_users,
           COALESCE(SUM(u.events) FILTER (WHERE u.activity_date = dc.activity_date), 0) AS events,
           COALESCE(SUM(u.active_users), 0) AS rolling_7d_active_users,
           COALESCE(SUM(u.events), 0) AS rolling_7d_events
    FROM day_companies AS dc
    LEFT JOIN usage AS u
           ON u.company_id = dc.company_id
          AND u.activity_date BETWEEN dc.activity_date - 6 AND dc.activity_date
    GROUP BY dc.activity_date, dc.company_id
),
observed AS (
    SELECT e.activity_date, COUNT(d.activity_date) AS usage_days_observed_7d
    FROM effective AS e
    JOIN usage_days AS d ON d.activity_date BETWEEN e.activity_date - 6 AND e.activity_date
    GROUP BY e.activity_date
)
SELECT r.company_id, r.activity_date, c.name AS company_name, c.country, c.industry_tag,
       c.last_contact_at, e.snapshot_date AS crm_snapshot_date,
       CAST(r.active_users AS INTEGER) AS active_users, CAST(r.events AS INTEGER) AS events,
       CASE WHEN r.active_users = 0 THEN NULL
            ELSE CAST((r.events * 20000 + r.active_users) // (2 * r.active_users) AS DECIMAL(18, 0))
                 / 10000 END AS events_per_user,
       CAST(r.rolling_7d_active_users AS INTEGER) AS rolling_7d_active_users,
       CAST(r.rolling_7d_events AS INTEGER) AS rolling_7d_events,
       CAST(o.usage_days_observed_7d AS INTEGER) AS usage_days_observed_7d,
       CAST(datediff('day', CAST(c.last_contact_at AS DATE), r.activity_date) AS INTEGER) AS days_since_last_contact,
       (r.rolling_7d_active_users = 0
        OR (r.rolling_7d_active_users < 10
            AND (c.last_contact_at IS NULL
                 OR datediff('day', CAST(c.last_contact_at AS DATE), r.activity_date) > 30))) AS is_churn_risk
FROM rolling AS r
JOIN effective AS e ON e.activity_date = r.activity_date
JOIN observed AS o ON o.activity_date = r.activity_date
LEFT JOIN peer.crm_company_snapshot AS c
       ON c.snapshot_date = e.snapshot_date AND c.company_id = r.company_id
"""


def pipeline(workdir: Path) -> Any:
    return dlt.pipeline(
        pipeline_name=PIPELINE,
        destination=dlt.destinations.duckdb(str(workdir / "dlt.duckdb")),
        dataset_name=DATASET,
        pipelines_dir=str(workdir / "dlt"),
        progress="log" if os.environ.get("PEER_VERBOSE") else None,
    )


def _utc(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    parsed = datetime.fromisoformat(text)
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def crm(workdir: Path, files: list[str]) -> None:
    @dlt.resource(
        name="crm_company_snapshot",
        write_disposition="merge",
        primary_key=("snapshot_date", "company_id"),
        columns={"last_contact_at": {"data_type": "timestamp", "timezone": False}},
    )
    def rows() -> Iterator[dict[str, Any]]:
        for name in files:
            snapshot = date.fromisoformat(Path(name).stem.rsplit("_", 1)[-1])
            with open(name, newline="", encoding="utf-8-sig") as handle:
                for row in csv.DictReader(handle):
                    yield {
                        "snapshot_date": snapshot,
                        "company_id": row["company_id"].strip(),
                        "name": row["name"].strip() or None,
                        "country": row["country"].strip() or None,
                        "industry_tag": row["industry_tag"].strip() or None,
                        "last_contact_at": _utc(row["last_contact_at"]),
                    }

    pipeline(workdir).run(rows(), loader_file_format="parquet")


def usage(workdir: Path, first: date, last: date) -> None:
    client = RESTClient(
        base_url=os.environ["USAGE_API_BASE_URL"],
        auth=BearerTokenAuth(os.environ["USAGE_API_KEY"]),
        paginator=PageNumberPaginator(
            base_page=1, page_param="page", total_path=None, has_more_path="has_next_page"
        ),
        data_selector="data",
    )

    @dlt.resource(name="product_usage_daily", write_disposition="merge", primary_key=("company_id", "date"))
    def pages() -> Iterator[list[dict[str, Any]]]:
        day = first
        while day <= last:
            yield from client.paginate("/v2/usage", params={"date": day.isoformat(), "page_size": PAGE_SIZE})
            day += timedelta(days=1)

    pipeline(workdir).run(pages(), loader_file_format="parquet")
    with duckdb.connect(str(workdir / "dlt.duckdb")) as con:
        con.execute(ANALYTICS_SQL)


def main(argv: list[str]) -> None:
    workdir = Path(os.environ["PEER_WORKDIR"])
    if argv[0] == "crm":
        crm(workdir, argv[1:])
    elif argv[0] == "usage":
        usage(workdir, date.fromisoformat(argv[1]), date.fromisoformat(argv[2]))
    else:
        raise SystemExit(f"unknown step {argv[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])
