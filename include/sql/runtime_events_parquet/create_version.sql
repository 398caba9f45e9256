-- An empty table for this run's new version of the curated partitions, in a folder of its own
-- inside the table's folder; the publish batches fill it, the publish step points the curated
-- table's partitions at it.
{% from "_macros.sql" import create_work_table -%}
{% call create_work_table(params.versions.runtime_events_parquet, no_data=true) -%}
SELECT
    event_id, event_time, container_id, namespace, pod_name, cmdline, pid, rule_name,
    description, severity, related_cves, source_file, tags, hostname, alert_format, dt, cluster_id
FROM {{ params.stage.table }}
{%- endcall %}
