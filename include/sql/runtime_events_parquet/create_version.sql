-- An empty table for this run's new version of the curated partitions, in a folder of its own
-- inside the table's folder; the publish batches fill it, the publish step points the curated
-- table's partitions at it.
CREATE TABLE {{ params.database }}.runtime_events_parquet_{{ params.run_token }}
WITH (
    format = 'PARQUET',
    write_compression = 'ZSTD',
    external_location = '{{ params.curated_location }}runtime_events_parquet/{{ params.run_token }}/',
    partitioned_by = ARRAY['dt', 'cluster_id']
) AS
SELECT
    event_id, event_time, container_id, namespace, pod_name, cmdline, pid, rule_name,
    description, severity, related_cves, source_file, dt, cluster_id
FROM {{ params.database }}.runtime_events_stage_{{ params.run_token }}
WITH NO DATA
