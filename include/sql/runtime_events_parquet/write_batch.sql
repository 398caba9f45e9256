-- Write one batch of at most 100 (dt, cluster_id) partitions of the new version from the stage:
-- one copy of each valid alert.
INSERT INTO {{ params.database }}.runtime_events_parquet_{{ params.run_token }}
SELECT
    event_id, event_time, container_id, namespace, pod_name, cmdline, pid, rule_name,
    description, severity, related_cves, source_file, dt, cluster_id
FROM {{ params.database }}.runtime_events_stage_{{ params.run_token }}
WHERE reject_reason IS NULL
    AND copy_number = 1
    AND write_batch = {{ params.batch }}
