-- Alerts a day per cluster and canonical severity.
-- The run's window of days, from the curated copy; the partition key last.
SELECT
    cluster_id,
    severity,
    count(*) AS event_count,
    dt
FROM {{ params.database }}.runtime_events_parquet
WHERE dt BETWEEN '{{ params.dt_from }}' AND '{{ params.dt_to }}'
GROUP BY cluster_id, severity, dt
