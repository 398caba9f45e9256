-- Rows per day of each aggregate's new version, recorded with the version when it is published
-- (runtime-events versions shows them). Counting Parquet rows reads only the files' footers.
{%- for table in params.tables %}
{% if not loop.first %}
UNION ALL
{% endif %}
SELECT '{{ table }}' AS table_name, dt, count(*) AS row_count
FROM {{ params.database }}.{{ table }}_{{ params.run_token }}
GROUP BY dt
{%- endfor %}
