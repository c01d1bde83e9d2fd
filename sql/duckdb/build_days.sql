-- Rebuild the days listed in the temp table build_day (activity_date, run_id) from staging
-- and MERGE them into analytics.company_daily_activity. The adapter runs this file in one
-- transaction. Only the built days and the $rolling_days - 1 days before them are read, so the
-- cost follows the days being rebuilt, not the history the table holds. Rows whose values did not change
-- are not touched (their pipeline_run_id and loaded_at stay).

-- 0. Which of the requested days can be built, and from which snapshot. Decided here, inside
--    the build's transaction, from what is staged now: a plan made earlier may be out of date.
CREATE OR REPLACE TEMP TABLE build_plan AS
SELECT d.activity_date, d.run_id,
       (SELECT MAX(s.snapshot_date)
          FROM stg.crm_snapshot AS s
         WHERE s.snapshot_date <= d.activity_date
           AND s.snapshot_date >= d.activity_date - CAST($crm_max_snapshot_age_days AS INTEGER)) AS snapshot_date
FROM build_day AS d
WHERE EXISTS (SELECT 1 FROM stg.usage_dataset AS u WHERE u.activity_date = d.activity_date);

-- A requested day with no effective snapshot holds no rows: it waits (contract section 3). A day
-- built earlier loses its snapshot when CRM_MAX_SNAPSHOT_AGE_DAYS is lowered.
DELETE FROM analytics.company_daily_activity
WHERE activity_date IN (SELECT activity_date FROM build_plan WHERE snapshot_date IS NULL);

DELETE FROM build_plan WHERE snapshot_date IS NULL;

-- The date range every read below is limited to, as constants: DuckDB skips the row groups of
-- other days by their min/max, so a longer history costs (almost) nothing.
-- The rolling window is $rolling_days calendar days ending on the built day (a parameter: the
-- length is written once, in shared/domain/days.py).
SET VARIABLE window_back = CAST($rolling_days AS INTEGER) - 1;

SET VARIABLE build_first_day = (SELECT MIN(activity_date) - getvariable('window_back') FROM build_plan);

SET VARIABLE build_last_day = (SELECT MAX(activity_date) FROM build_plan);

-- The same for the CRM snapshots the built days use: the snapshot table holds every snapshot
-- ever dropped, and its rows are ordered by date, so constant bounds skip the others.
SET VARIABLE build_first_snapshot = (SELECT MIN(snapshot_date) FROM build_plan);

SET VARIABLE build_last_snapshot = (SELECT MAX(snapshot_date) FROM build_plan);

