-- Companies flagged as churn risk on a day, the quietest and least recently contacted first.
SELECT company_id, company_name, country, rolling_7d_active_users, days_since_last_contact, last_contact_at
FROM analytics.company_daily_activity
WHERE activity_date = $activity_date AND is_churn_risk
ORDER BY rolling_7d_active_users, days_since_last_contact DESC NULLS FIRST, company_id;
