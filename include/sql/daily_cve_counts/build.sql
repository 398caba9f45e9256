-- Rebuild the window's days of daily_cve_counts into this run's version folder.
CREATE TABLE {{ params.database }}.daily_cve_counts_{{ params.run_token }}
WITH (
    format = 'PARQUET',
    write_compression = 'ZSTD',
    external_location = '{{ params.curated_location }}daily_cve_counts/{{ params.run_token }}/',
    partitioned_by = ARRAY['dt']
) AS
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
