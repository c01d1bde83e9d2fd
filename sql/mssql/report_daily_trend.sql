SET NOCOUNT ON;
-- Per built day for the HTML report: companies, active users, rolling 7-day active user-days,
-- churn risk, and how many days of usage the day's window observed (the same for every row of a
-- day: fewer than 7 means its rolling sums, and so its churn flags, cover fewer days).
-- Sums are BIGINT: a day's total can pass the INT range (DuckDB's SUM does not overflow either).
SELECT activity_date,
       COUNT(*) AS companies,
       SUM(CAST(active_users AS BIGINT)) AS active_users,
       SUM(CAST(rolling_7d_active_users AS BIGINT)) AS rolling_7d_active_users,
       SUM(CASE WHEN is_churn_risk = 1 THEN 1 ELSE 0 END) AS churn_risk,
       SUM(CASE WHEN is_churn_risk IS NULL THEN 1 ELSE 0 END) AS churn_cannot_tell,
       SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END) AS usage_unknown,
       MIN(usage_days_observed_7d) AS days_observed
FROM analytics.company_daily_activity
GROUP BY activity_date
ORDER BY activity_date;
