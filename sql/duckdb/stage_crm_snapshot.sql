-- Replace one CRM snapshot as a whole from the temp table incoming_crm
-- (company_id, company_name, country, industry_tag, last_contact_at). Runs in one transaction.
DELETE FROM stg.crm_company_snapshot WHERE snapshot_date = $snapshot_date;

INSERT INTO stg.crm_company_snapshot
    (snapshot_date, company_id, company_name, country, industry_tag, last_contact_at,
     run_id, source_blob, loaded_at)
SELECT $snapshot_date, company_id, company_name, country, industry_tag, last_contact_at,
       $run_id, $source_blob, $loaded_at
FROM incoming_crm;

DELETE FROM stg.crm_snapshot WHERE snapshot_date = $snapshot_date;

INSERT INTO stg.crm_snapshot (snapshot_date, row_count, checksum, source_version, run_id, source_blob, loaded_at)
SELECT $snapshot_date, COUNT(*), $checksum, $source_version, $run_id, $source_blob, $loaded_at
FROM stg.crm_company_snapshot
WHERE snapshot_date = $snapshot_date;
