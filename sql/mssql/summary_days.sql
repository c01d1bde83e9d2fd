SET NOCOUNT ON;
-- Per built day: rows, churn-risk companies, active users (demo and status summaries).
-- active_users is summed as BIGINT: a day's total can pass the INT range, and DuckDB's SUM
-- does not overflow either.
SELECT activity_date,
       COUNT(*) AS row_count,
       SUM(CASE WHEN is_churn_risk = 1 THEN 1 ELSE 0 END) AS churn_risk,
       SUM(CASE WHEN is_churn_risk IS NULL THEN 1 ELSE 0 END) AS churn_cannot_tell,
       SUM(CAST(active_users AS BIGINT)) AS active_users,
       MAX(crm_snapshot_date) AS crm_snapshot_date
FROM analytics.company_daily_activity
GROUP BY activity_date
ORDER BY activity_date;
