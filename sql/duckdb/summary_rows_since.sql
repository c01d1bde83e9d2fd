-- Rows written (new or changed) since a moment: what one run of the demo did.
SELECT COUNT(*) AS rows_written
FROM analytics.company_daily_activity
WHERE loaded_at >= $since;
