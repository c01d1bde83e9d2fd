-- Every staged CRM snapshot for the HTML report: its date, companies and file.
SELECT snapshot_date, row_count AS companies, source_blob, loaded_at
FROM stg.crm_snapshot
ORDER BY snapshot_date;
