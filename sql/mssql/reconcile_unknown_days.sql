SET NOCOUNT ON;
DECLARE @company_id NVARCHAR(64) = ?;
DECLARE @first_day DATE = ?;
DECLARE @activity_date DATE = ?;
-- The days of a window on which a company's usage is unknown, and why (reconcile: NULL usage and
-- a NULL churn flag explained). @company_id NULL: every company's.
SELECT activity_date, company_id, reason, run_id, source_blob
FROM stg.usage_unknown
WHERE activity_date BETWEEN @first_day AND @activity_date
  AND (@company_id IS NULL OR company_id = @company_id)
ORDER BY activity_date, company_id;
