-- Alerts a day per workload (cluster, namespace, pod): how many, how severe, how many rules.
{% from "_macros.sql" import parquet_table with context -%}
{% call parquet_table() -%}
    `cluster_id` string,
    `namespace` string,
    `pod_name` string,
    `event_count` bigint,
    `high_severity_count` bigint,
    `distinct_rules` bigint
{%- endcall %}
