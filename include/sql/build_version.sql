-- Rebuild the window's days of one aggregate ({{ params.table }}) into this run's version folder:
-- its select.sql, written by the shared write-audit-publish statement. publish_aggregates points
-- the table's partitions at the folder once its rows are counted.
{% from "_macros.sql" import create_work_table -%}
{% call create_work_table(params.version, no_data=params.no_data) -%}
{% include params.table ~ "/select.sql" %}
{%- endcall %}
