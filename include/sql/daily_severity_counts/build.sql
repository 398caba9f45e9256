-- Rebuild the window's days of daily_severity_counts into this run's version folder.
CREATE TABLE {{ params.database }}.daily_severity_counts_{{ params.run_token }}
WITH (
    format = 'PARQUET',
    write_compression = 'ZSTD',
    external_location = '{{ params.curated_location }}daily_severity_counts/{{ params.run_token }}/',
    partitioned_by = ARRAY['dt']
) AS
SELECT
    cluster_id,
    severity,
    count(*) AS event_count,
    dt
FROM {{ params.database }}.runtime_events_parquet
WHERE dt BETWEEN '{{ params.dt_from }}' AND '{{ params.dt_to }}'
GROUP BY cluster_id, severity, dt
