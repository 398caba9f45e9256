-- Audit the new version before it is published, per (dt, cluster_id) partition: the rows written
-- against the distinct valid alerts staged, unique event ids, required columns, the severity
-- domain, the day, and the rows the published table holds now (a rebuild must not publish fewer
-- unless the run allows it). 'day' rows give the lines the run scanned of each window day: a day
-- without lines keeps what was published for it.
WITH expected AS (
    SELECT dt, cluster_id, count(DISTINCT event_id) AS expected_rows
    FROM {{ params.stage.table }}
    WHERE reject_reason IS NULL AND scope = 'window'
    GROUP BY dt, cluster_id
),

written AS (
    SELECT
        dt,
        cluster_id,
        count(*) AS written_rows,
        count(DISTINCT event_id) AS distinct_event_ids,
        count_if(event_id IS NULL OR event_time IS NULL OR rule_name IS NULL OR cluster_id IS NULL
            OR related_cves IS NULL OR source_file IS NULL) AS missing_required,
        count_if(severity NOT IN ('Critical', 'High', 'Medium', 'Low', 'Info', 'Unknown')
            OR severity IS NULL) AS unknown_severity,
        count_if(CAST(CAST(event_time AS date) AS varchar) <> dt) AS wrong_day
    FROM {{ params.versions.runtime_events_parquet.table }}
    GROUP BY dt, cluster_id
),

published AS (
    SELECT dt, cluster_id, count(*) AS published_rows
    FROM {{ params.database }}.runtime_events_parquet
    WHERE dt BETWEEN '{{ params.dt_from }}' AND '{{ params.dt_to }}'
    GROUP BY dt, cluster_id
),

partitions AS (
    SELECT
        coalesce(e.dt, w.dt) AS dt,
        coalesce(e.cluster_id, w.cluster_id) AS cluster_id,
        coalesce(e.expected_rows, 0) AS expected_rows,
        coalesce(w.written_rows, 0) AS written_rows,
        coalesce(w.distinct_event_ids, 0) AS distinct_event_ids,
        coalesce(w.missing_required, 0) AS missing_required,
        coalesce(w.unknown_severity, 0) AS unknown_severity,
        coalesce(w.wrong_day, 0) AS wrong_day
    FROM expected AS e
    FULL OUTER JOIN written AS w ON e.dt = w.dt AND e.cluster_id = w.cluster_id
),

days AS (
    SELECT dt, sum(line_count) AS lines_scanned
    FROM {{ params.stage.table }}
    WHERE scope = 'window'
    GROUP BY dt
)

SELECT
    'partition' AS grain,
    coalesce(p.dt, b.dt) AS dt,
    coalesce(p.cluster_id, b.cluster_id) AS cluster_id,
    CAST(NULL AS bigint) AS lines_scanned,
    coalesce(p.expected_rows, 0) AS expected_rows,
    coalesce(p.written_rows, 0) AS written_rows,
    coalesce(p.distinct_event_ids, 0) AS distinct_event_ids,
    coalesce(p.missing_required, 0) AS missing_required,
    coalesce(p.unknown_severity, 0) AS unknown_severity,
    coalesce(p.wrong_day, 0) AS wrong_day,
    coalesce(b.published_rows, 0) AS published_rows
FROM partitions AS p
FULL OUTER JOIN published AS b ON p.dt = b.dt AND p.cluster_id = b.cluster_id

UNION ALL

SELECT 'day', dt, NULL, lines_scanned, 0, 0, 0, 0, 0, 0, 0
FROM days

ORDER BY 1, 2, 3
