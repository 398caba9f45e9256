-- Record the run's accounting: per day of the window (days without lines included) and one row
-- with a null dt for rejected lines whose day is unknown. INSERT INTO appends: one file a run.
INSERT INTO {{ params.database }}.runtime_events_load_audit
WITH days AS (
    SELECT CAST(day AS varchar) AS dt
    FROM UNNEST(sequence(DATE '{{ params.dt_from }}', DATE '{{ params.dt_to }}')) AS d (day)
),

per_day AS (
    SELECT
        dt,
        sum(line_count) AS lines_scanned,
        count_if(copy_number = 1) AS alerts_loaded,
        count_if(copy_number > 1) AS duplicates_dropped,
        count_if(reject_reason IS NOT NULL) AS lines_rejected,
        count_if(reject_reason = 'invalid_utf8') AS rejected_invalid_utf8,
        count_if(reject_reason = 'malformed_json') AS rejected_malformed_json,
        count_if(reject_reason = 'not_object') AS rejected_not_object,
        count_if(reject_reason = 'bad_event_time') AS rejected_bad_event_time,
        count_if(reject_reason = 'missing_cluster_id') AS rejected_missing_cluster_id,
        count_if(reject_reason = 'bad_cluster_id') AS rejected_bad_cluster_id,
        count_if(reject_reason = 'missing_rule_name') AS rejected_missing_rule_name,
        count(DISTINCT CASE WHEN reject_reason IS NOT NULL THEN source_file END) AS files_with_rejects
    FROM {{ params.stage.table }}
    WHERE scope <> 'other_days'
    GROUP BY dt
)

SELECT
    '{{ params.run_token }}' AS run_token,
    '{{ params.logical_date }}' AS logical_date,
    coalesce(d.dt, p.dt) AS dt,
    coalesce(p.lines_scanned, 0),
    coalesce(p.alerts_loaded, 0),
    coalesce(p.duplicates_dropped, 0),
    coalesce(p.lines_rejected, 0),
    coalesce(p.rejected_invalid_utf8, 0),
    coalesce(p.rejected_malformed_json, 0),
    coalesce(p.rejected_not_object, 0),
    coalesce(p.rejected_bad_event_time, 0),
    coalesce(p.rejected_missing_cluster_id, 0),
    coalesce(p.rejected_bad_cluster_id, 0),
    coalesce(p.rejected_missing_rule_name, 0),
    coalesce(p.files_with_rejects, 0),
    CAST(current_timestamp AS timestamp)
FROM days AS d
FULL OUTER JOIN per_day AS p ON d.dt = p.dt
