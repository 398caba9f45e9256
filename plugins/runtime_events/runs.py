"""What the DAG's Python tasks do, and the DAG-level constants read cheaply at parse time.

Kept out of the DAG file so that it stays wiring; everything here reads settings when a task
runs, except ``PARSE_SETTINGS`` (environment only, no metastore or network call).
"""

from __future__ import annotations

from datetime import date, timedelta

import pendulum

from runtime_events import publish, sql
from runtime_events.settings import Settings, airflow_lookup
from runtime_events.tables import AGGREGATES, EVENTS

PARSE_SETTINGS = Settings.load()
START_DATE = pendulum.datetime(
    PARSE_SETTINGS.start_date.year, PARSE_SETTINGS.start_date.month, PARSE_SETTINGS.start_date.day,
    tz="UTC",
)
DEFAULT_ARGS = {
    "owner": "security-data",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
}


def run_day(context) -> date:
    """The UTC day a run is for: its logical date (the start of its daily data interval), else
    (for a run triggered by an asset, which has none) the day before it started."""
    for key in ("logical_date", "data_interval_start"):
        value = context.get(key)
        if value is not None:
            return pendulum.instance(value).in_timezone("UTC").date()
    return pendulum.instance(context["dag_run"].run_after).in_timezone("UTC").date() - timedelta(days=1)


def plan_run(context) -> dict:
    settings = Settings.load(airflow_lookup())
    return sql.plan_window(settings, run_day(context))


def publish_events(run: dict) -> dict:
    return publish.publish(Settings.load(airflow_lookup()), EVENTS, run)


def publish_aggregates(run: dict) -> list[dict]:
    settings = Settings.load(airflow_lookup())
    return [publish.publish(settings, table, run) for table in AGGREGATES]


def clean_up(run: dict | None) -> dict:
    return publish.clean_up(Settings.load(airflow_lookup()), run)
