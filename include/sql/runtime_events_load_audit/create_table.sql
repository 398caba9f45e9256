-- One row per run and event day (and one with a null dt for lines whose day is unknown):
-- every scanned line of the run's window is loaded, dropped as a duplicate or rejected.
{% from "_macros.sql" import parquet_table with context -%}
{% call parquet_table() -%}
    `run_token` string,
    `logical_date` string,
    `dt` string,
    `lines_scanned` bigint,
    `alerts_loaded` bigint,
    `duplicates_dropped` bigint,
    `lines_rejected` bigint,
    `rejected_invalid_utf8` bigint,
    `rejected_malformed_json` bigint,
    `rejected_not_object` bigint,
    `rejected_bad_event_time` bigint,
    `rejected_missing_cluster_id` bigint,
    `rejected_bad_cluster_id` bigint,
    `rejected_missing_rule_name` bigint,
    `files_with_rejects` bigint,
    `recorded_at` timestamp
{%- endcall %}
