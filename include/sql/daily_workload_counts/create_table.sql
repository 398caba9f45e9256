-- Alerts a day per workload (cluster, namespace, pod): how many, how severe, how many rules.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ params.database }}.daily_workload_counts (
    `cluster_id` string,
    `namespace` string,
    `pod_name` string,
    `event_count` bigint,
    `high_severity_count` bigint,
    `distinct_rules` bigint
)
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION '{{ params.curated_location }}daily_workload_counts/'
TBLPROPERTIES ('parquet.compression' = 'ZSTD')
