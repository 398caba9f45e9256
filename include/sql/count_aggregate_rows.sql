-- Rows per partition of each aggregate's new version, recorded with the version when it is
-- published (runtime-events versions shows them). A partition's values are given as a JSON array
-- in the order of the table's keys. Counting Parquet rows reads only the files' footers.
{%- for name in params.tables %}
{%- set version = params.versions[name] %}
{% if not loop.first %}
UNION ALL
{% endif %}
SELECT
    '{{ name }}' AS table_name,
    json_format(CAST(ARRAY[{{ version.partition_keys | join(", ") }}] AS JSON)) AS partition_values,
    count(*) AS row_count
FROM {{ version.table }}
GROUP BY {{ version.partition_keys | join(", ") }}
{%- endfor %}
