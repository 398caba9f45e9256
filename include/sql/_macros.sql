{#- The statements every table shares, so that a table's own files hold only what is its own.
    Names, folders and partition keys come from the table catalogue (tables.py) and the run plan
    (planning.py) through params; a file imports them with context. -#}

{#- A Parquet table of the curated location, the table whose folder the file is in: the caller
    gives its columns; its folder is <curated_location>/<table>/ and its partition keys (all
    strings) are the catalogue's. -#}
{% macro parquet_table() -%}
{%- set name = params.table -%}
CREATE EXTERNAL TABLE IF NOT EXISTS {{ params.database }}.{{ name }} (
{{ caller() }}
)
{%- if params.partition_keys[name] %}
PARTITIONED BY ({% for key in params.partition_keys[name] %}`{{ key }}` string{{ ", " if not loop.last }}{% endfor %})
{%- endif %}
STORED AS PARQUET
LOCATION '{{ params.curated_location }}{{ name }}/'
TBLPROPERTIES ('parquet.compression' = 'ZSTD')
{%- endmacro %}

{#- The write-audit-publish statement, shared by every table a run writes: a new table of the
    run (its stage, or its version of a published table) over a folder of its own, in Parquet,
    partitioned by the table's declared keys. The caller's SELECT ends with the partition keys,
    in order. -#}
{% macro create_work_table(work, no_data=false) -%}
CREATE TABLE {{ work.table }}
WITH (
    format = 'PARQUET',
    write_compression = 'ZSTD',
    external_location = '{{ work.location }}',
    partitioned_by = ARRAY[{% for key in work.partition_keys %}'{{ key }}'{{ ", " if not loop.last }}{% endfor %}]
) AS
{{ caller() }}
{%- if no_data %}
WITH NO DATA
{%- endif %}
{%- endmacro %}

{#- The window's distinct (rule_name, tags) pairs of the curated copy, numbered, as the CTE
    `alerts` that alert_techniques reads: an alert's techniques depend on nothing else, so the
    tables find them once per pair and join them back. Read from those two columns alone. -#}
{% macro rule_tag_pairs() -%}
alerts AS (
    SELECT rule_name, tags, row_number() OVER (ORDER BY rule_name, tags) AS event_id
    FROM (
        SELECT DISTINCT rule_name, coalesce(tags, CAST(ARRAY[] AS array(varchar))) AS tags
        FROM {{ params.database }}.runtime_events_parquet
        WHERE dt BETWEEN '{{ params.dt_from }}' AND '{{ params.dt_to }}'
    )
)
{%- endmacro %}

{#- The MITRE ATT&CK techniques of each row of the CTE `alerts` (event_id, rule_name, tags), as
    the CTE `techniques` (event_id, tactic, technique_id, technique_name); event_id is whatever
    tells the rows apart (the tables call the macro with the window's distinct (rule_name, tags)
    pairs, numbered, since nothing else of an alert decides its techniques): those its own tags name
    (Falco's alerts carry their rule's tags), paired with tactics as rule_attack_techniques pairs
    them (the alert's mitre_<tactic> tags that ATT&CK lists for the technique; if none is, the
    alert's tactic tags, Falco's claim; if it has none, the technique's ATT&CK tactics); an alert
    whose tags name no technique takes its rule's rows in rule_attack_techniques. The caller's
    WITH defines `alerts` and a comma; these CTEs follow it. -#}
{% macro alert_techniques() -%}
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
{%- endmacro %}
