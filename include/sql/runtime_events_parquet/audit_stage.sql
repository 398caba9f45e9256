-- Account for every line the run scanned: per scope (the window's days, lines whose day is
-- unknown, lines of other days), day, outcome (loaded or a reject reason) and, for rejects, file;
-- valid alerts of the window per (dt, cluster_id) partition, from which the publish batches of at
-- most 100 partitions are planned. The check after it fails the run when too large a share of the
-- scanned lines is rejected.
SELECT
    scope,
    dt,
    reject_reason,
    CASE WHEN reject_reason IS NOT NULL THEN source_file END AS source_file,
    CASE WHEN reject_reason IS NULL AND scope = 'window' THEN cluster_id END AS cluster_id,
    sum(line_count) AS line_count,
    count(DISTINCT event_id) AS event_count
FROM {{ params.database }}.runtime_events_stage_{{ params.run_token }}
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5
