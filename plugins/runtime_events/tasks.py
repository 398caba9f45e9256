"""What the DAG's Python tasks do, and the DAG-level constants read cheaply at parse time.

Kept out of the DAG file so that it stays wiring; everything here reads settings when a task
runs, except ``PARSE_SETTINGS`` (environment only, no metastore or network call). Each task body
turns the run plan it receives from XCom back into a :class:`~runtime_events.planning.RunPlan`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import date, timedelta

import pendulum
from airflow.sdk import Asset

from runtime_events import checks, engines, planning, publish, quicksight, security_lake
from runtime_events.compat import AirflowFailException, add_partitions
from runtime_events.ledger import LedgerError
from runtime_events.planning import RunPlan
from runtime_events.settings import PREFIX, Settings, SettingsError, airflow_lookup, environment_lookup
from runtime_events.tables import AGGREGATES, EVENTS

log = logging.getLogger(__name__)


def _parse_time_settings() -> Settings:
    """What the DAG's shape needs (``database``, for asset names), from the environment only. A
    bad value here does not hide the DAG: it falls back to the default, and ``plan_run`` then
    fails the run naming the setting, before any SQL is sent."""
    env = environment_lookup(os.environ)
    try:
        return Settings.load(lambda key: env(key) if key == f"{PREFIX}database" else None)
    except SettingsError as exc:
        log.warning("%s; the DAG is parsed with the default and its runs will fail", exc)
        return Settings()


PARSE_SETTINGS = _parse_time_settings()
# Runs can be asked for any day: plan_run refuses days before the setting start_date, by name.
# (A DAG start_date after the day would make Airflow skip every task and call the run a success.)
START_DATE = pendulum.datetime(1970, 1, 1, tz="UTC")
DEFAULT_ARGS = {
    "owner": "security-data",
    # A query or call that failed for a passing reason gets two more tries; failures that
    # retrying cannot change (settings, audits, publish refusals) fail at once instead.
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
    # No task may hang a run for ever (a stuck read, a query that never ends); Athena's own
    # query timeout is at most a few hours.
    "execution_timeout": timedelta(hours=3),
}
# One asset per aggregate table, updated when publish_aggregates re-points its partitions; the
# event's extra names the days rebuilt. Downstream DAGs schedule on them.
AGGREGATE_ASSETS = tuple(
    Asset(name=f"{PARSE_SETTINGS.database}.{table.name}", uri=f"athena://{PARSE_SETTINGS.database}/{table.name}",
          group="runtime-events")
    for table in AGGREGATES
)


def run_day(context) -> date:
    """The UTC day a run is for: its logical date (the start of its daily data interval), else
    (for a run triggered by an asset, which has none) the day before it started."""
    for key in ("logical_date", "data_interval_start"):
        value = context.get(key)
        if value is not None:
            return pendulum.instance(value).in_timezone("UTC").date()
    return pendulum.instance(context["dag_run"].run_after).in_timezone("UTC").date() - timedelta(days=1)


def plan_run(context) -> dict:
    """Check every setting, plan the window and prepare the lake (the curated root is this
    database's, the raw location exists, the raw tables follow the settings, the reference
    files are in place, the run's folders are recorded). A bad setting, a missing raw location
    or a day before ``start_date`` fails the run at once (no retries: waiting does not fix them),
    before any SQL is sent. Returns the plan as XCom carries it."""
    try:
        settings = Settings.load(airflow_lookup())
        engines.backend(settings).check()
        plan = planning.plan_window(settings, run_day(context),
                                    allow_shrink=_flag(context.get("params", {}).get("allow_shrink")))
        publish.prepare_run(publish.Lake(settings), plan)
        return plan.as_xcom()
    except (ValueError, publish.PublishError, LedgerError, engines.EngineUnavailable, OSError) as exc:
        raise AirflowFailException(str(exc)) from exc


def _flag(value) -> bool:
    if isinstance(value, bool) or value is None:
        return bool(value)
    if str(value).strip().lower() in ("true", "1", "yes", "on"):
        return True
    if str(value).strip().lower() in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"DAG param allow_shrink={value!r} is invalid: expected true or false")


def audit_stage(rows: list[dict], run: RunPlan, settings: Settings) -> list[dict]:
    """``audit_stage``'s check: account for every line (:func:`checks.audit_stage`), then plan
    the write batches of the new version (:func:`planning.write_batches`)."""
    checks.audit_stage(rows, run, settings)
    return planning.write_batches(rows)


def publish_events(run: dict, audit: dict) -> dict:
    rows = {(dt, cluster): n for dt, cluster, n in audit["rows"]}
    with _refusals_fail_now():
        return publish.publish(_lake(), EVENTS, RunPlan.of(run), audit["days_with_lines"], rows)


def publish_aggregates(run: dict, events: dict, counts: dict, outlet_events) -> list[dict]:
    plan, lake = RunPlan.of(run), _lake()
    with _refusals_fail_now():
        for table in AGGREGATES:  # one bad version stops the others before any of them is published
            version = lake.catalogue.definition(plan.version_table(table.name))
            if version is not None:  # a missing one: publish says why
                publish.check_version_matches(table, lake.catalogue.definition(table.name), version)
        summaries = [publish.publish(lake, table, plan, events["days_rebuilt"], version_rows(counts, table.name))
                     for table in AGGREGATES]
    for asset in AGGREGATE_ASSETS:
        outlet_events[asset].extra = {"dt_from": plan.dt_from, "dt_to": plan.dt_to, "run_token": plan.run_token,
                                      "days_rebuilt": events["days_rebuilt"]}
        add_partitions(outlet_events[asset], events["days_rebuilt"])
    return summaries


def export_to_security_lake(run: dict, published: list[dict], lake: publish.Lake | None = None) -> dict:
    """Copy the OCSF findings of the days the run rebuilt into the Security Lake layout."""
    days = next((s["days_rebuilt"] for s in published if s["table"] == security_lake.TABLE), [])
    try:
        return security_lake.export(lake or _lake(), RunPlan.of(run).run_token, days)
    except security_lake.ExportError as exc:  # retrying cannot change it
        raise AirflowFailException(str(exc)) from exc


def version_rows(counts: dict, table: str) -> dict[tuple, int]:
    """``count_aggregate_rows``' rows of one table: ``{partition values: rows}``."""
    return {tuple(json.loads(values)): n for values, n in counts.get(table, {}).items()}


@contextlib.contextmanager
def _refusals_fail_now():
    """A publish that refuses (it would drop days, its run is over) refuses again on a retry."""
    try:
        yield
    except publish.PublishError as exc:
        raise AirflowFailException(str(exc)) from exc


def _lake() -> publish.Lake:
    return publish.Lake(Settings.load(airflow_lookup()))


def quicksight_refreshes(run: dict) -> list[dict]:
    """One SPICE ingestion per dataset of ``quicksight_dataset_ids`` and, when the deploy is on
    in SPICE mode, per deployed dataset (none: the task is skipped)."""
    settings = Settings.load(airflow_lookup())
    if not engines.backend(settings).on_aws:
        if settings.quicksight_dataset_ids:
            log.info("engine %s: QuickSight datasets are refreshed on Athena only", settings.engine)
        return []
    datasets = list(dict.fromkeys([*settings.quicksight_dataset_ids, *quicksight.spice_dataset_ids(settings)]))
    return [{"data_set_id": dataset, "ingestion_id": RunPlan.of(run).run_token, "aws_conn_id": settings.aws_conn_id}
            for dataset in datasets]


def deploy_quicksight() -> list[str]:
    """Bring the QuickSight data source, datasets and dashboard up to this release (setting
    ``quicksight_deploy``; nothing to do when off or on the embedded engine, and the refreshes
    after it run either way)."""
    settings = Settings.load(airflow_lookup())
    if not settings.quicksight_deploy:
        log.info("QuickSight deploy is off (setting runtime_events_quicksight_deploy)")
        return []
    if not engines.backend(settings).on_aws:
        log.info("engine %s: QuickSight reads Athena only; nothing deployed", settings.engine)
        return []
    return quicksight.Deployer(settings).deploy().lines()


def clean_up(run: dict | None) -> dict:
    return publish.clean_up(_lake(), RunPlan.of(run) if run else None)
