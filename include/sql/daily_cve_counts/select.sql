-- Alerts a day per cluster and CVE named in the alert, with the pods they came from.
-- The run's window of days, from the curated copy; the partition key last.
SELECT
    e.cluster_id,
    c.cve_id,
    count(*) AS event_count,
    count(DISTINCT CASE WHEN e.pod_name IS NOT NULL THEN ROW(e.namespace, e.pod_name) END) AS distinct_pods,
    e.dt
FROM {{ params.database }}.runtime_events_parquet AS e
CROSS JOIN UNNEST(e.related_cves) AS c (cve_id)
WHERE e.dt BETWEEN '{{ params.dt_from }}' AND '{{ params.dt_to }}'
GROUP BY e.cluster_id, c.cve_id, e.dt
