-- Alerts a day per cluster and CVE named in the alert, with the pods they came from.
{% from "_macros.sql" import parquet_table with context -%}
{% call parquet_table() -%}
    `cluster_id` string,
    `cve_id` string,
    `event_count` bigint,
    `distinct_pods` bigint
{%- endcall %}
