-- What is staged for a snapshot date now: decides whether a drop is a change, a repeat or stale.
SELECT checksum, source_version FROM stg.crm_snapshot WHERE snapshot_date = $snapshot_date;
