-- Rebuild the window's days of daily_rule_counts into this run's version folder.
CREATE TABLE {{ params.database }}.daily_rule_counts_{{ params.run_token }}
WITH (
    format = 'PARQUET',
    write_compression = 'ZSTD',
    external_location = '{{ params.curated_location }}daily_rule_counts/{{ params.run_token }}/',
    partitioned_by = ARRAY['dt']
) AS
SELECT
    cluster_id,
    rule_name,
    severity,
    count(*) AS event_count,
    count(DISTINCT CASE WHEN pod_name IS NOT NULL THEN ROW(namespace, pod_name) END) AS distinct_pods,
    count(DISTINCT container_id) AS distinct_containers,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen,
    dt
FROM {{ params.database }}.runtime_events_parquet
WHERE dt BETWEEN '{{ params.dt_from }}' AND '{{ params.dt_to }}'
GROUP BY cluster_id, rule_name, severity, dt
