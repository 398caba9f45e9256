-- Alerts a day per cluster, rule and severity, with the workloads they touched.
{% from "_macros.sql" import parquet_table with context -%}
{% call parquet_table() -%}
    `cluster_id` string,
    `rule_name` string,
    `severity` string,
    `event_count` bigint,
    `distinct_pods` bigint,
    `distinct_containers` bigint,
    `first_seen` timestamp,
    `last_seen` timestamp
{%- endcall %}
