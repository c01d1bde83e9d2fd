-- One company's staged usage over a rolling window (reconcile: the terms of its rolling sums).
SELECT activity_date, active_users, events
FROM stg.product_usage_daily
WHERE company_id = $company_id AND activity_date BETWEEN $first_day AND $activity_date
ORDER BY activity_date;
