-- Record what each statement of the run scanned and cost, from the statistics its task pushed to
-- XCom (collect_query_costs). INSERT INTO appends: one file a run.
INSERT INTO {{ params.database }}.runtime_events_query_costs
SELECT
    '{{ params.run_token }}' AS run_token,
    '{{ params.logical_date }}' AS logical_date,
    task_id,
    CAST(map_index AS integer),
    query_execution_id,
    statement_type,
    CAST(data_scanned_bytes AS bigint),
    CAST(billed_bytes AS bigint),
    CAST(estimated_cost_usd AS double),
    CAST(current_timestamp AS timestamp)
FROM (
    VALUES
{%- for s in params.statements | default([]) %}
        ('{{ s.task_id }}', {{ s.map_index }}, '{{ s.query_execution_id }}', '{{ s.statement_type }}', {{ s.data_scanned_bytes }}, {{ s.billed_bytes }}, {{ s.estimated_cost_usd }}){{ "," if not loop.last }}
{%- else %}
        (NULL, NULL, NULL, NULL, NULL, NULL, NULL)
{%- endfor %}
) AS s (task_id, map_index, query_execution_id, statement_type, data_scanned_bytes, billed_bytes, estimated_cost_usd)
WHERE query_execution_id IS NOT NULL
