SET NOCOUNT ON;
-- Per built day for the HTML report: companies, active users, rolling 7-day active users, churn risk.
-- Sums are BIGINT: a day's total can pass the INT range (DuckDB's SUM does not overflow either).
SELECT activity_date,
       COUNT(*) AS companies,
       SUM(CAST(active_users AS BIGINT)) AS active_users,
       SUM(CAST(rolling_7d_active_users AS BIGINT)) AS rolling_7d_active_users,
       SUM(CASE WHEN is_churn_risk = 1 THEN 1 ELSE 0 END) AS churn_risk
FROM analytics.company_daily_activity
GROUP BY activity_date
ORDER BY activity_date;
