-- A day's staged usage, company by company (reconcile).
SELECT company_id, active_users, events, run_id
FROM stg.product_usage_daily
WHERE activity_date = $activity_date
ORDER BY company_id;
