-- What is staged for a day now: decides whether a new load is a change, a repeat or stale.
SELECT checksum, source_version FROM stg.usage_dataset WHERE activity_date = $activity_date;
