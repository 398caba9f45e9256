-- Alerts a day per cluster and canonical severity.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ params.database }}.daily_severity_counts (
    `cluster_id` string,
    `severity` string,
    `event_count` bigint
)
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION '{{ params.curated_location }}daily_severity_counts/'
TBLPROPERTIES ('parquet.compression' = 'ZSTD')
