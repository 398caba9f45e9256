-- Alerts a day per cluster and MITRE ATT&CK technique. An alert's techniques are those its own
-- tags name (Falco's alerts carry their rule's tags), paired with tactics as rule_attack_techniques
-- pairs them: the alert's mitre_<tactic> tags that ATT&CK lists for the technique; if none is, the
-- alert's tactic tags (Falco's claim); if it has none, the technique's ATT&CK tactics. An alert
-- whose tags name no technique takes its rule's rows in rule_attack_techniques. An alert counts
-- once for each (tactic, technique); alerts that map to none are not counted.
-- The run's window of days, from the curated copy; the partition key last.
WITH alerts AS (
    SELECT
        event_id,
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

-- each technique an alert's tags name
tagged AS (
    SELECT DISTINCT
        a.event_id,
        t.tag AS technique_id,
        filter(a.tags, x -> starts_with(x, 'mitre_')) AS tactic_tags
    FROM alerts AS a
    CROSS JOIN UNNEST(a.tags) AS t (tag)
    WHERE t.tag IN (SELECT technique_id FROM {{ params.database }}.attack_techniques)
),

listed AS (
    SELECT x.event_id, k.tactic, k.technique_id, k.technique_name
    FROM tagged AS x
    INNER JOIN {{ params.database }}.attack_techniques AS k
        ON k.technique_id = x.technique_id AND contains(x.tactic_tags, k.tactic_tag)
),

claimed AS (
    SELECT x.event_id, c.tactic, x.technique_id, n.technique_name
    FROM tagged AS x
    CROSS JOIN UNNEST(x.tactic_tags) AS u (tag)
    INNER JOIN (SELECT DISTINCT tactic, tactic_tag FROM {{ params.database }}.attack_techniques) AS c
        ON c.tactic_tag = u.tag
    INNER JOIN (SELECT DISTINCT technique_id, technique_name FROM {{ params.database }}.attack_techniques) AS n
        ON n.technique_id = x.technique_id
    WHERE NOT EXISTS (SELECT 1 FROM listed AS l WHERE l.event_id = x.event_id AND l.technique_id = x.technique_id)
),

untactic AS (
    SELECT x.event_id, k.tactic, k.technique_id, k.technique_name
    FROM tagged AS x
    INNER JOIN {{ params.database }}.attack_techniques AS k ON k.technique_id = x.technique_id
    WHERE cardinality(x.tactic_tags) = 0
),

from_tags AS (
    SELECT event_id, tactic, technique_id, technique_name FROM listed
    UNION
    SELECT event_id, tactic, technique_id, technique_name FROM claimed
    UNION
    SELECT event_id, tactic, technique_id, technique_name FROM untactic
),

from_rules AS (
    SELECT a.event_id, m.tactic, m.technique_id, m.technique_name
    FROM alerts AS a
    INNER JOIN {{ params.database }}.rule_attack_techniques AS m ON m.rule_name = a.rule_name
    WHERE a.event_id NOT IN (SELECT event_id FROM from_tags)
),

techniques AS (
    SELECT event_id, tactic, technique_id, technique_name FROM from_tags
    UNION ALL
    SELECT event_id, tactic, technique_id, technique_name FROM from_rules
)

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
FROM alerts AS a
INNER JOIN techniques AS t ON t.event_id = a.event_id
GROUP BY a.cluster_id, t.tactic, t.technique_id, t.technique_name, a.dt
