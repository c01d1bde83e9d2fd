-- The local DuckDB warehouse's schema. Column names are fixed by the contract (section 3) and
-- match sql/mssql/schema.sql one for one. The app applies it itself only to a file it created
-- (warehouse_duckdb.py); `python -m shared.cli init-db` applies it to any. Safe to apply again
-- and over any earlier version: tables IF NOT EXISTS, views replaced, what a later version adds
-- to an existing table a guarded ALTER (ALTER TABLE ... ADD COLUMN IF NOT EXISTS ...), never a
-- DROP. The last statements record the version (SCHEMA_VERSIONS in shared/adapters/warehouse_sql.py).
CREATE SCHEMA IF NOT EXISTS stg;
CREATE SCHEMA IF NOT EXISTS analytics;

-- One row per (company_id, activity_date); a day's rows are replaced as a whole. Checked by
-- stage_usage_day.sql in the staging transaction instead of a PRIMARY KEY (schema version 2: the
-- key's index cost a 100,000-row day more than the check; reads go by activity_date, whose
-- row groups DuckDB skips by their min/max without an index).
CREATE TABLE IF NOT EXISTS stg.product_usage_daily (
    company_id    VARCHAR   NOT NULL,
    activity_date DATE      NOT NULL,
    active_users  INTEGER   NOT NULL,
    events        INTEGER   NOT NULL,
    run_id        VARCHAR   NOT NULL,
    source_blob   VARCHAR   NOT NULL,
    loaded_at     TIMESTAMP NOT NULL
);

-- One row per staged usage dataset (a day), including days whose dataset has zero records:
-- "usage_days_observed_7d" counts these, not days that happen to have rows.
CREATE TABLE IF NOT EXISTS stg.usage_dataset (
    activity_date     DATE      NOT NULL PRIMARY KEY,
    record_count      INTEGER   NOT NULL,
    quarantined_count INTEGER   NOT NULL,
    checksum          VARCHAR   NOT NULL,
    source_version    VARCHAR   NOT NULL,  -- orders re-fetches: an older one arriving late is stale
    run_id            VARCHAR   NOT NULL,
    source_blob       VARCHAR   NOT NULL,
    loaded_at         TIMESTAMP NOT NULL
);

-- One row per (snapshot_date, company_id); dropping the same snapshot date again replaces it.
-- One row per (activity_date, company_id) whose usage on the day is unknown: the API sent a
-- record for the company and day that was quarantined for its counts, and no record of it was
-- staged (contract section 3). Replaced with the day's usage, in the same transaction.
CREATE TABLE IF NOT EXISTS stg.usage_unknown (
    activity_date DATE      NOT NULL,
    company_id    VARCHAR   NOT NULL,
    reason        VARCHAR   NOT NULL,
    run_id        VARCHAR   NOT NULL,
    source_blob   VARCHAR   NOT NULL,
    loaded_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (activity_date, company_id)
);

CREATE TABLE IF NOT EXISTS stg.crm_company_snapshot (
    snapshot_date   DATE      NOT NULL,
    company_id      VARCHAR   NOT NULL,
    company_name    VARCHAR,
    country         VARCHAR,
    industry_tag    VARCHAR,
    last_contact_at TIMESTAMP,
    run_id          VARCHAR   NOT NULL,
    source_blob     VARCHAR   NOT NULL,
    loaded_at       TIMESTAMP NOT NULL,
    PRIMARY KEY (snapshot_date, company_id)
);

CREATE TABLE IF NOT EXISTS stg.crm_snapshot (
    snapshot_date DATE      NOT NULL PRIMARY KEY,
    row_count     INTEGER   NOT NULL,
    checksum       VARCHAR   NOT NULL,
    source_version VARCHAR   NOT NULL,  -- orders drops of the same snapshot date
    run_id         VARCHAR   NOT NULL,
    source_blob   VARCHAR   NOT NULL,
    loaded_at     TIMESTAMP NOT NULL
);

