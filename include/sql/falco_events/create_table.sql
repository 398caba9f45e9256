-- Falco's own alerts as Falcosidekick writes them to S3 (one JSON object a file), for ad-hoc
-- queries: output_fields['k8s.pod.name'], tags, hostname. Created only when the setting
-- raw_format reads Falco's shape (falco or auto); the pipeline itself parses the lines.
{%- if params.raw_format == 'panoptica' %}
-- raw_format is panoptica: nothing to create (a statement that changes nothing and costs nothing).
CREATE DATABASE IF NOT EXISTS {{ params.database }}
{%- else %}
CREATE EXTERNAL TABLE IF NOT EXISTS {{ params.database }}.falco_events (
    `uuid` string,
    `output` string,
    `priority` string,
    `rule` string,
    `time` string,
    `output_fields` map<string, string>,
    `source` string,
    `tags` array<string>,
    `hostname` string
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES ('ignore.malformed.json' = 'true')
LOCATION '{{ params.raw_location }}'
{%- endif %}
