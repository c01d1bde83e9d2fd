-- The health check's read of each table (GET /api/health): one cheap read each, EXISTS stops at
-- the first row. Every table of schema.sql (tests/infra/test_sql_dialects.py checks).
SELECT CASE WHEN EXISTS (SELECT 1 FROM stg.product_usage_daily) THEN 1 ELSE 0 END AS product_usage_daily,
       CASE WHEN EXISTS (SELECT 1 FROM stg.usage_dataset) THEN 1 ELSE 0 END AS usage_dataset,
       CASE WHEN EXISTS (SELECT 1 FROM stg.usage_unknown) THEN 1 ELSE 0 END AS usage_unknown,
       CASE WHEN EXISTS (SELECT 1 FROM stg.crm_company_snapshot) THEN 1 ELSE 0 END AS crm_company_snapshot,
       CASE WHEN EXISTS (SELECT 1 FROM stg.crm_snapshot) THEN 1 ELSE 0 END AS crm_snapshot,
       CASE WHEN EXISTS (SELECT 1 FROM analytics.company_daily_activity) THEN 1 ELSE 0 END AS company_daily_activity,
       CASE WHEN EXISTS (SELECT 1 FROM analytics.schema_version) THEN 1 ELSE 0 END AS schema_version;
