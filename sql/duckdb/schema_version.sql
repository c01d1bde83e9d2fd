-- The schema version that sql/duckdb/schema.sql recorded. The adapter reads it only after it
-- found the table (a file made before versions has none).
SELECT max(version) AS version FROM analytics.schema_version;
