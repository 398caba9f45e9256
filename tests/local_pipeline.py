"""Runs the DAG's statements in the DAG's order through the embedded Athena hook, without
Airflow: fast enough for many scenarios a test needs (reruns, crashes, concurrent readers).
The DAG itself runs through Airflow in test_dag_runs.py."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from runtime_events import checks, planning, publish, results, sql, tasks
from runtime_events.embedded.engine import EmbeddedEngine
from runtime_events.embedded.hook import EmbeddedAthenaHook
from runtime_events.planning import RunPlan
from runtime_events.settings import Settings
from runtime_events.tables import AGGREGATES, EVENTS, TABLES


def make_settings(tmp: Path, **overrides: str) -> Settings:
    values = {"raw_location": str(tmp / "raw"), "curated_location": str(tmp / "curated"),
              "reject_threshold": "0.5", **overrides}
    return Settings.load(lambda key: values.get(key.removeprefix("runtime_events_")))


class Pipeline:
    """The DAG's statements in the DAG's order, through the embedded Athena hook."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hook = EmbeddedAthenaHook(settings.curated_location, log_query=False)

    def statement(self, name: str, run: RunPlan | None, **extra) -> str:
        text = sql.render(name, sql.sql_params(self.settings, run, extra, query=name))
        query_id = self.hook.run_query(text, {"Database": self.settings.database})
        if self.hook.poll_query_status(query_id) != "SUCCEEDED":
            raise RuntimeError(self.hook.get_state_change_reason(query_id))
        return query_id

    def rows(self, name: str, run: RunPlan, **extra) -> list[dict]:
        query_id = self.statement(name, run, **extra)
        return list(results.iter_rows([self.hook.get_query_results(query_id, max_results=10**6)]))

    @property
    def lake(self) -> publish.Lake:
        return publish.Lake(self.settings)

    def write(self, day: str, allow_shrink: bool = False) -> RunPlan:
        """Stage and write a new version, but publish nothing (what a crash leaves behind)."""
        run = planning.plan_window(self.settings, date.fromisoformat(day), allow_shrink)
        publish.prepare_run(self.lake, run)
        self.statement("create_database.sql", run)
        for table in TABLES:
            self.statement(table.create_sql, run)
        self.statement("runtime_events_parquet/stage_alerts.sql", run)
        batches = tasks.audit_stage(self.rows("runtime_events_parquet/audit_stage.sql", run), run, self.settings)
        self.statement("runtime_events_parquet/create_version.sql", run)
        for batch in batches:
            self.statement("runtime_events_parquet/write_batch.sql", run, **batch)
        return run

    def run_day(self, day: str, allow_shrink: bool = False) -> RunPlan:
        run = None
        lake = self.lake
        try:
            run = self.write(day, allow_shrink)
            audit = checks.audit_version(self.rows("runtime_events_parquet/audit_version.sql", run), run, self.settings)
            events = publish.publish(lake, EVENTS, run, audit["days_with_lines"],
                                     {(d, c): n for d, c, n in audit["rows"]})
            for table in AGGREGATES:
                self.statement("build_version.sql", run, table=table.name)
            counts = checks.count_aggregate_rows(
                self.rows("count_aggregate_rows.sql", run, tables=[t.name for t in AGGREGATES]), run, self.settings)
            published = [publish.publish(lake, table, run, events["days_rebuilt"], tasks.version_rows(counts, table.name))
                         for table in AGGREGATES]
            self.exported = tasks.export_to_security_lake(run.as_xcom(), published, lake)
            self.statement("runtime_events_load_audit/record_run.sql", run)
        finally:
            publish.clean_up(lake, run)
        return run

    def table(self, name: str) -> pd.DataFrame:
        engine = EmbeddedEngine(Path(self.settings.curated_location) / "_catalog")
        return engine.execute(f"SELECT * FROM {name}", self.settings.database).table.to_pandas()


