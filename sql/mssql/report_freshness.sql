SET NOCOUNT ON;
-- Data freshness for the HTML report: the latest day or snapshot of each layer and when it was loaded.
SELECT (SELECT MAX(activity_date) FROM analytics.company_daily_activity) AS latest_built_day,
       (SELECT MAX(loaded_at) FROM analytics.company_daily_activity) AS table_loaded_at,
       (SELECT MAX(activity_date) FROM stg.usage_dataset) AS latest_usage_day,
       (SELECT MAX(loaded_at) FROM stg.usage_dataset) AS usage_loaded_at,
       (SELECT MAX(snapshot_date) FROM stg.crm_snapshot) AS latest_crm_snapshot,
       (SELECT MAX(loaded_at) FROM stg.crm_snapshot) AS crm_loaded_at;
