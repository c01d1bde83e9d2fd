SET NOCOUNT ON;
DECLARE @loaded_at DATETIME2(6) = ?;
DECLARE @churn_min_rolling_users INT = ?;
DECLARE @churn_max_contact_age_days INT = ?;
DECLARE @crm_max_snapshot_age_days INT = ?;
DECLARE @rolling_days INT = ?;
-- Rebuild the days listed in the session temp table #build_day (activity_date, run_id) from staging
-- and MERGE them into analytics.company_daily_activity. The adapter runs this batch inside one
-- transaction. Only the built days and the @rolling_days - 1 days before them are read, so the cost follows
-- the days being rebuilt, not the history the table holds. Rows whose values did not change
-- are not touched (their pipeline_run_id and loaded_at stay).
--
-- The #build_* tables are created here and live only as long as this batch (a parameterised
-- batch runs in its own scope); the DROP only guards a session that ran it unparameterised.
-- Aggregates never see NULLs (COALESCE, CASE ... ELSE 0, COUNT(*)): an "eliminated NULL"
-- warning would be an extra message in front of the one result set.
-- XACT_ABORT: any error aborts the batch and rolls the whole build back.
SET XACT_ABORT ON;

-- Builds are serialised: two builds of overlapping days must not interleave. The lock belongs
-- to the transaction and is released when the adapter commits or rolls back. RAISERROR and
-- RETURN instead of THROW: sqlglot cannot parse THROW, and this is equivalent here
-- (severity 16 reaches the client as an error, RETURN ends the batch).
DECLARE @lock INT;
EXEC @lock = sp_getapplock
    @Resource = N'analytics.company_daily_activity/build',
    @LockMode = N'Exclusive',
    @LockOwner = N'Transaction',
    @LockTimeout = 120000;
IF @lock < 0
BEGIN
    RAISERROR(N'could not take the build lock', 16, 1);
    RETURN;
END;

DROP TABLE IF EXISTS #build_plan;
DROP TABLE IF EXISTS #build_source;
DROP TABLE IF EXISTS #build_changes;
DROP TABLE IF EXISTS #build_removed;

-- 0. Which of the requested days can be built, and from which snapshot. Decided here, inside
--    the build's transaction, from what is staged now: a plan made earlier may be out of date.
--    The effective snapshot is the latest one on or before the day, at most
--    @crm_max_snapshot_age_days old; a day also needs a staged usage dataset.
SELECT d.activity_date, d.run_id,
       (SELECT MAX(s.snapshot_date)
          FROM stg.crm_snapshot AS s
         WHERE s.snapshot_date <= d.activity_date
           AND s.snapshot_date >= DATEADD(day, -@crm_max_snapshot_age_days, d.activity_date)) AS snapshot_date
INTO #build_plan
FROM #build_day AS d
WHERE EXISTS (SELECT 1 FROM stg.usage_dataset AS u WHERE u.activity_date = d.activity_date);

