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
