-- The companies of one CRM snapshot (reconcile: whether empty CRM columns mean a company absent from it).
SELECT company_id
FROM stg.crm_company_snapshot
WHERE snapshot_date = $snapshot_date
ORDER BY company_id;
