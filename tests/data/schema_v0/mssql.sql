SET NOCOUNT ON;
-- Idempotent DDL for the Azure SQL warehouse (one batch, safe to run on every start). Column
-- names are fixed by the contract (section 3) and match sql/duckdb/schema.sql one for one.
--
-- company_id columns use a binary collation: DuckDB compares strings byte for byte, so 'acme'
-- and 'ACME' are two companies there. Under a database's usual case-insensitive collation they
-- would collide in the primary keys (a staging load failing on a key violation) and sort in a
-- different order than the local warehouse.

-- CREATE SCHEMA must be the only statement of its batch, hence sp_executesql. The conditions
-- are parenthesised so that sqlglot (tests/infra/test_sql_dialects.py) reads the EXEC as the
-- IF's statement instead of an alias of the condition.
IF (SCHEMA_ID(N'stg') IS NULL) EXEC sp_executesql @stmt = N'CREATE SCHEMA stg';
IF (SCHEMA_ID(N'analytics') IS NULL) EXEC sp_executesql @stmt = N'CREATE SCHEMA analytics';

-- One row per (company_id, activity_date); a day's rows are replaced as a whole, so the
-- clustered key leads with the day (staging deletes and the build's window read are ranges).
IF OBJECT_ID(N'stg.product_usage_daily', N'U') IS NULL
CREATE TABLE stg.product_usage_daily (
    company_id    NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    activity_date DATE           NOT NULL,
    active_users  INT            NOT NULL,
    events        INT            NOT NULL,
    run_id        NVARCHAR(64)   NOT NULL,
    source_blob   NVARCHAR(1024) NOT NULL,
    loaded_at     DATETIME2(6)   NOT NULL,
    CONSTRAINT pk_product_usage_daily PRIMARY KEY CLUSTERED (activity_date, company_id)
);

-- One row per staged usage dataset (a day), including days whose dataset has zero records:
-- "usage_days_observed_7d" counts these, not days that happen to have rows.
-- source_version orders re-fetches (an older one arriving late is stale). It is compared in
-- Python, so it must round-trip whole: a CRM version is "<ISO time>|<blob name>" and blob
-- names reach 1024 characters, hence the width.
IF OBJECT_ID(N'stg.usage_dataset', N'U') IS NULL
CREATE TABLE stg.usage_dataset (
    activity_date     DATE           NOT NULL,
    record_count      INT            NOT NULL,
    quarantined_count INT            NOT NULL,
    checksum          NVARCHAR(128)  NOT NULL,
    source_version    NVARCHAR(1100) NOT NULL,
    run_id            NVARCHAR(64)   NOT NULL,
    source_blob       NVARCHAR(1024) NOT NULL,
    loaded_at         DATETIME2(6)   NOT NULL,
    CONSTRAINT pk_usage_dataset PRIMARY KEY CLUSTERED (activity_date)
);

-- One row per (snapshot_date, company_id); dropping the same snapshot date again replaces it.
-- The CRM parser sets no length limit on the text columns; they are as wide as the adapter's
-- #incoming_crm columns, so a longer value fails the load instead of being cut.
IF OBJECT_ID(N'stg.crm_company_snapshot', N'U') IS NULL
CREATE TABLE stg.crm_company_snapshot (
    snapshot_date   DATE           NOT NULL,
    company_id      NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    company_name    NVARCHAR(400)  NULL,
    country         NVARCHAR(400)  NULL,
    industry_tag    NVARCHAR(400)  NULL,
    last_contact_at DATETIME2(6)   NULL,
    run_id          NVARCHAR(64)   NOT NULL,
    source_blob     NVARCHAR(1024) NOT NULL,
    loaded_at       DATETIME2(6)   NOT NULL,
    CONSTRAINT pk_crm_company_snapshot PRIMARY KEY CLUSTERED (snapshot_date, company_id)
);

-- One row per staged snapshot; source_version orders drops of the same snapshot date.
IF OBJECT_ID(N'stg.crm_snapshot', N'U') IS NULL
CREATE TABLE stg.crm_snapshot (
    snapshot_date  DATE           NOT NULL,
    row_count      INT            NOT NULL,
    checksum       NVARCHAR(128)  NOT NULL,
    source_version NVARCHAR(1100) NOT NULL,
    run_id         NVARCHAR(64)   NOT NULL,
    source_blob    NVARCHAR(1024) NOT NULL,
    loaded_at      DATETIME2(6)   NOT NULL,
    CONSTRAINT pk_crm_snapshot PRIMARY KEY CLUSTERED (snapshot_date)
);

-- One row per (company_id, activity_date). Clustered by day: builds, summaries and the churn
-- list read whole days.
IF OBJECT_ID(N'analytics.company_daily_activity', N'U') IS NULL
CREATE TABLE analytics.company_daily_activity (
    company_id              NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    activity_date           DATE           NOT NULL,
    company_name            NVARCHAR(400)  NULL,
    country                 NVARCHAR(400)  NULL,
    industry_tag            NVARCHAR(400)  NULL,
    last_contact_at         DATETIME2(6)   NULL,
    crm_snapshot_date       DATE           NOT NULL,
    active_users            INT            NOT NULL,
    events                  INT            NOT NULL,
    events_per_user         DECIMAL(18, 4) NULL,
    rolling_7d_active_users INT            NOT NULL,
    rolling_7d_events       INT            NOT NULL,
    usage_days_observed_7d  INT            NOT NULL,
    days_since_last_contact INT            NULL,
    is_churn_risk           BIT            NOT NULL,
    pipeline_run_id         NVARCHAR(64)   NOT NULL,
    loaded_at               DATETIME2(6)   NOT NULL,
    CONSTRAINT pk_company_daily_activity PRIMARY KEY CLUSTERED (activity_date, company_id)
);

-- Per-company dashboards read one company's days: seek on company_id, range on the date.
IF NOT EXISTS (
    SELECT 1 FROM sys.indexes
    WHERE name = N'ix_company_daily_activity_company'
      AND object_id = OBJECT_ID(N'analytics.company_daily_activity')
)
CREATE NONCLUSTERED INDEX ix_company_daily_activity_company
    ON analytics.company_daily_activity (company_id, activity_date);

-- Rollups for trends (docs/data-dictionary.md), the same as sql/duckdb/schema.sql's: one row per
-- company and ISO week (Monday to Sunday), and per company and calendar month, over the days
-- built for it. Sums are of daily counts; averages are over the days the company has a row in
-- the period, DECIMAL(18,4) / INT is exact to 15 places, then rounded half away from zero; the
-- CRM attributes and the churn-risk state are those of the period's last built day.
-- CREATE VIEW must be the only statement of its batch, hence sp_executesql (no quotes inside:
-- the Monday of 1900-01-01 comes from DATEFROMPARTS).
EXEC sp_executesql @stmt = N'CREATE OR ALTER VIEW analytics.company_weekly_activity AS
WITH days AS (
    SELECT d.*, DATEADD(day, -(DATEDIFF(day, DATEFROMPARTS(1900, 1, 1), d.activity_date) % 7), d.activity_date) AS week_start
    FROM analytics.company_daily_activity AS d
),
periods AS (
    SELECT company_id, week_start,
           COUNT(*) AS days_built,
           SUM(CASE WHEN active_users > 0 THEN 1 ELSE 0 END) AS active_days,
           SUM(CAST(active_users AS BIGINT)) AS active_user_days,
           SUM(CAST(events AS BIGINT)) AS total_events,
           MAX(activity_date) AS last_activity_date
    FROM days
    GROUP BY company_id, week_start
)
SELECT p.company_id,
       YEAR(DATEADD(day, 3, p.week_start)) AS iso_year,
       DATEPART(ISO_WEEK, p.week_start) AS iso_week,
       p.week_start,
       DATEADD(day, 6, p.week_start) AS week_end,
       p.days_built,
       p.active_days,
       p.active_user_days,
       CAST(CAST(p.active_user_days AS DECIMAL(18, 4)) / p.days_built AS DECIMAL(18, 4)) AS avg_daily_active_users,
       p.total_events,
       CAST(CAST(p.total_events AS DECIMAL(18, 4)) / p.days_built AS DECIMAL(18, 4)) AS avg_daily_events,
       p.last_activity_date,
       d.is_churn_risk,
       d.company_name,
       d.country,
       d.industry_tag,
       d.last_contact_at,
       d.crm_snapshot_date
FROM periods AS p
JOIN analytics.company_daily_activity AS d
  ON d.company_id = p.company_id AND d.activity_date = p.last_activity_date';

EXEC sp_executesql @stmt = N'CREATE OR ALTER VIEW analytics.company_monthly_activity AS
WITH days AS (
    SELECT d.*, DATEFROMPARTS(YEAR(d.activity_date), MONTH(d.activity_date), 1) AS month_start
    FROM analytics.company_daily_activity AS d
),
periods AS (
    SELECT company_id, month_start,
           COUNT(*) AS days_built,
           SUM(CASE WHEN active_users > 0 THEN 1 ELSE 0 END) AS active_days,
           SUM(CAST(active_users AS BIGINT)) AS active_user_days,
           SUM(CAST(events AS BIGINT)) AS total_events,
           MAX(activity_date) AS last_activity_date
    FROM days
    GROUP BY company_id, month_start
)
SELECT p.company_id,
       YEAR(p.month_start) AS [year],
       MONTH(p.month_start) AS [month],
       p.month_start,
       EOMONTH(p.month_start) AS month_end,
       p.days_built,
       p.active_days,
       p.active_user_days,
       CAST(CAST(p.active_user_days AS DECIMAL(18, 4)) / p.days_built AS DECIMAL(18, 4)) AS avg_daily_active_users,
       p.total_events,
       CAST(CAST(p.total_events AS DECIMAL(18, 4)) / p.days_built AS DECIMAL(18, 4)) AS avg_daily_events,
       p.last_activity_date,
       d.is_churn_risk,
       d.company_name,
       d.country,
       d.industry_tag,
       d.last_contact_at,
       d.crm_snapshot_date
FROM periods AS p
JOIN analytics.company_daily_activity AS d
  ON d.company_id = p.company_id AND d.activity_date = p.last_activity_date';
