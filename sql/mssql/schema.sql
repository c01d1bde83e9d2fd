SET NOCOUNT ON;
-- The Azure SQL warehouse's schema, one batch. Applied only with an administrator's rights, by
-- `python -m shared.cli init-db` and the post-provision hook (sqlcmd): the app's own database
-- user may read and write rows, nothing more (contract section 8). Column names are fixed by
-- the contract (section 3) and match sql/duckdb/schema.sql one for one.
--
-- Safe to apply again and again, and over any earlier version: every object is created only if
-- missing (IF OBJECT_ID(...) IS NULL), views are replaced (CREATE OR ALTER), and what a later
-- version adds to an existing table is a guarded ALTER (IF COL_LENGTH(...) IS NULL ALTER TABLE
-- ... ADD ...), never a DROP. Its last statements record the version (SCHEMA_VERSION in
-- shared/adapters/warehouse_sql.py) in analytics.schema_version; the app refuses to work with
-- any other. docs/architecture.md, "The schema and its version", has the recipe for a change.
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

-- One row per (activity_date, company_id) whose usage on the day is unknown: the API sent a
-- record for the company and day that was quarantined for its counts, and no record of it was
-- staged (contract section 3). Replaced with the day's usage, in the same transaction. The
-- reason is cut to 200 characters by the loader.
IF OBJECT_ID(N'stg.usage_unknown', N'U') IS NULL
CREATE TABLE stg.usage_unknown (
    activity_date DATE           NOT NULL,
    company_id    NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    reason        NVARCHAR(400)  NOT NULL,
    run_id        NVARCHAR(64)   NOT NULL,
    source_blob   NVARCHAR(1024) NOT NULL,
    loaded_at     DATETIME2(6)   NOT NULL,
    CONSTRAINT pk_usage_unknown PRIMARY KEY CLUSTERED (activity_date, company_id)
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
    active_users            INT            NULL,  -- NULL: usage unknown on the day
    events                  INT            NULL,
    events_per_user         DECIMAL(18, 4) NULL,
    rolling_7d_active_users BIGINT         NOT NULL,
    rolling_7d_events       BIGINT         NOT NULL,
    usage_days_observed_7d  INT            NOT NULL,
    usage_unknown_7d        INT            NOT NULL,
    days_since_last_contact INT            NULL,
    is_churn_risk           BIT            NULL,  -- NULL: cannot tell (contract section 3)
    pipeline_run_id         NVARCHAR(64)   NOT NULL,
    loaded_at               DATETIME2(6)   NOT NULL,
    CONSTRAINT pk_company_daily_activity PRIMARY KEY CLUSTERED (activity_date, company_id)
);

-- The version of this schema, one row: written by the last statements of this file, read by the
-- app before its first SQL work (sql/mssql/schema_version.sql). A heap: it never holds more.
IF OBJECT_ID(N'analytics.schema_version', N'U') IS NULL
CREATE TABLE analytics.schema_version (
    version    INT          NOT NULL,
    applied_at DATETIME2(0) NOT NULL
);

-- Upgrades of the tables above go here, each guarded so it runs once: a new column goes in its
-- CREATE TABLE too, for new databases, NULL or with a DEFAULT, as rows exist. A statement of
-- this batch that reads a new column must go through sp_executesql (as the views do): the batch
-- is compiled before the ALTER runs.
--
-- Version 1 (unknown usage): a table made before unknown usage (contract section 3) is brought up to this one in place, its
-- rows kept (no quarantined record was known to make a day unknown then). Each change runs only
-- when it is still needed; sp_executesql because a batch cannot name a column it adds itself.
IF (COL_LENGTH(N'analytics.company_daily_activity', N'usage_unknown_7d') IS NULL)
    EXEC sp_executesql @stmt = N'ALTER TABLE analytics.company_daily_activity
        ADD usage_unknown_7d INT NOT NULL CONSTRAINT df_company_daily_activity_unknown DEFAULT 0';
IF (COLUMNPROPERTY(OBJECT_ID(N'analytics.company_daily_activity'), N'active_users', 'AllowsNull') = 0)
    EXEC sp_executesql @stmt = N'ALTER TABLE analytics.company_daily_activity ALTER COLUMN active_users INT NULL';
