-- Alerts a day per cluster and MITRE ATT&CK technique (through rule_attack_techniques): how many,
-- on how many pods, when first and last seen, and the highest severity among them.
{% from "_macros.sql" import parquet_table with context -%}
{% call parquet_table() -%}
    `cluster_id` string,
    `tactic` string,
    `technique_id` string,
    `technique_name` string,
    `event_count` bigint,
    `distinct_pods` bigint,
    `first_seen` timestamp,
    `last_seen` timestamp,
    `max_severity` string
{%- endcall %}