-- One row per (activity_date, company_id), checked by the build in its own transaction
-- (build_days.sql) instead of a PRIMARY KEY: DuckDB's key index cost every build's writes and
-- COMMIT, and every checkpoint rewrote it whole, so a close grew with history (schema version 2,
-- docs/performance.md). sql/mssql keeps its clustered key: there it is the table's order.
CREATE TABLE IF NOT EXISTS analytics.company_daily_activity (
    company_id              VARCHAR        NOT NULL,
    activity_date           DATE           NOT NULL,
    company_name            VARCHAR,
    country                 VARCHAR,
    industry_tag            VARCHAR,
    last_contact_at         TIMESTAMP,
    crm_snapshot_date       DATE           NOT NULL,
    active_users            INTEGER,                 -- NULL: usage unknown on the day
    events                  INTEGER,
    events_per_user         DECIMAL(18, 4),
    rolling_7d_active_users BIGINT         NOT NULL,
    rolling_7d_events       BIGINT         NOT NULL,
    usage_days_observed_7d  INTEGER        NOT NULL,
    usage_unknown_7d        INTEGER        NOT NULL,
    days_since_last_contact INTEGER,
    is_churn_risk           BOOLEAN,                 -- NULL: cannot tell (contract section 3)
    pipeline_run_id         VARCHAR        NOT NULL,
    loaded_at               TIMESTAMP      NOT NULL
);

-- The version of this schema, one row: written by the last statements of this file.
CREATE TABLE IF NOT EXISTS analytics.schema_version (
    version    INTEGER   NOT NULL,
    applied_at TIMESTAMP NOT NULL
);

-- Upgrades of the tables above go here; a new column goes in its CREATE TABLE too.
--
-- Version 1 (unknown usage): a file made before unknown usage (contract section 3) is brought up to this schema in place:
-- its rows keep their values (no quarantined record was known to make a day unknown then).
ALTER TABLE analytics.company_daily_activity ADD COLUMN IF NOT EXISTS usage_unknown_7d INTEGER DEFAULT 0;
ALTER TABLE analytics.company_daily_activity ALTER COLUMN usage_unknown_7d SET NOT NULL;
ALTER TABLE analytics.company_daily_activity ALTER COLUMN active_users DROP NOT NULL;
ALTER TABLE analytics.company_daily_activity ALTER COLUMN events DROP NOT NULL;
ALTER TABLE analytics.company_daily_activity ALTER COLUMN is_churn_risk DROP NOT NULL;
ALTER TABLE analytics.company_daily_activity ALTER COLUMN rolling_7d_active_users TYPE BIGINT;
ALTER TABLE analytics.company_daily_activity ALTER COLUMN rolling_7d_events TYPE BIGINT;
--
-- Version 2 (analytics.company_daily_activity and stg.product_usage_daily without their primary
-- keys): DuckDB cannot drop a key in place, so a file whose tables still have them is moved to
-- keyless copies by the steps of upgrades/2_*.sql, which the adapter runs with this file, in the
-- same transaction, only while a key is there.

