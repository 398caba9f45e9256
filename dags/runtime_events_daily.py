"""
### Runtime events: daily lakehouse build

Turns the Panoptica (Falco) runtime alerts that land as JSON lines under `raw_location` into
Athena tables, for the UTC day of the run and the `lookback_days` before it:

1. **setup**: check the settings and the raw location, plan the run's window, place the
   reference files (ATT&CK techniques per rule) and record the folders the run will write
   (`plan_run`), create the database and every table that is missing;
2. **stage**: parse and classify every raw line of the window once (`stage_alerts`);
3. **audit**: account for every line, fail above `reject_threshold` (`audit_stage`);
4. **write**: the new curated partitions into a folder of this run, in batches of at most 100
   partitions (`write_parquet_batches`), then audit them (`audit_parquet_version`);
5. **publish**: point `runtime_events_parquet`'s partitions of the days the run has lines for at
   them in one catalogue change, recorded in the ledger (a day without lines keeps what was
   published; a day that would shrink fails the audit unless the run has `allow_shrink=true`);
6. **aggregate**: rebuild each daily aggregate (its `select.sql`, in the shared write-audit-publish
   statement `build_version.sql`) and publish them the same way, which updates
   one Airflow Asset per table and refreshes the SPICE datasets of `quicksight_dataset_ids`;
   the published OCSF findings of the rebuilt days are copied into AWS Security Lake's
   custom-source layout under `security_lake_location` (`export_to_security_lake`);
7. **record** the run's line accounting in `runtime_events_load_audit` and what each statement
   scanned and cost in `runtime_events_query_costs`;
8. **teardown**: drop the run's work tables, delete its stage, and delete versions replaced more
   than `retention_days` ago; only what the ledger names, inside each table's own folder.

Every statement is an `include/sql` file run by the Amazon provider's `AthenaOperator`, on Athena
or on the embedded DuckDB engine (setting `runtime_events_engine`). Reruns of any day, in any
order, leave the same tables.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.quicksight import QuickSightCreateIngestionOperator
from airflow.sdk import Param, dag, task

from runtime_events import checks, costs, tasks
from runtime_events.compat import CronDataIntervalTimetable
from runtime_events.engines import AWS_CLIENT_CONFIG
from runtime_events.operators import (
    RuntimeEventsCheckOperator,
    RuntimeEventsQueryOperator,
    RuntimeEventsStatementsOperator,
)
from runtime_events.paths import SQL_DIR
from runtime_events.tables import AGGREGATES, TABLES


@dag(
    dag_id="runtime_events_daily",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=tasks.START_DATE,
    catchup=False,
    max_active_runs=4,
    default_args=tasks.DEFAULT_ARGS,
    template_searchpath=[str(SQL_DIR)],
    params={"allow_shrink": Param(False, type="boolean", description=(
        "Publish a rebuilt day even when it holds fewer alerts than the published one (a deliberate "
        "purge). Off: such a run fails its audit and publishes nothing."))},
    tags=["runtime-security", "athena", "lakehouse"],
    doc_md=__doc__,
)
def runtime_events_daily():
    # -- setup ---------------------------------------------------------------------------------
    @task
    def plan_run(**context) -> dict:
        return tasks.plan_run(context)

    run = plan_run()

    # One task instance for the database and every table (each CREATE ... IF NOT EXISTS, a second
    # or less): one statement after the other, each shown whole in the Rendered Template.
    create_tables = RuntimeEventsStatementsOperator(
        task_id="create_tables", query=["create_database.sql", *(table.create_sql for table in TABLES)], run=run
    )

    # -- stage and audit -----------------------------------------------------------------------
    stage_alerts = RuntimeEventsQueryOperator(
        task_id="stage_alerts", query="runtime_events_parquet/stage_alerts.sql", run=run
    )
    audit_stage = RuntimeEventsCheckOperator(
        task_id="audit_stage", query="runtime_events_parquet/audit_stage.sql", run=run,
        check=tasks.audit_stage,
    )

    # -- write, audit and publish the curated copy ---------------------------------------------
    create_parquet_version = RuntimeEventsQueryOperator(
        task_id="create_parquet_version", query="runtime_events_parquet/create_version.sql", run=run
    )
    write_parquet_batches = RuntimeEventsQueryOperator.partial(
        task_id="write_parquet_batches", query="runtime_events_parquet/write_batch.sql", run=run,
        map_index_template="batch {{ task.sql_params.batch }}",
    ).expand(sql_params=audit_stage.output)
    audit_parquet_version = RuntimeEventsCheckOperator(
        task_id="audit_parquet_version", query="runtime_events_parquet/audit_version.sql", run=run,
        check=checks.audit_version,
    )

    @task
    def publish_parquet_partitions(run: dict, audit: dict) -> dict:
        return tasks.publish_events(run, audit)

    events_published = publish_parquet_partitions(run, audit_parquet_version.output)

    # -- aggregates ----------------------------------------------------------------------------
    build_aggregates = RuntimeEventsQueryOperator.partial(
        task_id="build_aggregates", query="build_version.sql", run=run,
        map_index_template="{{ task.sql_params.table }}",
    ).expand(sql_params=[{"table": table.name} for table in AGGREGATES])

    count_aggregate_rows = RuntimeEventsCheckOperator(
        task_id="count_aggregate_rows", query="count_aggregate_rows.sql", run=run,
        sql_params={"tables": [table.name for table in AGGREGATES]}, check=checks.count_aggregate_rows,
    )

    @task(outlets=list(tasks.AGGREGATE_ASSETS))
    def publish_aggregates(run: dict, events: dict, counts: dict, **context) -> list[dict]:
        return tasks.publish_aggregates(run, events, counts, context["outlet_events"])

    aggregates_published = publish_aggregates(run, events_published, count_aggregate_rows.output)

    @task
    def export_to_security_lake(run: dict, published: list[dict]) -> dict:
        return tasks.export_to_security_lake(run, published)

    security_lake_export = export_to_security_lake(run, aggregates_published)

    @task
    def deploy_quicksight(run: dict) -> list[dict]:
        """Bring QuickSight up to this release when quicksight_deploy is on (the log lists each
        change), then name the SPICE refreshes to start. One task, not two: with QuickSight off
        (the default) both do nothing, and a task instance would cost more than they do."""
        tasks.deploy_quicksight()
        return tasks.quicksight_refreshes(run)

    refresh_quicksight_datasets = QuickSightCreateIngestionOperator.partial(
        task_id="refresh_quicksight_datasets", wait_for_completion=False, botocore_config=AWS_CLIENT_CONFIG,
        map_index_template="{{ task.data_set_id }}",
    ).expand_kwargs(quicksight_refreshes := deploy_quicksight(run))

    # -- record --------------------------------------------------------------------------------
    record_load_audit = RuntimeEventsQueryOperator(
        task_id="record_load_audit", query="runtime_events_load_audit/record_run.sql", run=run
    )

    @task
    def collect_query_costs(**context) -> dict:
        return costs.collect_query_costs(context)

    query_costs = collect_query_costs()
    record_query_costs = RuntimeEventsQueryOperator(
        task_id="record_query_costs", query="runtime_events_query_costs/record_run.sql", run=run,
        sql_params=query_costs,
    )

    # -- teardown ------------------------------------------------------------------------------
    @task
    def clean_up(run: dict) -> dict:
        return tasks.clean_up(run)

    (
        run
        >> create_tables
        >> stage_alerts
        >> audit_stage
        >> create_parquet_version
        >> write_parquet_batches
        >> audit_parquet_version
        >> events_published
        >> build_aggregates
        >> count_aggregate_rows
        >> aggregates_published
        >> record_load_audit
        >> query_costs
        >> record_query_costs
        >> (cleaned_up := clean_up(run).as_teardown(setups=run))
    )
    aggregates_published >> quicksight_refreshes
    security_lake_export >> cleaned_up  # the export reads the run's published version


runtime_events_daily()
