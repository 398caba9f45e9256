-- Account for every line the run scanned: per scope (the window's days, lines whose day is
-- unknown, lines of other days), day, outcome (loaded or a reject reason) and, for rejects, file.
-- The check after it fails the run when too large a share of the scanned lines is rejected.
SELECT
    scope,
    dt,
    reject_reason,
    CASE WHEN reject_reason IS NOT NULL THEN source_file END AS source_file,
    sum(line_count) AS line_count,
    count(DISTINCT event_id) AS event_count,
    max(write_batch) AS last_write_batch
FROM {{ params.database }}.runtime_events_stage_{{ params.run_token }}
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4
