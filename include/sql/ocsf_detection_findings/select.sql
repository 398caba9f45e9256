-- The run's window of curated alerts as OCSF 1.1.0 Detection Findings (class_uid 2004, category
-- 2 Findings, activity 1 Create): one row per alert; the partition key last.
--   time, finding_info.created_time   event_time, in milliseconds since the epoch
--   severity_id / severity             the canonical severity (Info is OCSF's Informational)
--   metadata.product                   Panoptica (Cisco) or Falco (The Falco Project), by alert_format
--   metadata.uid, finding_info.uid     event_id
--   finding_info.attacks               the alert's ATT&CK techniques, as daily_attack_counts finds them
--   resources                          the cluster, namespace, pod and container the alert names
--   evidences                          the process (pid and command line) when the pid is known
--   unmapped                           what OCSF has no attribute for (cluster_id, hostname, ...)
{% from "_macros.sql" import alert_techniques, rule_tag_pairs with context -%}
WITH events AS (
    SELECT
        event_id,
        event_time,
        container_id,
        namespace,
        pod_name,
        cmdline,
        pid,
        rule_name,
        description,
        severity,
        related_cves,
        source_file,
        coalesce(tags, CAST(ARRAY[] AS array(varchar))) AS tags,
        hostname,
        -- rows written before alert_format existed: Falco's alone carry a hostname or tags
        coalesce(alert_format,
            CASE WHEN hostname IS NOT NULL OR cardinality(tags) > 0 THEN 'falco' ELSE 'panoptica' END) AS alert_format,
        cluster_id,
        dt
    FROM {{ params.database }}.runtime_events_parquet
    WHERE dt BETWEEN '{{ params.dt_from }}' AND '{{ params.dt_to }}'
),

-- An alert's techniques depend on its rule and its tags alone: they are found once for each
-- (rule_name, tags) of the window, not once for each of its alerts. The macro's "alerts" are
-- these pairs, read from the table's two columns (not from events: a second reader of events
-- would make an engine keep or read all of its columns twice); its event_id is their number.
{{ rule_tag_pairs() }},

{{ alert_techniques() }},

attacks AS (
    SELECT
        event_id,
        array_agg(CAST(ROW(
            ROW(tactic,
                CASE tactic
                    WHEN 'Reconnaissance' THEN 'TA0043'
                    WHEN 'Resource Development' THEN 'TA0042'
                    WHEN 'Initial Access' THEN 'TA0001'
                    WHEN 'Execution' THEN 'TA0002'
                    WHEN 'Persistence' THEN 'TA0003'
                    WHEN 'Privilege Escalation' THEN 'TA0004'
                    WHEN 'Defense Evasion' THEN 'TA0005'
                    WHEN 'Credential Access' THEN 'TA0006'
                    WHEN 'Discovery' THEN 'TA0007'
                    WHEN 'Lateral Movement' THEN 'TA0008'
                    WHEN 'Collection' THEN 'TA0009'
                    WHEN 'Command and Control' THEN 'TA0011'
                    WHEN 'Exfiltration' THEN 'TA0010'
                    WHEN 'Impact' THEN 'TA0040'
                END),
            ROW(technique_name, technique_id),
            'v18.1')
            AS ROW(tactic ROW(name varchar, uid varchar), technique ROW(name varchar, uid varchar), version varchar))
            ORDER BY technique_id, tactic) AS attacks
    FROM techniques
    GROUP BY event_id
),

-- each (rule_name, tags) with its attacks: the small side of the join below
alert_attacks AS (
    SELECT a.rule_name, a.tags, k.attacks
    FROM alerts AS a
    LEFT JOIN attacks AS k ON k.event_id = a.event_id
),

findings AS (
    SELECT
        e.*,
        CAST(to_unixtime(e.event_time) * 1000 AS bigint) AS epoch_ms,
        CASE e.severity
            WHEN 'Critical' THEN 5 WHEN 'High' THEN 4 WHEN 'Medium' THEN 3 WHEN 'Low' THEN 2 WHEN 'Info' THEN 1
            ELSE 0
        END AS severity_id,
        x.attacks
    FROM events AS e
    LEFT JOIN alert_attacks AS x ON x.rule_name = e.rule_name AND x.tags = e.tags
)

SELECT
    1 AS activity_id,
    'Create' AS activity_name,
    2 AS category_uid,
    'Findings' AS category_name,
    2004 AS class_uid,
    'Detection Finding' AS class_name,
    CAST(200401 AS bigint) AS type_uid,
    'Detection Finding: Create' AS type_name,
    epoch_ms AS "time",
    severity_id,
    CASE severity_id
        WHEN 5 THEN 'Critical' WHEN 4 THEN 'High' WHEN 3 THEN 'Medium' WHEN 2 THEN 'Low' WHEN 1 THEN 'Informational'
        ELSE 'Unknown'
    END AS severity,
    1 AS status_id,
    'New' AS status,
    coalesce(description, rule_name) AS message,
    CAST(ROW(
        '1.1.0',
        CAST(ROW(
            CASE alert_format WHEN 'falco' THEN 'Falco' ELSE 'Panoptica' END,
            CASE alert_format WHEN 'falco' THEN 'The Falco Project' ELSE 'Cisco' END)
            AS ROW(name varchar, vendor_name varchar)),
        event_id,
        tags)
        AS ROW(version varchar, product ROW(name varchar, vendor_name varchar), uid varchar, labels array(varchar)))
        AS metadata,
    CAST(ROW(
        event_id,
        rule_name,
        description,
        ARRAY['Kubernetes Runtime Alert'],
        epoch_ms,
        coalesce(attacks, CAST(ARRAY[] AS array(ROW(tactic ROW(name varchar, uid varchar),
            technique ROW(name varchar, uid varchar), version varchar)))))
        AS ROW(uid varchar, title varchar, "desc" varchar, types array(varchar), created_time bigint,
            attacks array(ROW(tactic ROW(name varchar, uid varchar), technique ROW(name varchar, uid varchar),
                version varchar))))
        AS finding_info,
    filter(
        ARRAY[
            CAST(ROW('kubernetes_cluster', cluster_id, cluster_id, CAST(NULL AS varchar))
                AS ROW(type varchar, uid varchar, name varchar, namespace varchar)),
            CASE WHEN namespace IS NOT NULL THEN CAST(ROW('kubernetes_namespace', namespace, namespace, namespace)
                AS ROW(type varchar, uid varchar, name varchar, namespace varchar)) END,
            CASE WHEN pod_name IS NOT NULL THEN CAST(ROW('kubernetes_pod', coalesce(namespace, '') || '/' || pod_name,
                pod_name, namespace) AS ROW(type varchar, uid varchar, name varchar, namespace varchar)) END,
            CASE WHEN container_id IS NOT NULL THEN CAST(ROW('container', container_id, CAST(NULL AS varchar), namespace)
                AS ROW(type varchar, uid varchar, name varchar, namespace varchar)) END
        ],
        r -> r IS NOT NULL) AS resources,
    CASE WHEN pid IS NOT NULL THEN ARRAY[CAST(ROW(ROW(pid, cmdline))
        AS ROW(process ROW(pid integer, cmd_line varchar)))] END AS evidences,
    map_filter(
        MAP(
            ARRAY['cluster_id', 'hostname', 'related_cves', 'source_file', 'alert_format'],
            ARRAY[cluster_id, hostname, nullif(array_join(related_cves, ','), ''), source_file, alert_format]),
        (k, v) -> v IS NOT NULL) AS unmapped,
    dt
FROM findings
