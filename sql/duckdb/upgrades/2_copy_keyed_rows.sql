-- Schema version 2, second half (see 2_set_keyed_table_aside.sql): every row of the keyed
-- table into the keyless one, by column name (a file upgraded from version 0 has its columns in
-- another order), in key order (a build's reads skip row groups by activity_date); then the
-- keyed table goes. The views name the table, so they read the new one.
INSERT INTO analytics.company_daily_activity BY NAME
SELECT * FROM analytics.company_daily_activity_keyed
ORDER BY activity_date, company_id;

DROP TABLE analytics.company_daily_activity_keyed;
