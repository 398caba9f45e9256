"""What differs between the Airflow 3 releases the project supports, in one place.

Import these names from here, never from where one release happens to keep them.
"""

from __future__ import annotations

try:  # Airflow 3.2+ exports it from the Task SDK
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # 3.0, 3.1
    from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 3.2+
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # 3.0, 3.1
    from airflow.exceptions import AirflowException, AirflowFailException



def add_partitions(outlet_event, keys: list[str]) -> bool:
    """Mark an asset event with the partitions it changed (Airflow 3.3+: one event per key, so a
    DAG scheduled with ``PartitionedAssetTimetable`` runs once per rebuilt day). Older releases
    have no partitioned asset events: the event's ``extra`` names the days instead. Returns
    whether the partitions were attached."""
    add = getattr(outlet_event, "add_partitions", None)
    if add is None or not keys:
        return False
    add(keys)
    return True


__all__ = ["AirflowException", "AirflowFailException", "CronDataIntervalTimetable", "add_partitions"]