-- A requested day with no effective snapshot holds no rows: it waits (contract section 3). A day
-- built earlier loses its snapshot when CRM_MAX_SNAPSHOT_AGE_DAYS is lowered.
DELETE FROM analytics.company_daily_activity
WHERE activity_date IN (SELECT activity_date FROM #build_plan WHERE snapshot_date IS NULL);

DELETE FROM #build_plan WHERE snapshot_date IS NULL;

-- The usage window: the built days and the @rolling_days - 1 days before the first of them. Variables rather
-- than a joined bounds row, so the read is a range seek on the clustered key.
DECLARE @first_day DATE;
DECLARE @last_day DATE;
SELECT @first_day = DATEADD(day, 1 - @rolling_days, MIN(activity_date)), @last_day = MAX(activity_date)
FROM #build_plan;

-- 1. What the days should hold, computed from the staged inputs alone. SELECT ... INTO keeps
--    the staged columns' collations, so the comparisons below cannot hit a collation conflict
--    with tempdb's default.
WITH window_usage AS (
    SELECT u.company_id, u.activity_date, u.active_users, u.events
    FROM stg.product_usage_daily AS u
    WHERE u.activity_date BETWEEN @first_day AND @last_day
),
-- Companies whose usage on a day is unknown (a record of theirs quarantined for its counts, none
-- staged): they count 0 in the sums, but the day is counted in usage_unknown_7d and its own
-- usage is NULL. An unknown never adds a row of its own (contract section 3).
window_unknown AS (
    SELECT k.company_id, k.activity_date
    FROM stg.usage_unknown AS k
    WHERE k.activity_date BETWEEN @first_day AND @last_day
),
-- Every company of the effective snapshot, plus every company with usage on the day.
day_companies AS (
    SELECT d.activity_date, s.company_id
    FROM #build_plan AS d
    JOIN stg.crm_company_snapshot AS s ON s.snapshot_date = d.snapshot_date
    UNION
    SELECT d.activity_date, u.company_id
    FROM #build_plan AS d
    JOIN window_usage AS u ON u.activity_date = d.activity_date
),
-- The day's usage (0 without a row) and the 7 calendar days ending on it (missing and unknown
-- days count 0), summed as BIGINT like DuckDB's SUM.
rolling AS (
    SELECT c.activity_date, c.company_id,
           SUM(CASE WHEN u.activity_date = c.activity_date THEN CAST(u.active_users AS BIGINT) ELSE 0 END) AS active_users,
           SUM(CASE WHEN u.activity_date = c.activity_date THEN CAST(u.events AS BIGINT) ELSE 0 END) AS events,
           SUM(COALESCE(CAST(u.active_users AS BIGINT), 0)) AS rolling_7d_active_users,
           SUM(COALESCE(CAST(u.events AS BIGINT), 0)) AS rolling_7d_events
    FROM day_companies AS c
    LEFT JOIN window_usage AS u
           ON u.company_id = c.company_id
          AND u.activity_date BETWEEN DATEADD(day, 1 - @rolling_days, c.activity_date) AND c.activity_date
    GROUP BY c.activity_date, c.company_id
),
-- The company's unknown days in the same window, and whether the day itself is one.
unknown AS (
    SELECT c.activity_date, c.company_id,
           SUM(CASE WHEN k.activity_date IS NULL THEN 0 ELSE 1 END) AS usage_unknown_7d,
           MAX(CASE WHEN k.activity_date = c.activity_date THEN 1 ELSE 0 END) AS unknown_today
    FROM day_companies AS c
    LEFT JOIN window_unknown AS k
           ON k.company_id = c.company_id
          AND k.activity_date BETWEEN DATEADD(day, 1 - @rolling_days, c.activity_date) AND c.activity_date
    GROUP BY c.activity_date, c.company_id
),
-- Staged usage datasets in the window, including ones with zero records.
observed AS (
    SELECT d.activity_date,
           (SELECT COUNT(*)
              FROM stg.usage_dataset AS ds
             WHERE ds.activity_date BETWEEN DATEADD(day, 1 - @rolling_days, d.activity_date) AND d.activity_date) AS usage_days_observed_7d
    FROM #build_plan AS d
),
joined AS (
    SELECT r.company_id, r.activity_date,
           s.company_name, s.country, s.industry_tag, s.last_contact_at,
           d.snapshot_date AS crm_snapshot_date,
           CASE WHEN x.unknown_today = 1 THEN NULL ELSE r.active_users END AS active_users,
           CASE WHEN x.unknown_today = 1 THEN NULL ELSE r.events END AS events,
           r.rolling_7d_active_users, r.rolling_7d_events,
           o.usage_days_observed_7d, x.usage_unknown_7d,
           -- A contact later than the day (late evening in a western time zone is the next day
           -- in UTC) counts as 0 days, never fewer. (GREATEST would turn NULL into 0.)
           CASE WHEN CAST(s.last_contact_at AS DATE) > r.activity_date THEN 0
                ELSE DATEDIFF(day, CAST(s.last_contact_at AS DATE), r.activity_date) END AS days_since_last_contact,
           d.run_id
    FROM rolling AS r
    JOIN unknown AS x ON x.activity_date = r.activity_date AND x.company_id = r.company_id
    JOIN #build_plan AS d ON d.activity_date = r.activity_date
    JOIN observed AS o ON o.activity_date = r.activity_date
    LEFT JOIN stg.crm_company_snapshot AS s
           ON s.snapshot_date = d.snapshot_date AND s.company_id = r.company_id
)
-- events_per_user: DECIMAL(18,4) / INT is exact to 15 decimals in T-SQL (no integer
-- division), then rounded half away from zero to 4 decimals.
SELECT company_id, activity_date, company_name, country, industry_tag, last_contact_at,
       crm_snapshot_date,
       CAST(active_users AS INT) AS active_users,
       CAST(events AS INT) AS events,
       CASE WHEN active_users IS NULL OR active_users = 0 THEN NULL
            ELSE CAST(CAST(events AS DECIMAL(18, 4)) / active_users AS DECIMAL(18, 4)) END AS events_per_user,
       CAST(rolling_7d_active_users AS BIGINT) AS rolling_7d_active_users,
       CAST(rolling_7d_events AS BIGINT) AS rolling_7d_events,
       CAST(usage_days_observed_7d AS INT) AS usage_days_observed_7d,
       CAST(usage_unknown_7d AS INT) AS usage_unknown_7d,
       CAST(days_since_last_contact AS INT) AS days_since_last_contact,
       -- Cannot tell (NULL) when the rule flags the company and usage it would need is unknown:
       -- more users can only make the rule false, so a false stays false.
       CAST(CASE WHEN rolling_7d_active_users = 0
                   OR (rolling_7d_active_users < @churn_min_rolling_users
                       AND (days_since_last_contact IS NULL
                            OR days_since_last_contact > @churn_max_contact_age_days))
                 THEN CASE WHEN usage_unknown_7d > 0 THEN NULL ELSE 1 END
                 ELSE 0 END AS BIT) AS is_churn_risk,
       -- The run whose input asked for the day's rebuild: written only with a changed row.
       CAST(run_id AS NVARCHAR(64)) AS build_run_id
INTO #build_source
FROM joined;

