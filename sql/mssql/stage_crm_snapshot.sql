SET NOCOUNT ON;
DECLARE @snapshot_date DATE = ?;
DECLARE @run_id NVARCHAR(64) = ?;
DECLARE @source_blob NVARCHAR(1024) = ?;
DECLARE @loaded_at DATETIME2(6) = ?;
DECLARE @checksum NVARCHAR(128) = ?;
DECLARE @source_version NVARCHAR(1100) = ?;
-- Replace one CRM snapshot as a whole from the session temp table #incoming_crm
-- (company_id, company_name, country, industry_tag, last_contact_at). Runs inside the caller's
-- transaction, after crm_snapshot_state.sql locked the snapshot date's key.
-- XACT_ABORT: any error aborts the batch and rolls the transaction back, so a half-replaced
-- snapshot can never be committed. A duplicate company_id is a primary key violation on
-- purpose: the parser de-duplicates, so a duplicate here is a bug that must not be hidden.
SET XACT_ABORT ON;

DELETE FROM stg.crm_company_snapshot WHERE snapshot_date = @snapshot_date;

INSERT INTO stg.crm_company_snapshot
    (snapshot_date, company_id, company_name, country, industry_tag, last_contact_at,
     run_id, source_blob, loaded_at)
SELECT @snapshot_date, company_id, company_name, country, industry_tag, last_contact_at,
       @run_id, @source_blob, @loaded_at
FROM #incoming_crm;

DELETE FROM stg.crm_snapshot WHERE snapshot_date = @snapshot_date;

INSERT INTO stg.crm_snapshot (snapshot_date, row_count, checksum, source_version, run_id, source_blob, loaded_at)
SELECT @snapshot_date, COUNT(*), @checksum, @source_version, @run_id, @source_blob, @loaded_at
FROM stg.crm_company_snapshot
WHERE snapshot_date = @snapshot_date;
