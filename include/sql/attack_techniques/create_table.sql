-- Every MITRE ATT&CK (Enterprise) technique with each of its tactics, and the tag Falco's rules
-- give the tactic (mitre_<tactic>): the names of the techniques an alert's own tags name. From the
-- reference file shipped with the package (plugins/runtime_events/reference).
CREATE EXTERNAL TABLE IF NOT EXISTS {{ params.database }}.attack_techniques (
    `technique_id` string,
    `technique_name` string,
    `tactic` string,
    `tactic_tag` string,
    `source` string
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
LOCATION '{{ params.curated_location }}attack_techniques/'
