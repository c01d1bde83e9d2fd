SET NOCOUNT ON;
DECLARE @first_day DATE = ?;
DECLARE @activity_date DATE = ?;
-- The days of a window with a staged usage dataset (reconcile: usage_days_observed_7d).
SELECT activity_date
FROM stg.usage_dataset
WHERE activity_date BETWEEN @first_day AND @activity_date
ORDER BY activity_date;
