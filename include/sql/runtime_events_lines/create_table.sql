-- The same alert files read as plain lines of text. The load parses each line itself, so that a
-- value of the wrong JSON type (a non-numeric proc.pid, say) is rejected and counted for that
-- line alone instead of failing the whole query with HIVE_BAD_DATA, as a typed column would.
CREATE EXTERNAL TABLE IF NOT EXISTS {{ params.database }}.runtime_events_lines (
    `line` string
)
STORED AS TEXTFILE
LOCATION '{{ params.raw_location }}'
