SET NOCOUNT ON;
DECLARE @snapshot_date DATE = ?;
-- What is staged for a snapshot date now: decides whether a drop is a change, a repeat or stale.
-- UPDLOCK + HOLDLOCK keep the key (or, for a first drop, the key range) locked until the
-- staging transaction commits, so two drops of the same date cannot both decide "staged" from
-- the same old state.
SELECT checksum, source_version
FROM stg.crm_snapshot WITH (UPDLOCK, HOLDLOCK)
WHERE snapshot_date = @snapshot_date;
