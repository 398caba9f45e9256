-- The curated copy: one row per valid, de-duplicated alert, by event day and cluster.
-- Each partition points at the folder of the run that last rebuilt it (write-audit-publish).
CREATE EXTERNAL TABLE IF NOT EXISTS {{ params.database }}.runtime_events_parquet (
    `event_id` string,
    `event_time` timestamp,
    `container_id` string,
    `namespace` string,
    `pod_name` string,
    `cmdline` string,
    `pid` int,
    `rule_name` string,
    `description` string,
    `severity` string,
    `related_cves` array<string>,
    `source_file` string
)
PARTITIONED BY (`dt` string, `cluster_id` string)
STORED AS PARQUET
LOCATION '{{ params.curated_location }}runtime_events_parquet/'
TBLPROPERTIES ('parquet.compression' = 'ZSTD')
