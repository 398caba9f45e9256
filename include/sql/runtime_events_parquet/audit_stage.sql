-- Account for every staged line: per day, per outcome (loaded or a reject reason) and, for
-- rejects, per file. The check after it fails the run when too large a share is rejected.
SELECT
    dt,
    reject_reason,
    CASE WHEN reject_reason IS NOT NULL THEN source_file END AS source_file,
    count(*) AS line_count,
    count(DISTINCT event_id) AS event_count,
    count(DISTINCT source_file) AS file_count,
    max(write_batch) AS last_write_batch
FROM {{ params.database }}.runtime_events_stage_{{ params.run_token }}
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
