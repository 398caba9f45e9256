-- Alerts a day per cluster and canonical severity.
{% from "_macros.sql" import parquet_table with context -%}
{% call parquet_table() -%}
    `cluster_id` string,
    `severity` string,
    `event_count` bigint
{%- endcall %}
