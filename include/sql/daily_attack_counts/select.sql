-- Alerts a day per cluster and MITRE ATT&CK technique: an alert counts once for each technique
-- its rule maps to; alerts of rules that map to none are not counted here.
-- The run's window of days, from the curated copy; the partition key last.
SELECT
    e.cluster_id,
    m.tactic,
    m.technique_id,
    m.technique_name,
    count(*) AS event_count,
    count(DISTINCT CASE WHEN e.pod_name IS NOT NULL THEN ROW(e.namespace, e.pod_name) END) AS distinct_pods,
    min(e.event_time) AS first_seen,
    max(e.event_time) AS last_seen,
    CASE max(CASE e.severity
            WHEN 'Critical' THEN 5 WHEN 'High' THEN 4 WHEN 'Medium' THEN 3 WHEN 'Low' THEN 2 WHEN 'Info' THEN 1
            ELSE 0 END)
        WHEN 5 THEN 'Critical' WHEN 4 THEN 'High' WHEN 3 THEN 'Medium' WHEN 2 THEN 'Low' WHEN 1 THEN 'Info'
        ELSE 'Unknown'
    END AS max_severity,
    e.dt
FROM {{ params.database }}.runtime_events_parquet AS e
INNER JOIN {{ params.database }}.rule_attack_techniques AS m ON m.rule_name = e.rule_name
WHERE e.dt BETWEEN '{{ params.dt_from }}' AND '{{ params.dt_to }}'
GROUP BY e.cluster_id, m.tactic, m.technique_id, m.technique_name, e.dt