-- Rollups for trends (docs/data-dictionary.md): one row per company and ISO week (Monday to
-- Sunday), and per company and calendar month, over the days built for it. Sums are of daily
-- counts (active_user_days: one user active on 3 days counts 3); a day whose usage is unknown
-- adds nothing to them and is counted in days_usage_unknown. Averages are over the days the
-- company has a row with known usage in the period (NULL when there is none), rounded half away from zero to 4 places in whole
-- numbers (DuckDB divides DECIMALs in DOUBLE). The CRM attributes and the churn-risk state are
-- those of the period's last built day. The query behind both is the same, with the period's
-- first day as its key: views, so they are never out of date.
CREATE OR REPLACE VIEW analytics.company_weekly_activity AS
WITH periods AS (
    SELECT company_id,
           CAST(date_trunc('week', activity_date) AS DATE) AS week_start,
           COUNT(*) AS days_built,
           SUM(CASE WHEN active_users > 0 THEN 1 ELSE 0 END) AS active_days,
           SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END) AS days_usage_unknown,
           -- NULL when the usage of no day is known: refused usage is never a 0.
           CASE WHEN COUNT(*) > SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END)
                THEN SUM(COALESCE(CAST(active_users AS BIGINT), 0)) END AS active_user_days,
           CASE WHEN COUNT(*) > SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END)
                THEN SUM(COALESCE(CAST(events AS BIGINT), 0)) END AS total_events,
           MAX(activity_date) AS last_activity_date
    FROM analytics.company_daily_activity
    GROUP BY company_id, CAST(date_trunc('week', activity_date) AS DATE)
)
SELECT p.company_id,
       CAST(isoyear(p.week_start) AS INTEGER) AS iso_year,
       CAST(week(p.week_start) AS INTEGER) AS iso_week,
       p.week_start,
       CAST(p.week_start + 6 AS DATE) AS week_end,
       CAST(p.days_built AS INTEGER) AS days_built,
       CAST(p.active_days AS INTEGER) AS active_days,
       CAST(p.days_usage_unknown AS INTEGER) AS days_usage_unknown,
       CAST(p.active_user_days AS BIGINT) AS active_user_days,
       CASE WHEN p.days_built > p.days_usage_unknown THEN
            CAST(CAST((p.active_user_days * 20000 + p.days_built - p.days_usage_unknown)
                      // (2 * (p.days_built - p.days_usage_unknown)) AS DECIMAL(18, 0))
                 * CAST(0.0001 AS DECIMAL(5, 4)) AS DECIMAL(18, 4)) END AS avg_daily_active_users,
       CAST(p.total_events AS BIGINT) AS total_events,
       CASE WHEN p.days_built > p.days_usage_unknown THEN
            CAST(CAST((p.total_events * 20000 + p.days_built - p.days_usage_unknown)
                      // (2 * (p.days_built - p.days_usage_unknown)) AS DECIMAL(18, 0))
                 * CAST(0.0001 AS DECIMAL(5, 4)) AS DECIMAL(18, 4)) END AS avg_daily_events,
       p.last_activity_date,
       d.is_churn_risk,
       d.company_name,
       d.country,
       d.industry_tag,
       d.last_contact_at,
       d.crm_snapshot_date
FROM periods AS p
JOIN analytics.company_daily_activity AS d
  ON d.company_id = p.company_id AND d.activity_date = p.last_activity_date;

CREATE OR REPLACE VIEW analytics.company_monthly_activity AS
WITH periods AS (
    SELECT company_id,
           CAST(date_trunc('month', activity_date) AS DATE) AS month_start,
           COUNT(*) AS days_built,
           SUM(CASE WHEN active_users > 0 THEN 1 ELSE 0 END) AS active_days,
           SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END) AS days_usage_unknown,
           -- NULL when the usage of no day is known: refused usage is never a 0.
           CASE WHEN COUNT(*) > SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END)
                THEN SUM(COALESCE(CAST(active_users AS BIGINT), 0)) END AS active_user_days,
           CASE WHEN COUNT(*) > SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END)
                THEN SUM(COALESCE(CAST(events AS BIGINT), 0)) END AS total_events,
           MAX(activity_date) AS last_activity_date
    FROM analytics.company_daily_activity
    GROUP BY company_id, CAST(date_trunc('month', activity_date) AS DATE)
)
SELECT p.company_id,
       CAST(year(p.month_start) AS INTEGER) AS year,
       CAST(month(p.month_start) AS INTEGER) AS month,
       p.month_start,
       CAST(last_day(p.month_start) AS DATE) AS month_end,
       CAST(p.days_built AS INTEGER) AS days_built,
       CAST(p.active_days AS INTEGER) AS active_days,
       CAST(p.days_usage_unknown AS INTEGER) AS days_usage_unknown,
       CAST(p.active_user_days AS BIGINT) AS active_user_days,
       CASE WHEN p.days_built > p.days_usage_unknown THEN
            CAST(CAST((p.active_user_days * 20000 + p.days_built - p.days_usage_unknown)
                      // (2 * (p.days_built - p.days_usage_unknown)) AS DECIMAL(18, 0))
                 * CAST(0.0001 AS DECIMAL(5, 4)) AS DECIMAL(18, 4)) END AS avg_daily_active_users,
       CAST(p.total_events AS BIGINT) AS total_events,
       CASE WHEN p.days_built > p.days_usage_unknown THEN
            CAST(CAST((p.total_events * 20000 + p.days_built - p.days_usage_unknown)
                      // (2 * (p.days_built - p.days_usage_unknown)) AS DECIMAL(18, 0))
                 * CAST(0.0001 AS DECIMAL(5, 4)) AS DECIMAL(18, 4)) END AS avg_daily_events,
       p.last_activity_date,
       d.is_churn_risk,
       d.company_name,
       d.country,
       d.industry_tag,
       d.last_contact_at,
       d.crm_snapshot_date
FROM periods AS p
JOIN analytics.company_daily_activity AS d
  ON d.company_id = p.company_id AND d.activity_date = p.last_activity_date;

-- Last: the version this file brings the warehouse to (SCHEMA_VERSIONS["duckdb"] in
-- shared/adapters/warehouse_sql.py; tests/infra/test_sql_dialects.py keeps them equal).
DELETE FROM analytics.schema_version;
INSERT INTO analytics.schema_version (version, applied_at) VALUES (2, make_timestamp(epoch_us(current_timestamp)));
