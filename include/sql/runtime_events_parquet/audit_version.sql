-- Audit the new version before it is published: per day, the rows written against the distinct
-- valid alerts staged, unique event ids, required columns, the severity domain and the day.
WITH expected AS (
    SELECT dt, count(DISTINCT event_id) AS expected_rows
    FROM {{ params.database }}.runtime_events_stage_{{ params.run_token }}
    WHERE reject_reason IS NULL AND scope = 'window'
    GROUP BY dt
),

written AS (
    SELECT
        dt,
        count(*) AS written_rows,
        count(DISTINCT event_id) AS distinct_event_ids,
        count_if(event_id IS NULL OR event_time IS NULL OR rule_name IS NULL OR cluster_id IS NULL
            OR related_cves IS NULL OR source_file IS NULL) AS missing_required,
        count_if(severity NOT IN ('Critical', 'High', 'Medium', 'Low', 'Info', 'Unknown')
            OR severity IS NULL) AS unknown_severity,
        count_if(CAST(CAST(event_time AS date) AS varchar) <> dt) AS wrong_day
    FROM {{ params.database }}.runtime_events_parquet_{{ params.run_token }}
    GROUP BY dt
)

SELECT
    coalesce(e.dt, w.dt) AS dt,
    coalesce(e.expected_rows, 0) AS expected_rows,
    coalesce(w.written_rows, 0) AS written_rows,
    coalesce(w.distinct_event_ids, 0) AS distinct_event_ids,
    coalesce(w.missing_required, 0) AS missing_required,
    coalesce(w.unknown_severity, 0) AS unknown_severity,
    coalesce(w.wrong_day, 0) AS wrong_day
FROM expected AS e
FULL OUTER JOIN written AS w ON e.dt = w.dt
ORDER BY 1
