-- The Panoptica guide's raw table over the alert files, exactly as the guide creates it by hand.
-- Tolerant of malformed lines, so the guide's own queries run on it whatever lands in the bucket.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ params.database }}.runtime_events (
    `container.id` string,
    `evt.time` string,
    `k8s.ns.name` string,
    `k8s.pod.name` string,
    `proc.cmdline` string,
    `proc.pid` int,
    `cluster_id` string,
    `rule_name` string,
    `description` string,
    `severity` string,
    `related_cves` string
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES ('ignore.malformed.json' = 'true')
LOCATION '{{ params.raw_location }}'
