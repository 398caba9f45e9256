-- One row per statement a run sent: the bytes Athena scanned and the estimated cost ($5 per TB
-- scanned, rounded up to the MB, 10 MB minimum per query; DDL that scans nothing is free).
{% from "_macros.sql" import parquet_table with context -%}
{% call parquet_table() -%}
    `run_token` string,
    `logical_date` string,
    `task_id` string,
    `map_index` int,
    `query_execution_id` string,
    `statement_type` string,
    `data_scanned_bytes` bigint,
    `billed_bytes` bigint,
    `estimated_cost_usd` double,
    `recorded_at` timestamp
{%- endcall %}
