SET NOCOUNT ON;
DECLARE @activity_date DATE = ?;
-- What is staged for a day now: decides whether a new load is a change, a repeat or stale.
-- UPDLOCK + HOLDLOCK keep the key (or, for a first load, the key range) locked until the
-- staging transaction commits, so two loads of the same day cannot both decide "staged" from
-- the same old state.
SELECT checksum, source_version
FROM stg.usage_dataset WITH (UPDLOCK, HOLDLOCK)
WHERE activity_date = @activity_date;
