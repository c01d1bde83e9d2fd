-- Replace one day's staged usage as a whole from the temp table incoming_usage
-- (company_id, active_users, events) and incoming_unknown (company_id, reason), which the
-- adapter bulk-loads. Runs in one transaction.
DELETE FROM stg.product_usage_daily WHERE activity_date = $activity_date;

INSERT INTO stg.product_usage_daily
    (company_id, activity_date, active_users, events, run_id, source_blob, loaded_at)
SELECT company_id, $activity_date, active_users, events, $run_id, $source_blob, $loaded_at
FROM incoming_usage;

DELETE FROM stg.usage_dataset WHERE activity_date = $activity_date;

-- The day's count is also where one row per company and day is checked: DuckDB's table has no
-- key (schema version 2). The loader de-duplicates first, so this fails only when something else
-- wrote the day; then nothing is staged (the adapter makes the error one line: DUPLICATE_ROWS).
INSERT INTO stg.usage_dataset
    (activity_date, record_count, quarantined_count, checksum, source_version, run_id, source_blob, loaded_at)
SELECT $activity_date,
       CASE WHEN COUNT(*) = COUNT(DISTINCT company_id) THEN COUNT(*)
            ELSE error('duplicate rows: stg.product_usage_daily would hold ' || CAST(COUNT(*) AS VARCHAR)
                       || ' rows for ' || CAST(COUNT(DISTINCT company_id) AS VARCHAR) || ' companies on '
                       || CAST($activity_date AS VARCHAR) || ' (one row per company and day); nothing was written')
       END,
       $quarantined_count, $checksum, $source_version, $run_id, $source_blob, $loaded_at
FROM stg.product_usage_daily
WHERE activity_date = $activity_date;

-- The companies whose usage on the day is unknown (temp table incoming_unknown: company_id,
-- reason): a record of theirs was quarantined for its counts and none was staged.
DELETE FROM stg.usage_unknown WHERE activity_date = $activity_date;

INSERT INTO stg.usage_unknown (activity_date, company_id, reason, run_id, source_blob, loaded_at)
SELECT $activity_date, company_id, reason, $run_id, $source_blob, $loaded_at
FROM incoming_unknown;
