-- Stage the run's window: every non-blank line of the raw files, parsed and classified once.
-- A valid alert carries its curated columns; a rejected line its reason and, when its time
-- parses, its day. Lines of days outside the window are left to their own runs. The stage is
-- read by the audit, by every publish batch and by the load audit, never the raw files again.
{% from "_macros.sql" import create_work_table -%}
{#- redact_cmdline: secret shapes (passwords, tokens, bearer credentials, AWS keys) masked -#}
{% macro redacted(column) -%}
regexp_replace(regexp_replace(regexp_replace(regexp_replace({{ column }},
            '(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)[=:])\S+', '$1****'),
            '(?i)(--(?:password|passwd|token|secret|api-key|access-key)(?:=|\s+))\S+', '$1****'),
            '(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+', '$1****'),
            '\b(AKIA|ASIA)[A-Z0-9]{16}\b', '$1****************')
{%- endmacro %}
{#- A value without the whitespace at its ends; the replace runs only for values that have some
    (the common value has none, and a global replace costs as much as the rest of its row) -#}
{% macro trimmed(column) -%}
CASE WHEN regexp_like({{ column }}, '^\s|\s$') THEN regexp_replace({{ column }}, '^\s+|\s+$', '') ELSE {{ column }} END
{%- endmacro %}
{% call create_work_table(params.stage) -%}
WITH lines AS (
    SELECT
        "$path" AS source_file,
        line,
        try(json_parse(line)) AS doc,
{%- if params.raw_layout != 'flat' and params.arrival_days %}
        CASE arrival_date
{%- for arrival in params.arrival_days %}
            WHEN '{{ arrival.folder }}' THEN DATE '{{ arrival.day }}'
{%- endfor %}
        END AS arrival_day
{%- else %}
        CAST(NULL AS date) AS arrival_day
{%- endif %}
    FROM {{ params.database }}.runtime_events_lines
    WHERE NOT regexp_like(line, '^\s*$')
{%- if params.raw_layout != 'flat' %}
        -- only the folders whose files can hold the window's alerts (see scoped below)
{%- if params.arrival_days %}
        AND arrival_date IN ('{{ params.arrival_days | map(attribute="folder") | join("', '") }}')
{%- else %}
        AND false
{%- endif %}
{%- endif %}
),

-- Which shape each line has: Panoptica's flat alert, or Falco's JSON (as Falcosidekick writes it:
-- rule, priority, time, output, tags, hostname, uuid, and the event's fields under output_fields).
docs AS (
    SELECT
        source_file,
        line,
        doc,
        arrival_day,
        substr(json_format(doc), 1, 1) = '{' AS is_object,
{%- if params.raw_format == 'falco' %}
        true AS is_falco
{%- elif params.raw_format == 'auto' %}
        -- a line whose output_fields is a JSON object is Falco's
        coalesce(substr(json_format(json_extract(doc, '$.output_fields')), 1, 1) = '{', false) AS is_falco
{%- else %}
        false AS is_falco
{%- endif %}
    FROM lines
),

{#- A field's JSON value: at its Panoptica path, or at its Falco path; only what raw_format reads. -#}
{%- macro field(panoptica, falco) -%}
{%- if params.raw_format == 'panoptica' or not falco -%}
{%- if panoptica %}json_extract(doc, '{{ panoptica }}'){% else %}CAST(NULL AS json){% endif -%}
{%- elif params.raw_format == 'falco' or not panoptica -%}
{%- if params.raw_format == 'auto' %}CASE WHEN is_falco THEN {% endif %}{{ falco }}{% if params.raw_format == 'auto' %} END{% endif -%}
{%- else -%}
CASE WHEN is_falco THEN {{ falco }} ELSE json_extract(doc, '{{ panoptica }}') END
{%- endif -%}
{%- endmacro %}
{%- set falco_time -%}
coalesce(
            CASE WHEN regexp_like(json_format(json_extract(doc, '$.output_fields["evt.time"]')), '^"?-?[0-9]+"?$')
                THEN json_extract(doc, '$.output_fields["evt.time"]') END,
            CASE WHEN regexp_like(json_format(json_extract(doc, '$.output_fields["evt.time.iso8601"]')), '^"[0-9]{4}-')
                THEN json_extract(doc, '$.output_fields["evt.time.iso8601"]') END,
            json_extract(doc, '$.time'))
{%- endset %}

-- Each field's JSON value, taken out of the line once.
raw_values AS (
    SELECT
        source_file,
        line,
        doc,
        arrival_day,
        is_object,
        is_falco,
        {{ field('$["container.id"]', "json_extract(doc, '$.output_fields[\"container.id\"]')") }} AS container_id_json,
        {{ field('$["evt.time"]', falco_time) }} AS evt_time_json,
        {{ field('$["k8s.ns.name"]', "json_extract(doc, '$.output_fields[\"k8s.ns.name\"]')") }} AS namespace_json,
        {{ field('$["k8s.pod.name"]', "json_extract(doc, '$.output_fields[\"k8s.pod.name\"]')") }} AS pod_name_json,
        {{ field('$["proc.cmdline"]', "json_extract(doc, '$.output_fields[\"proc.cmdline\"]')") }} AS cmdline_json,
        {{ field('$["proc.pid"]', "json_extract(doc, '$.output_fields[\"proc.pid\"]')") }} AS pid_json,
        {{ field('$["cluster_id"]', "json_extract(doc, '$.output_fields[\"" ~ params.falco_cluster_field ~ "\"]')") }} AS cluster_id_json,
        {{ field('$["rule_name"]', "json_extract(doc, '$.rule')") }} AS rule_name_json,
        {{ field('$["description"]', "json_extract(doc, '$.output')") }} AS description_json,
        {{ field('$["severity"]', "json_extract(doc, '$.priority')") }} AS severity_json,
        {{ field('$["related_cves"]', none) }} AS related_cves_json,
        {{ field(none, "json_extract(doc, '$.tags')") }} AS tags_json,
        {{ field(none, "json_extract(doc, '$.hostname')") }} AS hostname_json,
        {{ field(none, "json_extract(doc, '$.uuid')") }} AS uuid_json
    FROM docs
),

-- A string value as it is; any other JSON value as its compact JSON text; null when missing.
fields AS (
    SELECT
        source_file,
        line,
        doc,
        arrival_day,
        is_object,
        is_falco,
        coalesce(json_extract_scalar(container_id_json, '$'), nullif(json_format(container_id_json), 'null')) AS container_id,
        coalesce(json_extract_scalar(evt_time_json, '$'), nullif(json_format(evt_time_json), 'null')) AS evt_time,
        coalesce(json_extract_scalar(namespace_json, '$'), nullif(json_format(namespace_json), 'null')) AS namespace,
        coalesce(json_extract_scalar(pod_name_json, '$'), nullif(json_format(pod_name_json), 'null')) AS pod_name,
        coalesce(json_extract_scalar(cmdline_json, '$'), nullif(json_format(cmdline_json), 'null')) AS cmdline,
        coalesce(json_extract_scalar(pid_json, '$'), nullif(json_format(pid_json), 'null')) AS pid,
        coalesce(json_extract_scalar(cluster_id_json, '$'), nullif(json_format(cluster_id_json), 'null')) AS cluster_id,
        coalesce(json_extract_scalar(rule_name_json, '$'), nullif(json_format(rule_name_json), 'null')) AS rule_name,
        coalesce(json_extract_scalar(description_json, '$'), nullif(json_format(description_json), 'null')) AS description,
        coalesce(json_extract_scalar(severity_json, '$'), nullif(json_format(severity_json), 'null')) AS severity,
        coalesce(json_extract_scalar(related_cves_json, '$'), nullif(json_format(related_cves_json), 'null')) AS related_cves,
        -- Falco's rule tags: the strings of its tags array (anything else in it is left out)
        coalesce(transform(filter(try(CAST(tags_json AS array(json))), t -> json_format(t) LIKE '"%'),
            t -> json_extract_scalar(t, '$')), CAST(ARRAY[] AS array(varchar))) AS tags,
        coalesce(json_extract_scalar(hostname_json, '$'), nullif(json_format(hostname_json), 'null')) AS hostname,
        json_extract_scalar(uuid_json, '$') AS uuid,
        json_format(evt_time_json) LIKE '"%' AS evt_time_is_string,
        json_format(cluster_id_json) LIKE '"%' AS cluster_id_is_string,
        json_format(rule_name_json) LIKE '"%' AS rule_name_is_string
    FROM raw_values
),

-- evt.time, trimmed: ISO-8601 with an optional fraction and offset, or epoch digits.
time_parts AS (
    SELECT
        f.*,
        {{ trimmed('evt_time') }} AS time_text
    FROM fields AS f
),

time_forms AS (
    SELECT
        t.*,
        evt_time_is_string
            AND regexp_like(time_text, '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})?$')
            AS is_iso,
        CASE
            WHEN regexp_like(time_text, '^[0-9]+$') THEN coalesce(nullif(regexp_replace(time_text, '^0+', ''), ''), '0')
        END AS epoch_digits,
        CASE
            WHEN NOT evt_time_is_string AND regexp_like(time_text, '^-[0-9]+$') THEN try_cast(time_text AS bigint)
        END AS negative_epoch_seconds,
        regexp_extract(time_text, '([+-])([0-9]{2}):?([0-9]{2})$', 1) AS offset_sign,
        try_cast(regexp_extract(time_text, '([+-])([0-9]{2}):?([0-9]{2})$', 2) AS bigint) AS offset_hours,
        try_cast(regexp_extract(time_text, '([+-])([0-9]{2}):?([0-9]{2})$', 3) AS bigint) AS offset_minutes
    FROM time_parts AS t
),

-- Milliseconds since the epoch, truncated; epoch units are told apart by size.
epoch AS (
    SELECT
        f.*,
        CASE
            WHEN is_iso
                AND substr(time_text, 1, 4) <> '0000'
                AND try_cast(substr(time_text, 12, 2) AS bigint) <= 23
                AND try_cast(substr(time_text, 15, 2) AS bigint) <= 59
                AND try_cast(substr(time_text, 18, 2) AS bigint) <= 59
                AND coalesce(offset_hours, 0) <= 23
                AND coalesce(offset_minutes, 0) <= 59
            THEN date_diff('day', DATE '1970-01-01', try(CAST(substr(time_text, 1, 10) AS date))) * 86400000
                + try_cast(substr(time_text, 12, 2) AS bigint) * 3600000
                + try_cast(substr(time_text, 15, 2) AS bigint) * 60000
                + try_cast(substr(time_text, 18, 2) AS bigint) * 1000
                + coalesce(try_cast(substr(regexp_extract(time_text, '\.([0-9]+)', 1) || '00', 1, 3) AS bigint), 0)
                - CASE WHEN offset_sign = '-' THEN -1 ELSE 1 END
                    * (coalesce(offset_hours, 0) * 3600000 + coalesce(offset_minutes, 0) * 60000)
            WHEN length(epoch_digits) >= 18 THEN try_cast(substr(epoch_digits, 1, length(epoch_digits) - 6) AS bigint)
            WHEN length(epoch_digits) >= 15 THEN try_cast(substr(epoch_digits, 1, length(epoch_digits) - 3) AS bigint)
            WHEN length(epoch_digits) >= 12 THEN try_cast(epoch_digits AS bigint)
            WHEN epoch_digits IS NOT NULL THEN try_cast(epoch_digits AS bigint) * 1000
            ELSE negative_epoch_seconds * 1000
        END AS event_ms
    FROM time_forms AS f
),

classified AS (
    SELECT
        e.*,
        CASE
            -- years 0001 .. 9999, in UTC
            WHEN event_ms BETWEEN -62135596800000 AND 253402300799999
            THEN date_add('millisecond', event_ms, TIMESTAMP '1970-01-01 00:00:00.000')
        END AS event_time,
        CASE
            WHEN starts_with(line, chr(65533)) AND doc IS NULL THEN 'invalid_utf8'
            WHEN doc IS NULL THEN 'malformed_json'
            WHEN NOT is_object THEN 'not_object'
            WHEN NOT coalesce(event_ms BETWEEN -62135596800000 AND 253402300799999, false) THEN 'bad_event_time'
            WHEN NOT coalesce(cluster_id_is_string, false) OR cluster_id = '' THEN 'missing_cluster_id'
            -- a partition value must make a folder name: no control characters, and percent-encoded
            -- (every byte outside A-Z a-z 0-9 . _ - as %XX) at most 240 bytes
            -- (at most 3 bytes per byte: an id of up to 80 bytes always fits, and is not measured)
            WHEN regexp_like(cluster_id, '[\x00-\x1f\x7f]')
                OR CASE WHEN length(to_utf8(cluster_id)) > 80
                    THEN length(to_utf8(cluster_id)) + 2 * length(to_utf8(regexp_replace(cluster_id, '[A-Za-z0-9._-]', ''))) > 240
                    ELSE false END
            THEN 'bad_cluster_id'
            WHEN NOT coalesce(rule_name_is_string, false) OR rule_name = '' THEN 'missing_rule_name'
        END AS reject_reason
    FROM epoch AS e
),

curated AS (
    SELECT
        -- the eleven raw fields; a Falco alert's also Falcosidekick's uuid, so that a redelivered
        -- copy stays one row and two alerts that happen to share a uuid stay two
        CASE WHEN reject_reason IS NULL THEN lower(to_hex(sha256(to_utf8(array_join(
            transform(
                ARRAY[container_id, evt_time, namespace, pod_name, cmdline, pid, cluster_id,
                      rule_name, description, severity, related_cves],
                v -> coalesce(CAST(length(v) AS varchar) || ':' || v, '-')
            ),
            ','
        ) || CASE WHEN is_falco AND uuid <> '' THEN ',uuid:' || CAST(length(uuid) AS varchar) || ':' || uuid ELSE '' END
        )))) END AS event_id,
        event_time,
        container_id,
        namespace,
        pod_name,
{%- if params.redact_cmdline %}
        {{ redacted("cmdline") }} AS cmdline,
{%- else %}
        cmdline,
{%- endif %}
        CASE WHEN regexp_like(pid, '^[+-]?[0-9]+$') THEN try_cast(pid AS integer) END AS pid,
        rule_name,
{%- if params.redact_cmdline %}
        -- Falco's output (the description) quotes the command line: masked the same way
        {{ redacted("description") }} AS description,
{%- else %}
        description,
{%- endif %}
        CASE lower({{ trimmed('severity') }})
            WHEN 'critical' THEN 'Critical'
            WHEN 'emergency' THEN 'Critical'
            WHEN 'alert' THEN 'Critical'
            WHEN 'high' THEN 'High'
            WHEN 'error' THEN 'High'
            WHEN 'medium' THEN 'Medium'
            WHEN 'warning' THEN 'Medium'
            WHEN 'low' THEN 'Low'
            WHEN 'notice' THEN 'Low'
            WHEN 'info' THEN 'Info'
            WHEN 'informational' THEN 'Info'
            WHEN 'debug' THEN 'Info'
            ELSE 'Unknown'
        END AS severity,
        -- (only values that name one are searched: most alerts name none)
        CASE WHEN strpos(upper(related_cves), 'CVE-') > 0
            THEN array_sort(array_distinct(transform(
                regexp_extract_all(related_cves, '(?i)CVE-[0-9]{4}-[0-9]{4,}'),
                cve -> upper(cve)
            )))
            ELSE CAST(ARRAY[] AS array(varchar))
        END AS related_cves,
        source_file,
        tags,
        hostname,
        CASE WHEN is_falco THEN 'falco' ELSE 'panoptica' END AS alert_format,
        arrival_day,
        reject_reason,
        CASE WHEN reject_reason IS NOT NULL THEN line END AS rejected_line,
        cluster_id,
        CAST(CAST(event_time AS date) AS varchar) AS dt
    FROM classified
),

-- Lines of days outside the window belong to other runs: they are kept only as a line to count
-- (no day, no columns), so that the reject share is taken over every line this run scanned. With
-- a dated raw layout, an alert of day X counts only from files that arrived on X-1 .. X+lookback:
-- the same lines whichever run builds the day (later ones are too late for every run).
scoped AS (
    SELECT
        c.*,
        CASE
            WHEN dt BETWEEN '{{ params.dt_from }}' AND '{{ params.dt_to }}'
{%- if params.raw_layout != 'flat' %}
                AND arrival_day BETWEEN date_add('day', -1, CAST(dt AS date))
                    AND date_add('day', {{ params.lookback_days }}, CAST(dt AS date))
{%- endif %}
                THEN 'window'
            WHEN dt IS NULL THEN 'unknown_day'
            ELSE 'other_days'
        END AS scope
    FROM curated AS c
),

kept AS (
    SELECT
        s.*,
        scope = 'window' AND reject_reason IS NULL AS publishable
    FROM scoped AS s
)

SELECT
    CASE WHEN scope <> 'other_days' THEN event_id END AS event_id,
    CASE WHEN scope <> 'other_days' THEN event_time END AS event_time,
    CASE WHEN scope <> 'other_days' THEN container_id END AS container_id,
    CASE WHEN scope <> 'other_days' THEN namespace END AS namespace,
    CASE WHEN scope <> 'other_days' THEN pod_name END AS pod_name,
    CASE WHEN scope <> 'other_days' THEN cmdline END AS cmdline,
    CASE WHEN scope <> 'other_days' THEN pid END AS pid,
    CASE WHEN scope <> 'other_days' THEN rule_name END AS rule_name,
    CASE WHEN scope <> 'other_days' THEN description END AS description,
    CASE WHEN scope <> 'other_days' THEN severity END AS severity,
    CASE WHEN scope <> 'other_days' THEN related_cves END AS related_cves,
    source_file,
    CASE WHEN scope <> 'other_days' THEN tags END AS tags,
    CASE WHEN scope <> 'other_days' THEN hostname END AS hostname,
    CASE WHEN scope <> 'other_days' THEN alert_format END AS alert_format,
    reject_reason,
    CASE WHEN scope <> 'other_days' THEN rejected_line END AS rejected_line,
    scope,
    CAST(1 AS bigint) AS line_count,
    CASE WHEN scope <> 'other_days' THEN cluster_id END AS cluster_id,
    -- one copy of each alert is published; the others are counted as duplicates
    CASE WHEN publishable
        THEN row_number() OVER (PARTITION BY publishable, event_id ORDER BY source_file)
    END AS copy_number,
    CASE WHEN scope <> 'other_days' THEN dt END AS dt
FROM kept
{%- endcall %}
