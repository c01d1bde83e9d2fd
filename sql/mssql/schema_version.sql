SET NOCOUNT ON;
-- The schema version that sql/mssql/schema.sql recorded; NULL when none is (the schema was never
-- applied, or this login cannot see it). The app reads it before its first SQL work. The table
-- is looked up first: a SELECT of a table that is not there fails only when it runs.
DECLARE @version INT;
IF (OBJECT_ID(N'analytics.schema_version', N'U') IS NOT NULL)
    SELECT @version = MAX(version) FROM analytics.schema_version;
SELECT @version AS version;
