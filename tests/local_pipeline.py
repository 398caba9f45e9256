"""Runs the DAG's statements in the DAG's order through the embedded Athena hook, without
Airflow: fast enough for many scenarios a test needs (reruns, crashes, concurrent readers).
The DAG itself runs through Airflow in test_dag_runs.py."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from runtime_events import checks, publish, results, sql
from runtime_events.embedded.engine import EmbeddedEngine
from runtime_events.embedded.hook import EmbeddedAthenaHook
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

    def statement(self, name: str, run: dict | None, **extra) -> str:
        text = sql.render(name, sql.sql_params(self.settings, run, extra))
        query_id = self.hook.run_query(text, {"Database": self.settings.database})
        if self.hook.poll_query_status(query_id) != "SUCCEEDED":
            raise RuntimeError(self.hook.get_state_change_reason(query_id))
        return query_id

    def rows(self, name: str, run: dict) -> list[dict]:
        query_id = self.statement(name, run)
        return list(results.iter_rows([self.hook.get_query_results(query_id, max_results=10**6)]))

    def write(self, day: str) -> dict:
        """Stage and write a new version, but publish nothing (what a crash leaves behind)."""
        run = sql.plan_window(self.settings, date.fromisoformat(day))
        self.statement("create_database.sql", run)
        for table in TABLES:
            self.statement(table.create_sql, run)
        self.statement("runtime_events_parquet/stage_alerts.sql", run)
        batches = checks.audit_stage(self.rows("runtime_events_parquet/audit_stage.sql", run), run, self.settings)
        self.statement("runtime_events_parquet/create_version.sql", run)
        for batch in batches:
            self.statement("runtime_events_parquet/write_batch.sql", run, **batch)
        return run

    def run_day(self, day: str) -> dict:
        run = None
        try:
            run = self.write(day)
            checks.audit_version(self.rows("runtime_events_parquet/audit_version.sql", run), run, self.settings)
            publish.publish(self.settings, EVENTS, run)
            for table in AGGREGATES:
                self.statement(table.build_sql, run)
            for table in AGGREGATES:
                publish.publish(self.settings, table, run)
            self.statement("runtime_events_load_audit/record_run.sql", run)
        finally:
            publish.clean_up(self.settings, run)
        return run

    def table(self, name: str) -> pd.DataFrame:
        engine = EmbeddedEngine(Path(self.settings.curated_location) / "_catalog")
        return engine.execute(f"SELECT * FROM {name}", self.settings.database).table.to_pandas()


