-- The quality gate's coverage check (contract section 5): of the companies with usage staged on
-- a day, how many the day's effective CRM snapshot holds, how many of the others it holds when
-- case and surrounding spaces are ignored, and a few of those not found (with that near match,
-- if any). One row of counts when every id matches; else one row per example (at most 5), near
-- matches first, the counts repeated on each.
WITH usage_ids AS (
    SELECT company_id
    FROM stg.product_usage_daily
    WHERE activity_date = $activity_date
),
crm_ids AS (
    SELECT company_id, LOWER(TRIM(company_id)) AS folded
    FROM stg.crm_company_snapshot
    WHERE snapshot_date = $snapshot_date
),
unmatched AS (
    SELECT u.company_id, MIN(c.company_id) AS crm_company_id
    FROM usage_ids AS u
    LEFT JOIN crm_ids AS c ON c.folded = LOWER(TRIM(u.company_id))
    WHERE NOT EXISTS (SELECT 1 FROM crm_ids AS x WHERE x.company_id = u.company_id)
    GROUP BY u.company_id
),
counts AS (
    SELECT
        (SELECT COUNT(*) FROM usage_ids) AS usage_companies,
        (SELECT COUNT(*) FROM unmatched) AS unmatched,
        (SELECT COUNT(crm_company_id) FROM unmatched) AS near_matches
),
examples AS (
    SELECT company_id, crm_company_id
    FROM unmatched
    ORDER BY CASE WHEN crm_company_id IS NULL THEN 1 ELSE 0 END, company_id
    LIMIT 5
)
SELECT k.usage_companies, k.unmatched, k.near_matches, e.company_id, e.crm_company_id
FROM counts AS k
LEFT JOIN examples AS e ON 1 = 1
ORDER BY CASE WHEN e.crm_company_id IS NULL THEN 1 ELSE 0 END, e.company_id;