-- 1. What the days should hold, computed from the staged inputs alone.
CREATE OR REPLACE TEMP TABLE build_source AS
WITH window_usage AS (
    SELECT u.company_id, u.activity_date, u.active_users, u.events
    FROM stg.product_usage_daily AS u
    WHERE u.activity_date BETWEEN getvariable('build_first_day') AND getvariable('build_last_day')
),
-- Companies whose usage on a day is unknown (a record of theirs quarantined for its counts, none
-- staged): they count 0 in the sums, but the day is counted in usage_unknown_7d and its own
-- usage is NULL. An unknown never adds a row of its own (contract section 3).
window_unknown AS (
    SELECT k.company_id, k.activity_date
    FROM stg.usage_unknown AS k
    WHERE k.activity_date BETWEEN getvariable('build_first_day') AND getvariable('build_last_day')
),
window_snapshots AS (
    SELECT s.*
    FROM stg.crm_company_snapshot AS s
    WHERE s.snapshot_date BETWEEN getvariable('build_first_snapshot') AND getvariable('build_last_snapshot')
),
-- The companies each built day has a row for: those of its snapshot and those with usage on it
-- (a company in both is listed twice: the grouping below makes it one).
day_companies AS (
    SELECT d.activity_date, s.company_id
    FROM build_plan AS d
    JOIN window_snapshots AS s ON s.snapshot_date = d.snapshot_date
    UNION ALL
    SELECT d.activity_date, u.company_id
    FROM build_plan AS d
    JOIN window_usage AS u ON u.activity_date = d.activity_date
),
-- Each company's timeline, one row per day it has anything on: its usage, whether its usage is
-- unknown (it counts 0 in the sums, but the day is counted in usage_unknown_7d and its own usage
-- is NULL) and whether the day is a built day it has a row on.
daily AS (
    SELECT company_id, activity_date,
           SUM(active_users) AS active_users, SUM(events) AS events,
           SUM(unknown) AS unknown, MAX(has_row) AS has_row
    FROM (
        SELECT company_id, activity_date, active_users, events, 0 AS unknown, 0 AS has_row FROM window_usage
        UNION ALL
        SELECT company_id, activity_date, 0, 0, 1, 0 FROM window_unknown
        UNION ALL
        SELECT company_id, activity_date, 0, 0, 0, 1 FROM day_companies
    ) AS timeline
    GROUP BY company_id, activity_date
),
-- The rolling sums as a window over each company's timeline in date order, a RANGE frame of the
-- $rolling_days calendar days ending on the row's day (missing days add nothing), in one pass.
-- The frame is over the day's number, an integer: over the date DuckDB compares timestamps, and
-- the window was most of the build's time (issue 24).
rolling AS (
    SELECT activity_date, company_id,
           CASE WHEN unknown > 0 THEN NULL ELSE active_users END AS active_users,
           CASE WHEN unknown > 0 THEN NULL ELSE events END AS events,
           rolling_7d_active_users, rolling_7d_events, usage_unknown_7d
    FROM (
        SELECT *,
               SUM(active_users) OVER last_days AS rolling_7d_active_users,
               SUM(events) OVER last_days AS rolling_7d_events,
               SUM(unknown) OVER last_days AS usage_unknown_7d
        FROM daily
        WINDOW last_days AS (PARTITION BY company_id ORDER BY activity_date - DATE '1970-01-01'
                             RANGE BETWEEN getvariable('window_back') PRECEDING AND CURRENT ROW)
    ) AS summed
    WHERE has_row = 1
),
observed AS (
    SELECT d.activity_date, COUNT(ds.activity_date) AS usage_days_observed_7d
    FROM build_plan AS d
    LEFT JOIN stg.usage_dataset AS ds
           ON ds.activity_date BETWEEN d.activity_date - getvariable('window_back') AND d.activity_date
    GROUP BY d.activity_date
),
joined AS (
    SELECT r.company_id, r.activity_date,
           s.company_name, s.country, s.industry_tag, s.last_contact_at,
           d.snapshot_date AS crm_snapshot_date,
           r.active_users, r.events, r.rolling_7d_active_users, r.rolling_7d_events,
           o.usage_days_observed_7d, r.usage_unknown_7d,
           -- A contact later than the day (late evening in a western time zone is the next day
           -- in UTC) counts as 0 days, never fewer.
           -- (GREATEST would turn a NULL, never contacted, into 0.)
           CASE WHEN CAST(s.last_contact_at AS DATE) > r.activity_date THEN 0
                ELSE datediff('day', CAST(s.last_contact_at AS DATE), r.activity_date) END AS days_since_last_contact,
           d.run_id
    FROM rolling AS r
    JOIN build_plan AS d ON d.activity_date = r.activity_date
    JOIN observed AS o ON o.activity_date = r.activity_date
    LEFT JOIN window_snapshots AS s
           ON s.snapshot_date = d.snapshot_date AND s.company_id = r.company_id
),
ruled AS (
    SELECT *,
           (rolling_7d_active_users = 0
            OR (rolling_7d_active_users < $churn_min_rolling_users
                AND (days_since_last_contact IS NULL OR days_since_last_contact > $churn_max_contact_age_days))
           ) AS rule_flags
    FROM joined
)
SELECT company_id, activity_date, company_name, country, industry_tag, last_contact_at,
       crm_snapshot_date,
       CAST(active_users AS INTEGER) AS active_users,
       CAST(events AS INTEGER) AS events,
       -- events / active_users rounded half away from zero to 4 places, exactly as DECIMAL(18,4)
       -- does in T-SQL. In whole numbers: DuckDB divides a DECIMAL in DOUBLE, which rounds some
       -- exact halves of large counts down (19514.04125 -> 19514.0412). Counts are never negative.
       CASE WHEN active_users IS NULL OR active_users = 0 THEN NULL
            ELSE CAST(CAST((events * 20000 + active_users) // (2 * active_users) AS DECIMAL(18, 0))
                      * CAST(0.0001 AS DECIMAL(5, 4)) AS DECIMAL(18, 4)) END AS events_per_user,
       CAST(rolling_7d_active_users AS BIGINT) AS rolling_7d_active_users,
       CAST(rolling_7d_events AS BIGINT) AS rolling_7d_events,
       CAST(usage_days_observed_7d AS INTEGER) AS usage_days_observed_7d,
       CAST(usage_unknown_7d AS INTEGER) AS usage_unknown_7d,
       CAST(days_since_last_contact AS INTEGER) AS days_since_last_contact,
       -- Cannot tell (NULL) when the rule flags the company and usage it would need is unknown:
       -- more users can only make the rule false, so a false stays false.
       CASE WHEN rule_flags AND usage_unknown_7d > 0 THEN NULL ELSE rule_flags END AS is_churn_risk,
       -- The run whose input asked for the day's rebuild: written only with a changed row.
       run_id AS build_run_id
FROM ruled;

-- 2. New rows and rows whose values changed.
CREATE OR REPLACE TEMP TABLE build_changes AS
SELECT s.*, t.company_id IS NULL AS is_new
FROM build_source AS s
LEFT JOIN (
    SELECT * FROM analytics.company_daily_activity
    WHERE activity_date BETWEEN getvariable('build_first_day') AND getvariable('build_last_day')
) AS t
       ON t.activity_date = s.activity_date AND t.company_id = s.company_id
WHERE t.company_id IS NULL
   OR t.company_name IS DISTINCT FROM s.company_name
   OR t.country IS DISTINCT FROM s.country
   OR t.industry_tag IS DISTINCT FROM s.industry_tag
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
CREATE OR REPLACE TEMP TABLE build_removed AS
SELECT t.activity_date, t.company_id
FROM analytics.company_daily_activity AS t
JOIN build_plan AS d ON d.activity_date = t.activity_date
WHERE t.activity_date BETWEEN getvariable('build_first_day') AND getvariable('build_last_day')
  AND NOT EXISTS (
    SELECT 1 FROM build_source AS s
    WHERE s.activity_date = t.activity_date AND s.company_id = t.company_id
);

DELETE FROM analytics.company_daily_activity AS t
USING build_removed AS r
WHERE t.activity_date = r.activity_date AND t.company_id = r.company_id;

-- 4. The upsert, as its two halves: the rows that changed are updated, the new ones inserted.
--    (T-SQL MERGEs; the outcome is the same.) A brand-new day is an INSERT alone: DuckDB's MERGE
--    joined every new row to the keyed table once more to find it unmatched.
UPDATE analytics.company_daily_activity AS t SET
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
    loaded_at = $loaded_at
FROM build_changes AS s
WHERE NOT s.is_new AND t.activity_date = s.activity_date AND t.company_id = s.company_id;

INSERT INTO analytics.company_daily_activity (
    company_id, activity_date, company_name, country, industry_tag, last_contact_at,
    crm_snapshot_date, active_users, events, events_per_user, rolling_7d_active_users,
    rolling_7d_events, usage_days_observed_7d, usage_unknown_7d, days_since_last_contact,
    is_churn_risk, pipeline_run_id, loaded_at
)
SELECT s.company_id, s.activity_date, s.company_name, s.country, s.industry_tag, s.last_contact_at,
       s.crm_snapshot_date, s.active_users, s.events, s.events_per_user, s.rolling_7d_active_users,
       s.rolling_7d_events, s.usage_days_observed_7d, s.usage_unknown_7d, s.days_since_last_contact,
       s.is_churn_risk, s.build_run_id, $loaded_at
FROM build_changes AS s
WHERE s.is_new;

-- 5. One row per company and day (contract section 3). DuckDB's table has no key (its index cost
--    every build and checkpoint more than it paid: docs/performance.md), so the days just written
--    are checked here, in the build's transaction: a duplicate fails the build, nothing is kept.
--    The adapter turns the error into one line (DUPLICATE_ROWS in warehouse_duckdb.py).
SELECT error('duplicate rows: analytics.company_daily_activity would hold ' || CAST(n AS VARCHAR)
             || ' rows for company ' || company_id || ' on ' || CAST(activity_date AS VARCHAR)
             || ' (one row per company and day); nothing was written')
FROM (
    SELECT t.company_id, t.activity_date, COUNT(*) AS n
    FROM analytics.company_daily_activity AS t
    WHERE t.activity_date BETWEEN getvariable('build_first_day') AND getvariable('build_last_day')
      AND t.activity_date IN (SELECT activity_date FROM build_plan)
    GROUP BY t.company_id, t.activity_date
    HAVING COUNT(*) > 1
    ORDER BY t.activity_date, t.company_id
    LIMIT 1
) AS duplicates;

-- 6. What happened, per day (the adapter returns the last statement's rows).
SELECT d.activity_date, d.snapshot_date,
       (SELECT COUNT(*) FROM build_source AS s WHERE s.activity_date = d.activity_date) AS row_count,
       (SELECT COUNT(*) FROM build_changes AS c WHERE c.activity_date = d.activity_date AND c.is_new) AS inserted,
       (SELECT COUNT(*) FROM build_changes AS c WHERE c.activity_date = d.activity_date AND NOT c.is_new) AS updated,
       (SELECT COUNT(*) FROM build_removed AS r WHERE r.activity_date = d.activity_date) AS deleted
FROM build_plan AS d
ORDER BY d.activity_date;
