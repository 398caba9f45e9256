-- Which MITRE ATT&CK techniques each Falco rule detects: one row per rule, tactic and technique,
-- from the reference file shipped with the package (plugins/runtime_events/reference), whose
-- source column names where each mapping comes from. A rule it does not list maps to nothing.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ params.database }}.rule_attack_techniques (
    `rule_name` string,
    `tactic` string,
    `technique_id` string,
    `technique_name` string,
    `source` string
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
LOCATION '{{ params.curated_location }}rule_attack_techniques/'
