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