IF (COLUMNPROPERTY(OBJECT_ID(N'analytics.company_daily_activity'), N'events', 'AllowsNull') = 0)
    EXEC sp_executesql @stmt = N'ALTER TABLE analytics.company_daily_activity ALTER COLUMN events INT NULL';
IF (COLUMNPROPERTY(OBJECT_ID(N'analytics.company_daily_activity'), N'is_churn_risk', 'AllowsNull') = 0)
    EXEC sp_executesql @stmt = N'ALTER TABLE analytics.company_daily_activity ALTER COLUMN is_churn_risk BIT NULL';
IF (COLUMNPROPERTY(OBJECT_ID(N'analytics.company_daily_activity'), N'rolling_7d_active_users', 'Precision') = 10)
    EXEC sp_executesql @stmt = N'ALTER TABLE analytics.company_daily_activity ALTER COLUMN rolling_7d_active_users BIGINT NOT NULL';
IF (COLUMNPROPERTY(OBJECT_ID(N'analytics.company_daily_activity'), N'rolling_7d_events', 'Precision') = 10)
    EXEC sp_executesql @stmt = N'ALTER TABLE analytics.company_daily_activity ALTER COLUMN rolling_7d_events BIGINT NOT NULL';

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
-- built for it. Sums are of daily counts (a day whose usage is unknown adds nothing and is
-- counted in days_usage_unknown); averages are over the days the company has a row with known
-- usage in the period (NULL when there is none), DECIMAL(18,4) / INT is exact to 15 places, then rounded half away from zero; the
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
           SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END) AS days_usage_unknown,
           -- NULL when the usage of no day is known: refused usage is never a 0.
           CASE WHEN COUNT(*) > SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END)
                THEN SUM(COALESCE(CAST(active_users AS BIGINT), 0)) END AS active_user_days,
           CASE WHEN COUNT(*) > SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END)
                THEN SUM(COALESCE(CAST(events AS BIGINT), 0)) END AS total_events,
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
       p.days_usage_unknown,
       p.active_user_days,
       CASE WHEN p.days_built > p.days_usage_unknown THEN
            CAST(CAST(p.active_user_days AS DECIMAL(18, 4)) / (p.days_built - p.days_usage_unknown) AS DECIMAL(18, 4)) END AS avg_daily_active_users,
       p.total_events,
       CASE WHEN p.days_built > p.days_usage_unknown THEN
            CAST(CAST(p.total_events AS DECIMAL(18, 4)) / (p.days_built - p.days_usage_unknown) AS DECIMAL(18, 4)) END AS avg_daily_events,
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
           SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END) AS days_usage_unknown,
           -- NULL when the usage of no day is known: refused usage is never a 0.
           CASE WHEN COUNT(*) > SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END)
                THEN SUM(COALESCE(CAST(active_users AS BIGINT), 0)) END AS active_user_days,
           CASE WHEN COUNT(*) > SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END)
                THEN SUM(COALESCE(CAST(events AS BIGINT), 0)) END AS total_events,
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
       p.days_usage_unknown,
       p.active_user_days,
       CASE WHEN p.days_built > p.days_usage_unknown THEN
            CAST(CAST(p.active_user_days AS DECIMAL(18, 4)) / (p.days_built - p.days_usage_unknown) AS DECIMAL(18, 4)) END AS avg_daily_active_users,
       p.total_events,
       CASE WHEN p.days_built > p.days_usage_unknown THEN
            CAST(CAST(p.total_events AS DECIMAL(18, 4)) / (p.days_built - p.days_usage_unknown) AS DECIMAL(18, 4)) END AS avg_daily_events,
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

-- Last: the version this file brings the database to (SCHEMA_VERSION in
-- shared/adapters/warehouse_sql.py; tests/infra/test_sql_dialects.py keeps them equal). A run
-- that failed part way leaves the earlier version, so the app keeps refusing until it is whole.
DELETE FROM analytics.schema_version;
INSERT INTO analytics.schema_version (version, applied_at) VALUES (1, SYSUTCDATETIME());
