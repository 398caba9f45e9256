-- Alerts a day per cluster and CVE named in the alert, with the pods they came from.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ params.database }}.daily_cve_counts (
    `cluster_id` string,
    `cve_id` string,
    `event_count` bigint,
    `distinct_pods` bigint
)
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION '{{ params.curated_location }}daily_cve_counts/'
TBLPROPERTIES ('parquet.compression' = 'ZSTD')
