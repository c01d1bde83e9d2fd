SET NOCOUNT ON;
DECLARE @activity_date DATE = ?;
DECLARE @top_n INT = ?;
-- The companies most at risk on a day for the HTML report, in churn_risk_on_day's order, at most @top_n.
-- SQL Server has no NULLS FIRST: the CASE puts the never-contacted (NULL) companies first.
SELECT TOP (@top_n) company_id, company_name, country, industry_tag, rolling_7d_active_users,
       days_since_last_contact, last_contact_at
FROM analytics.company_daily_activity
WHERE activity_date = @activity_date AND is_churn_risk = 1
ORDER BY rolling_7d_active_users,
         CASE WHEN days_since_last_contact IS NULL THEN 0 ELSE 1 END,
         days_since_last_contact DESC,
         company_id;
