SET NOCOUNT ON;
DECLARE @activity_date DATE = ?;
-- Companies flagged as churn risk on a day, the quietest and least recently contacted first.
-- SQL Server sorts NULLs first ascending and last descending and has no NULLS FIRST, so the
-- CASE puts the never-contacted (NULL) companies first, like DuckDB's DESC NULLS FIRST.
SELECT company_id, company_name, country, rolling_7d_active_users, days_since_last_contact, last_contact_at
FROM analytics.company_daily_activity
WHERE activity_date = @activity_date AND is_churn_risk = 1
ORDER BY rolling_7d_active_users,
         CASE WHEN days_since_last_contact IS NULL THEN 0 ELSE 1 END,
         days_since_last_contact DESC,
         company_id;
