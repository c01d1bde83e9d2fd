SET NOCOUNT ON;
-- GET /api/health: the analytics table can be read (its row count). COUNT_BIG: a table may pass
-- the INT range, and DuckDB's COUNT does not overflow either.
SELECT COUNT_BIG(*) AS row_count
FROM analytics.company_daily_activity;
