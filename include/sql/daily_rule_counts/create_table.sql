-- Alerts a day per cluster, rule and severity, with the workloads they touched.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ params.database }}.daily_rule_counts (
    `cluster_id` string,
    `rule_name` string,
    `severity` string,
    `event_count` bigint,
    `distinct_pods` bigint,
    `distinct_containers` bigint,
    `first_seen` timestamp,
    `last_seen` timestamp
)
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION '{{ params.curated_location }}daily_rule_counts/'
TBLPROPERTIES ('parquet.compression' = 'ZSTD')
