"""The table catalogue: every table the project keeps, and the SQL files that make it.

Adding a daily aggregate means a folder ``include/sql/<table>/`` with ``create_table.sql`` and
``build.sql``, and one entry in ``AGGREGATES``; the DAG maps over this catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    name: str
    partition_keys: tuple[str, ...] = ()
    description: str = ""

    @property
    def create_sql(self) -> str:
        return f"{self.name}/create_table.sql"

    @property
    def build_sql(self) -> str:
        return f"{self.name}/build.sql"


RAW_EVENTS = Table("runtime_events", description="the Panoptica guide's raw JSON table")
RAW_LINES = Table("runtime_events_lines", description="the alert files as lines of text")
EVENTS = Table("runtime_events_parquet", ("dt", "cluster_id"), "one row per valid, unique alert")
LOAD_AUDIT = Table("runtime_events_load_audit", description="each run's line accounting per day")
QUERY_COSTS = Table("runtime_events_query_costs", description="each run's statements: bytes scanned, cost")

AGGREGATES = (
    Table("daily_rule_counts", ("dt",), "alerts per cluster, rule and severity"),
    Table("daily_severity_counts", ("dt",), "alerts per cluster and severity"),
    Table("daily_workload_counts", ("dt",), "alerts per cluster, namespace and pod"),
    Table("daily_cve_counts", ("dt",), "alerts per cluster and CVE"),
)

TABLES = (RAW_EVENTS, RAW_LINES, EVENTS, *AGGREGATES, LOAD_AUDIT, QUERY_COSTS)
PUBLISHED = (EVENTS, *AGGREGATES)


def by_name(name: str) -> Table:
    return next(t for t in TABLES if t.name == name)
