"""The table catalogue: every table the project keeps, one line each.

A table is its folder ``include/sql/<name>/``: ``create_table.sql`` (its DDL) and, for an
aggregate, ``select.sql`` (a plain ``SELECT`` over the run's window, partition keys last), which
the shared ``build_version.sql`` wraps in the write-audit-publish statement. The DAG maps over
this catalogue; adding a daily aggregate is its folder, one line here and its oracle (README,
"Adding a table").

Standard library only: the DAG file imports it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["raw", "curated", "reference", "aggregate", "record"]
DAY_KEY = "dt"


@dataclass(frozen=True)
class Table:
    """``kind``: ``raw`` (external tables over the alert files), ``curated`` (the Parquet copy,
    written in batches), ``reference`` (shipped with the package), ``aggregate`` (built from the
    curated copy by ``select.sql``) or ``record`` (rows appended by each run)."""

    name: str
    kind: Kind
    partition_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind in ("curated", "aggregate") and DAY_KEY not in self.partition_keys:
            raise ValueError(f"table {self.name}: a published table is partitioned by {DAY_KEY} (and maybe more)")

    @property
    def create_sql(self) -> str:
        return f"{self.name}/create_table.sql"

    @property
    def select_sql(self) -> str:
        return f"{self.name}/select.sql"

    @property
    def day_index(self) -> int:
        """Where ``dt`` is among the partition values."""
        return self.partition_keys.index(DAY_KEY)

    def day_of(self, values: tuple) -> str:
        return values[self.day_index]


TABLES = (
    Table("runtime_events", "raw"),
    Table("runtime_events_lines", "raw"),
    Table("falco_events", "raw"),
    Table("runtime_events_parquet", "curated", ("dt", "cluster_id")),
    Table("rule_attack_techniques", "reference"),
    Table("attack_techniques", "reference"),
    Table("daily_rule_counts", "aggregate", ("dt",)),
    Table("daily_severity_counts", "aggregate", ("dt",)),
    Table("daily_workload_counts", "aggregate", ("dt",)),
    Table("daily_cve_counts", "aggregate", ("dt",)),
    Table("daily_attack_counts", "aggregate", ("dt",)),
    Table("ocsf_detection_findings", "aggregate", ("dt",)),
    Table("runtime_events_load_audit", "record"),
    Table("runtime_events_query_costs", "record"),
)

RAW = tuple(t for t in TABLES if t.kind == "raw")
EVENTS = next(t for t in TABLES if t.kind == "curated")
REFERENCE = tuple(t for t in TABLES if t.kind == "reference")
AGGREGATES = tuple(t for t in TABLES if t.kind == "aggregate")
PUBLISHED = (EVENTS, *AGGREGATES)
