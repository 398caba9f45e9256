-- Write one batch of the new version from the stage: one copy of each valid alert of the
-- batch's (dt, cluster_id) partitions, at most 100 (Athena's limit for one write), a range of
-- them in (dt, cluster_id) order as audit_stage planned it.
INSERT INTO {{ params.versions.runtime_events_parquet.table }}
SELECT
    event_id, event_time, container_id, namespace, pod_name, cmdline, pid, rule_name,
    description, severity, related_cves, source_file, tags, hostname, alert_format, dt, cluster_id
FROM {{ params.stage.table }}
WHERE reject_reason IS NULL
    AND scope = 'window'
    AND copy_number = 1
{%- if params.partitions is defined and params.partitions %}
    AND (dt > '{{ params.partitions.first_dt }}'
        OR (dt = '{{ params.partitions.first_dt }}' AND cluster_id >= '{{ params.partitions.first_cluster_id | replace("'", "''") }}'))
    AND (dt < '{{ params.partitions.last_dt }}'
        OR (dt = '{{ params.partitions.last_dt }}' AND cluster_id <= '{{ params.partitions.last_cluster_id | replace("'", "''") }}'))
{%- else %}
    -- no valid alert in the window: the batch writes nothing
    AND false
{%- endif %}
