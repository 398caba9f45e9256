-- Rebuild the window's days of daily_workload_counts into this run's version folder.
CREATE TABLE {{ params.database }}.daily_workload_counts_{{ params.run_token }}
WITH (
    format = 'PARQUET',
    write_compression = 'ZSTD',
    external_location = '{{ params.curated_location }}daily_workload_counts/{{ params.run_token }}/',
    partitioned_by = ARRAY['dt']
) AS
SELECT
    cluster_id,
    namespace,
    pod_name,
    count(*) AS event_count,
    count_if(severity IN ('Critical', 'High')) AS high_severity_count,
    count(DISTINCT rule_name) AS distinct_rules,
    dt
FROM {{ params.database }}.runtime_events_parquet
WHERE dt BETWEEN '{{ params.dt_from }}' AND '{{ params.dt_to }}'
GROUP BY cluster_id, namespace, pod_name, dt
