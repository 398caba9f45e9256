"""The Airflow plugin object: registers the project's Jinja macros with Airflow.

Installed through the ``airflow.plugins`` entry point of the wheel, or found in ``plugins/``.
In templates: ``{{ macros.runtime_events.partition_window(ds) }}``.
"""

from __future__ import annotations

from datetime import date, timedelta

from airflow.plugins_manager import AirflowPlugin

from runtime_events.partitions import partition_path
from runtime_events.settings import Settings


def partition_window(ds: str, lookback_days: int | None = None) -> list[str]:
    """The ``dt`` partitions a run for day ``ds`` rebuilds, oldest first."""
    if lookback_days is None:
        lookback_days = Settings.load().lookback_days
    day = date.fromisoformat(ds)
    return [(day - timedelta(days=n)).isoformat() for n in range(lookback_days, -1, -1)]


def hive_partition_path(**values: str) -> str:
    """``dt=2026-11-20/cluster_id=prod%2Feu/``: a partition's folder as Hive and Athena name it."""
    return partition_path(list(values), tuple(values.values()))


class RuntimeEventsPlugin(AirflowPlugin):
    name = "runtime_events"
    macros = [partition_window, hive_partition_path]
