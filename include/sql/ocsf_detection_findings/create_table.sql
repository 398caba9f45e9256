-- The curated alerts as OCSF 1.1.0 Detection Findings (class 2004), one row per alert, the shape
-- AWS Security Lake takes from a custom source; export_to_security_lake copies each published day
-- into the Security Lake layout. Column names and nesting are OCSF's (README, "OCSF export").
{% from "_macros.sql" import parquet_table with context -%}
{% call parquet_table() -%}
    `activity_id` int,
    `activity_name` string,
    `category_uid` int,
    `category_name` string,
    `class_uid` int,
    `class_name` string,
    `type_uid` bigint,
    `type_name` string,
    `time` bigint,
    `severity_id` int,
    `severity` string,
    `status_id` int,
    `status` string,
    `message` string,
    `metadata` struct<version:string,product:struct<name:string,vendor_name:string>,uid:string,labels:array<string>>,
    `finding_info` struct<uid:string,title:string,`desc`:string,types:array<string>,created_time:bigint,attacks:array<struct<tactic:struct<name:string,uid:string>,technique:struct<name:string,uid:string>,version:string>>>,
    `resources` array<struct<type:string,uid:string,name:string,namespace:string>>,
    `evidences` array<struct<process:struct<pid:int,cmd_line:string>>>,
    `unmapped` map<string,string>
{%- endcall %}