-- 2. New rows and rows whose values changed. Text is compared under a binary collation: under
--    a case-insensitive one a CRM name changed only in case would look unchanged and never be
--    written (DuckDB compares byte for byte).
SELECT s.*, CAST(CASE WHEN t.company_id IS NULL THEN 1 ELSE 0 END AS BIT) AS is_new
INTO #build_changes
FROM #build_source AS s
LEFT JOIN analytics.company_daily_activity AS t
       ON t.activity_date = s.activity_date AND t.company_id = s.company_id
WHERE t.company_id IS NULL
   OR t.company_name COLLATE Latin1_General_100_BIN2 IS DISTINCT FROM s.company_name COLLATE Latin1_General_100_BIN2
   OR t.country COLLATE Latin1_General_100_BIN2 IS DISTINCT FROM s.country COLLATE Latin1_General_100_BIN2
   OR t.industry_tag COLLATE Latin1_General_100_BIN2 IS DISTINCT FROM s.industry_tag COLLATE Latin1_General_100_BIN2
   OR t.last_contact_at IS DISTINCT FROM s.last_contact_at
   OR t.crm_snapshot_date IS DISTINCT FROM s.crm_snapshot_date
   OR t.active_users IS DISTINCT FROM s.active_users
   OR t.events IS DISTINCT FROM s.events
   OR t.events_per_user IS DISTINCT FROM s.events_per_user
   OR t.rolling_7d_active_users IS DISTINCT FROM s.rolling_7d_active_users
   OR t.rolling_7d_events IS DISTINCT FROM s.rolling_7d_events
   OR t.usage_days_observed_7d IS DISTINCT FROM s.usage_days_observed_7d
   OR t.usage_unknown_7d IS DISTINCT FROM s.usage_unknown_7d
   OR t.days_since_last_contact IS DISTINCT FROM s.days_since_last_contact
   OR t.is_churn_risk IS DISTINCT FROM s.is_churn_risk;

-- 3. Rows of the rebuilt days that no longer belong (e.g. a company left a replaced snapshot).
SELECT t.activity_date, t.company_id
INTO #build_removed
FROM analytics.company_daily_activity AS t
JOIN #build_plan AS d ON d.activity_date = t.activity_date
WHERE NOT EXISTS (
    SELECT 1 FROM #build_source AS s
    WHERE s.activity_date = t.activity_date AND s.company_id = t.company_id
);

DELETE t
FROM analytics.company_daily_activity AS t
JOIN #build_removed AS r ON r.activity_date = t.activity_date AND r.company_id = t.company_id;

-- 4. The upsert. HOLDLOCK makes the MERGE's match-then-insert atomic per key; the build lock
--    above already keeps other builds out.
MERGE analytics.company_daily_activity WITH (UPDLOCK, HOLDLOCK) AS t
USING #build_changes AS s
   ON t.activity_date = s.activity_date AND t.company_id = s.company_id
WHEN MATCHED THEN UPDATE SET
    company_name = s.company_name,
    country = s.country,
    industry_tag = s.industry_tag,
    last_contact_at = s.last_contact_at,
    crm_snapshot_date = s.crm_snapshot_date,
    active_users = s.active_users,
    events = s.events,
    events_per_user = s.events_per_user,
    rolling_7d_active_users = s.rolling_7d_active_users,
    rolling_7d_events = s.rolling_7d_events,
    usage_days_observed_7d = s.usage_days_observed_7d,
    usage_unknown_7d = s.usage_unknown_7d,
    days_since_last_contact = s.days_since_last_contact,
    is_churn_risk = s.is_churn_risk,
    pipeline_run_id = s.build_run_id,
    loaded_at = @loaded_at
WHEN NOT MATCHED BY TARGET THEN INSERT (
    company_id, activity_date, company_name, country, industry_tag, last_contact_at,
    crm_snapshot_date, active_users, events, events_per_user, rolling_7d_active_users,
    rolling_7d_events, usage_days_observed_7d, usage_unknown_7d, days_since_last_contact,
    is_churn_risk, pipeline_run_id, loaded_at
) VALUES (
    s.company_id, s.activity_date, s.company_name, s.country, s.industry_tag, s.last_contact_at,
    s.crm_snapshot_date, s.active_users, s.events, s.events_per_user, s.rolling_7d_active_users,
    s.rolling_7d_events, s.usage_days_observed_7d, s.usage_unknown_7d, s.days_since_last_contact,
    s.is_churn_risk, s.build_run_id, @loaded_at
);

-- 5. What happened, per day: the batch's only result set (the adapter keeps the last one).
SELECT d.activity_date, d.snapshot_date,
       (SELECT COUNT(*) FROM #build_source AS s WHERE s.activity_date = d.activity_date) AS row_count,
       (SELECT COUNT(*) FROM #build_changes AS c WHERE c.activity_date = d.activity_date AND c.is_new = 1) AS inserted,
       (SELECT COUNT(*) FROM #build_changes AS c WHERE c.activity_date = d.activity_date AND c.is_new = 0) AS updated,
       (SELECT COUNT(*) FROM #build_removed AS r WHERE r.activity_date = d.activity_date) AS deleted
FROM #build_plan AS d
ORDER BY d.activity_date;
