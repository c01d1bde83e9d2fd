SET NOCOUNT ON;
DECLARE @activity_date DATE = ?;
DECLARE @run_id NVARCHAR(64) = ?;
DECLARE @source_blob NVARCHAR(1024) = ?;
DECLARE @loaded_at DATETIME2(6) = ?;
DECLARE @quarantined_count INT = ?;
DECLARE @checksum NVARCHAR(128) = ?;
DECLARE @source_version NVARCHAR(1100) = ?;
-- Replace one day's staged usage as a whole from the session temp tables #incoming_usage
-- (company_id, active_users, events) and #incoming_unknown (company_id, reason), which the
-- adapter bulk-loads. Runs inside the caller's
-- transaction, after usage_dataset_state.sql locked the day's key.
-- XACT_ABORT: any error aborts the batch and rolls the transaction back, so a half-replaced
-- day can never be committed. A duplicate company_id is a primary key violation on purpose:
-- the loader de-duplicates, so a duplicate here is a bug that must not be hidden.
SET XACT_ABORT ON;

DELETE FROM stg.product_usage_daily WHERE activity_date = @activity_date;

INSERT INTO stg.product_usage_daily
    (company_id, activity_date, active_users, events, run_id, source_blob, loaded_at)
SELECT company_id, @activity_date, active_users, events, @run_id, @source_blob, @loaded_at
FROM #incoming_usage;

-- The dataset row, also for a day with zero records (usage_days_observed_7d counts these).
DELETE FROM stg.usage_dataset WHERE activity_date = @activity_date;

INSERT INTO stg.usage_dataset
    (activity_date, record_count, quarantined_count, checksum, source_version, run_id, source_blob, loaded_at)
SELECT @activity_date, COUNT(*), @quarantined_count, @checksum, @source_version, @run_id, @source_blob, @loaded_at
FROM stg.product_usage_daily
WHERE activity_date = @activity_date;

-- The companies whose usage on the day is unknown: a record of theirs was quarantined for its
-- counts and none was staged.
DELETE FROM stg.usage_unknown WHERE activity_date = @activity_date;

INSERT INTO stg.usage_unknown (activity_date, company_id, reason, run_id, source_blob, loaded_at)
SELECT @activity_date, company_id, reason, @run_id, @source_blob, @loaded_at
FROM #incoming_unknown;
