-- The companies most at risk on a day for the HTML report, in churn_risk_on_day's order, at most $top_n.
SELECT company_id, company_name, country, industry_tag, rolling_7d_active_users,
       days_since_last_contact, last_contact_at
FROM analytics.company_daily_activity
WHERE activity_date = $activity_date AND is_churn_risk
ORDER BY rolling_7d_active_users, days_since_last_contact DESC NULLS FIRST, company_id
LIMIT $top_n;
