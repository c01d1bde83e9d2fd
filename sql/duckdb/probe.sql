-- GET /api/health: the analytics table can be read (its row count).
SELECT COUNT(*) AS row_count
FROM analytics.company_daily_activity;
