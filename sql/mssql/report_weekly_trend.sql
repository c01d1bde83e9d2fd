SET NOCOUNT ON;
-- Per ISO week for the HTML report, from the weekly view: active user-days and events, the
-- companies and the days built, and the companies at churn risk at the week's end.
SELECT week_start, iso_year, iso_week,
       COUNT(*) AS companies,
       SUM(active_user_days) AS active_user_days,
       SUM(total_events) AS total_events,
       MAX(days_built) AS days_built,
       SUM(CASE WHEN is_churn_risk = 1 THEN 1 ELSE 0 END) AS churn_risk,
       SUM(CASE WHEN is_churn_risk IS NULL THEN 1 ELSE 0 END) AS churn_cannot_tell
FROM analytics.company_weekly_activity
GROUP BY week_start, iso_year, iso_week
ORDER BY week_start;
