-- Alerts a day per cluster and MITRE ATT&CK technique. An alert's techniques are those its own
-- tags name (Falco's alerts carry their rule's tags), paired with tactics as rule_attack_techniques
-- pairs them: the alert's mitre_<tactic> tags that ATT&CK lists for the technique; if none is, the
-- alert's tactic tags (Falco's claim); if it has none, the technique's ATT&CK tactics. An alert
-- whose tags name no technique takes its rule's rows in rule_attack_techniques. An alert counts
-- once for each (tactic, technique); alerts that map to none are not counted.
-- The run's window of days, from the curated copy; the partition key last.
{% from "_macros.sql" import alert_techniques, rule_tag_pairs with context -%}
WITH events AS (
    SELECT
        cluster_id,
        namespace,
        pod_name,
        rule_name,
        severity,
        event_time,
        coalesce(tags, CAST(ARRAY[] AS array(varchar))) AS tags,
        dt
    FROM {{ params.database }}.runtime_events_parquet
    WHERE dt BETWEEN '{{ params.dt_from }}' AND '{{ params.dt_to }}'
),

-- An alert's techniques depend on its rule and its tags alone: they are found once for each
-- (rule_name, tags) of the window (the macro's "alerts"; its event_id is their number), read
-- from those two columns, and joined to the alerts that have them.
{{ rule_tag_pairs() }},

{{ alert_techniques() }}

SELECT
    a.cluster_id,
    t.tactic,
    t.technique_id,
    t.technique_name,
    count(*) AS event_count,
    count(DISTINCT CASE WHEN a.pod_name IS NOT NULL THEN ROW(a.namespace, a.pod_name) END) AS distinct_pods,
    min(a.event_time) AS first_seen,
    max(a.event_time) AS last_seen,
    CASE max(CASE a.severity
            WHEN 'Critical' THEN 5 WHEN 'High' THEN 4 WHEN 'Medium' THEN 3 WHEN 'Low' THEN 2 WHEN 'Info' THEN 1
            ELSE 0 END)
        WHEN 5 THEN 'Critical' WHEN 4 THEN 'High' WHEN 3 THEN 'Medium' WHEN 2 THEN 'Low' WHEN 1 THEN 'Info'
        ELSE 'Unknown'
    END AS max_severity,
    a.dt
FROM events AS a
INNER JOIN alerts AS k ON k.rule_name = a.rule_name AND k.tags = a.tags
INNER JOIN techniques AS t ON t.event_id = k.event_id
GROUP BY a.cluster_id, t.tactic, t.technique_id, t.technique_name, a.dt
