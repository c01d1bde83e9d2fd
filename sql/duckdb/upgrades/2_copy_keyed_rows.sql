-- Schema version 2, second half (see 2_set_keyed_table_aside.sql): every row of each keyed
-- table into its keyless one, by column name (a file upgraded from version 0 has its columns in
-- another order), in the order they were (by day, as they were written: a build's reads skip
-- row groups by activity_date); then the keyed tables go. The views name the table, so they
-- read the new one.
INSERT INTO analytics.company_daily_activity BY NAME
SELECT * FROM analytics.company_daily_activity_keyed;

DROP TABLE analytics.company_daily_activity_keyed;

INSERT INTO stg.product_usage_daily BY NAME
SELECT * FROM stg.product_usage_daily_keyed;

DROP TABLE stg.product_usage_daily_keyed;
