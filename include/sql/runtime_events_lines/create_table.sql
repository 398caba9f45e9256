-- The same alert files read as plain lines of text. The load parses each line itself, so that a
-- value of the wrong JSON type (a non-numeric proc.pid, say) is rejected and counted for that
-- line alone instead of failing the whole query with HIVE_BAD_DATA, as a typed column would.
-- With a dated raw layout the table is partitioned by the files' arrival day through partition
-- projection, so a run reads only the folders of its window, not the whole history.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ params.database }}.runtime_events_lines (
    `line` string
)
{%- if params.raw_layout != 'flat' %}
PARTITIONED BY (`arrival_date` string)
{%- endif %}
STORED AS TEXTFILE
LOCATION '{{ params.raw_location }}'
{%- if params.raw_layout != 'flat' %}
TBLPROPERTIES (
    'projection.enabled' = 'true',
    'projection.arrival_date.type' = 'date',
    'projection.arrival_date.format' = '{{ params.arrival_format | replace("'", "\\'") }}',
    'projection.arrival_date.range' = '{{ params.arrival_range_start }},NOW',
    'projection.arrival_date.interval' = '1',
    'projection.arrival_date.interval.unit' = 'DAYS',
    'storage.location.template' = '{{ params.raw_location }}${arrival_date}/'
)
{%- endif %}
