-- Account for every line the run scanned, in two groupings of one pass over the stage:
-- 'partition' rows per scope (the window's days, lines whose day is unknown, lines of other
-- days), day, outcome (loaded or a reject reason) and, for valid alerts of the window, cluster
-- (from which the write batches of at most 100 partitions are planned); 'file' rows per raw file,
-- with its lines and rejects. The check after it fails the run when too large a share of lines is
-- rejected: over all of them, over a window day's, or over one file's.
SELECT
    CASE WHEN grouping(source_file) = 0 THEN 'file' ELSE 'partition' END AS grain,
    scope,
    dt,
    reject_reason,
    cluster_id,
    source_file,
    sum(line_count) AS line_count,
    sum(CASE WHEN reject_reason IS NOT NULL THEN line_count ELSE 0 END) AS rejected_count,
    count(DISTINCT event_id) AS event_count
FROM (
    SELECT
        scope,
        dt,
        reject_reason,
        CASE WHEN reject_reason IS NULL AND scope = 'window' THEN cluster_id END AS cluster_id,
        source_file,
        line_count,
        event_id
    FROM {{ params.stage.table }}
)
GROUP BY GROUPING SETS ((scope, dt, reject_reason, cluster_id), (source_file))
ORDER BY 1, 2, 3, 4, 5, 6
