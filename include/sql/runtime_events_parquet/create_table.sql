-- The curated copy: one row per valid, de-duplicated alert, by event day and cluster.
-- Each partition points at the folder of the run that last rebuilt it (write-audit-publish).
{% from "_macros.sql" import parquet_table with context -%}
{% call parquet_table() -%}
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
    `source_file` string,
    `tags` array<string>,
    `hostname` string,
    `alert_format` string
{%- endcall %}
