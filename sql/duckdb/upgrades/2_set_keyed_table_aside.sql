-- Schema version 2, DuckDB only: analytics.company_daily_activity and stg.product_usage_daily
-- without their PRIMARY KEYs. DuckDB cannot drop a key in place, so the adapter, in the one
-- transaction that applies schema.sql and only while a key is there: applies schema.sql (the
-- columns of the current version), runs this file, applies schema.sql again (its CREATE TABLE IF
-- NOT EXISTS makes the keyless tables, with every column and NOT NULL of the current schema), and
-- runs 2_copy_keyed_rows.sql. A failure anywhere leaves the file as it was, at its old version.
ALTER TABLE analytics.company_daily_activity RENAME TO company_daily_activity_keyed;

ALTER TABLE stg.product_usage_daily RENAME TO product_usage_daily_keyed;
