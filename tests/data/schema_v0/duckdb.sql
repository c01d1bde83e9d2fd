-- Idempotent DDL for the local DuckDB warehouse. Column names are fixed by the contract (section 3).
CREATE SCHEMA IF NOT EXISTS stg;
CREATE SCHEMA IF NOT EXISTS analytics;

-- One row per (company_id, activity_date); a day's rows are replaced as a whole.
CREATE TABLE IF NOT EXISTS stg.product_usage_daily (
    company_id    VARCHAR   NOT NULL,
    activity_date DATE      NOT NULL,
    active_users  INTEGER   NOT NULL,
    events        INTEGER   NOT NULL,
    run_id        VARCHAR   NOT NULL,
    source_blob   VARCHAR   NOT NULL,
    loaded_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (activity_date, company_id)
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

CREATE TABLE IF NOT EXISTS analytics.company_daily_activity (
    company_id              VARCHAR        NOT NULL,
    activity_date           DATE           NOT NULL,
    company_name            VARCHAR,
    country                 VARCHAR,
    industry_tag            VARCHAR,
    last_contact_at         TIMESTAMP,
    crm_snapshot_date       DATE           NOT NULL,
    active_users            INTEGER        NOT NULL,
    events                  INTEGER        NOT NULL,
    events_per_user         DECIMAL(18, 4),
    rolling_7d_active_users INTEGER        NOT NULL,
    rolling_7d_events       INTEGER        NOT NULL,
    usage_days_observed_7d  INTEGER        NOT NULL,
    days_since_last_contact INTEGER,
    is_churn_risk           BOOLEAN        NOT NULL,
    pipeline_run_id         VARCHAR        NOT NULL,
    loaded_at               TIMESTAMP      NOT NULL,
    PRIMARY KEY (activity_date, company_id)
);

-- Rollups for trends (docs/data-dictionary.md): one row per company and ISO week (Monday to
-- Sunday), and per company and calendar month, over the days built for it. Sums are of daily
-- counts (active_user_days: one user active on 3 days counts 3). Averages are over the days
-- the company has a row in the period, rounded half away from zero to 4 places in whole
-- numbers (DuckDB divides DECIMALs in DOUBLE). The CRM attributes and the churn-risk state are
-- those of the period's last built day. The query behind both is the same, with the period's
-- first day as its key: views, so they are never out of date.
CREATE OR REPLACE VIEW analytics.company_weekly_activity AS
WITH periods AS (
    SELECT company_id,
           CAST(date_trunc('week', activity_date) AS DATE) AS week_start,
           COUNT(*) AS days_built,
           SUM(CASE WHEN active_users > 0 THEN 1 ELSE 0 END) AS active_days,
           SUM(CAST(active_users AS BIGINT)) AS active_user_days,
           SUM(CAST(events AS BIGINT)) AS total_events,
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
       CAST(p.active_user_days AS BIGINT) AS active_user_days,
       CAST(CAST((p.active_user_days * 20000 + p.days_built) // (2 * p.days_built) AS DECIMAL(18, 0))
            * CAST(0.0001 AS DECIMAL(5, 4)) AS DECIMAL(18, 4)) AS avg_daily_active_users,
       CAST(p.total_events AS BIGINT) AS total_events,
       CAST(CAST((p.total_events * 20000 + p.days_built) // (2 * p.days_built) AS DECIMAL(18, 0))
            * CAST(0.0001 AS DECIMAL(5, 4)) AS DECIMAL(18, 4)) AS avg_daily_events,
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
           SUM(CAST(active_users AS BIGINT)) AS active_user_days,
           SUM(CAST(events AS BIGINT)) AS total_events,
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
       CAST(p.active_user_days AS BIGINT) AS active_user_days,
       CAST(CAST((p.active_user_days * 20000 + p.days_built) // (2 * p.days_built) AS DECIMAL(18, 0))
            * CAST(0.0001 AS DECIMAL(5, 4)) AS DECIMAL(18, 4)) AS avg_daily_active_users,
       CAST(p.total_events AS BIGINT) AS total_events,
       CAST(CAST((p.total_events * 20000 + p.days_built) // (2 * p.days_built) AS DECIMAL(18, 0))
            * CAST(0.0001 AS DECIMAL(5, 4)) AS DECIMAL(18, 4)) AS avg_daily_events,
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
