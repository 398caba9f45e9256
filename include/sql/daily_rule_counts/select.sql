-- Alerts a day per cluster, rule and severity, with the workloads they touched.
-- The run's window of days, from the curated copy; the partition key last.
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
