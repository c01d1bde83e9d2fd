SET NOCOUNT ON;
DECLARE @activity_date DATE = ?;
-- Companies with a row on a day but absent from its CRM snapshot: usage the CRM does not know.
SELECT a.company_id, a.active_users, a.rolling_7d_active_users
FROM analytics.company_daily_activity AS a
WHERE a.activity_date = @activity_date
  AND NOT EXISTS (
    SELECT 1 FROM stg.crm_company_snapshot AS s
    WHERE s.snapshot_date = a.crm_snapshot_date AND s.company_id = a.company_id
  )
ORDER BY a.company_id;
