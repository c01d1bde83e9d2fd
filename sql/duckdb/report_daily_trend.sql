-- Per built day for the HTML report: companies, active users, rolling 7-day active users, churn risk.
SELECT activity_date,
       COUNT(*) AS companies,
       SUM(active_users) AS active_users,
       SUM(rolling_7d_active_users) AS rolling_7d_active_users,
       SUM(CASE WHEN is_churn_risk THEN 1 ELSE 0 END) AS churn_risk
FROM analytics.company_daily_activity
GROUP BY activity_date
ORDER BY activity_date;
