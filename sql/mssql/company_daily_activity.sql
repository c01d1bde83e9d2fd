SET NOCOUNT ON;
-- The whole analytics table in key order (tests, exports). is_churn_risk is BIT, which pyodbc
-- returns as bool like DuckDB's BOOLEAN.
SELECT company_id, activity_date, company_name, country, industry_tag, last_contact_at,
       crm_snapshot_date, active_users, events, events_per_user, rolling_7d_active_users,
       rolling_7d_events, usage_days_observed_7d, usage_unknown_7d, days_since_last_contact, is_churn_risk,
       pipeline_run_id, loaded_at
FROM analytics.company_daily_activity
ORDER BY activity_date, company_id;
