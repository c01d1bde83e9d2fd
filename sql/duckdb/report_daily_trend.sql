-- Per built day for the HTML report: companies, active users, rolling 7-day active user-days,
-- churn risk, and how many days of usage the day's window observed (the same for every row of a
-- day: fewer than 7 means its rolling sums, and so its churn flags, cover fewer days). A NULL flag
-- (cannot tell: usage refused on a day of the window) is never counted at risk but in
-- churn_cannot_tell; active_users sums the known days (usage_unknown counts the NULL ones).
SELECT activity_date,
       COUNT(*) AS companies,
       SUM(active_users) AS active_users,
       SUM(rolling_7d_active_users) AS rolling_7d_active_users,
       SUM(CASE WHEN is_churn_risk THEN 1 ELSE 0 END) AS churn_risk,
       SUM(CASE WHEN is_churn_risk IS NULL THEN 1 ELSE 0 END) AS churn_cannot_tell,
       SUM(CASE WHEN active_users IS NULL THEN 1 ELSE 0 END) AS usage_unknown,
       MIN(usage_days_observed_7d) AS days_observed
FROM analytics.company_daily_activity
GROUP BY activity_date
ORDER BY activity_date;
