"""
### Example: one run per rebuilt day (Airflow 3.3+)

`runtime_events_daily` marks each aggregate table's asset event with the `dt` partitions it
rebuilt. A DAG scheduled on the partitioned asset runs once per rebuilt day, with that day as its
`partition_key`: a rerun of one day, or a backfill of a month, triggers exactly the days it changed.
On Airflow 3.0 to 3.2 the events carry the days in their `extra` (`days_rebuilt`) instead.
"""

from __future__ import annotations

from airflow.sdk import Asset, PartitionedAssetTimetable, dag, task

# The asset runtime_events_daily updates: "<database>.<table>", "athena://<database>/<table>".
DAILY_RULE_COUNTS = Asset(name="runtime_security.daily_rule_counts", uri="athena://runtime_security/daily_rule_counts")


@dag(
    dag_id="runtime_events_rule_report",
    schedule=PartitionedAssetTimetable(assets=DAILY_RULE_COUNTS),
    catchup=False,
    tags=["runtime-security", "example"],
    doc_md=__doc__,
)
def runtime_events_rule_report():
    @task
    def report_rules(**context) -> str:
        day = context["partition_key"]  # the dt the upstream run rebuilt
        return f"SELECT rule_name, sum(event_count) FROM daily_rule_counts WHERE dt = '{day}' GROUP BY 1"

    report_rules()


runtime_events_rule_report()
