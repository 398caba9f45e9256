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

__all__ = ["AirflowException", "AirflowFailException", "CronDataIntervalTimetable"]
