-- Alerts a day per workload (cluster, namespace, pod): how many, how severe, how many rules.
-- The run's window of days, from the curated copy; the partition key last.
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
