"""create_tables: the database and every table of the catalogue in one task instance, one
statement after the other, through the DAG's own task on the embedded engine."""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from runtime_events import planning, sql
from runtime_events.operators import QUERY_STATISTICS, RuntimeEventsStatementsOperator
from runtime_events.paths import REPO_DAGS
from runtime_events.settings import Settings
from runtime_events.tables import TABLES

STATEMENTS = ["create_database.sql", *(table.create_sql for table in TABLES)]


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_DAGS)).dags["runtime_events_daily"]


@pytest.fixture
def lake(tmp_path):
    (tmp_path / "raw").mkdir()
    values = {"raw_location": str(tmp_path / "raw"), "curated_location": str(tmp_path / "curated")}
    settings = Settings.load(lambda key: values.get(key.removeprefix("runtime_events_")))
    return settings, planning.plan_window(settings, date(2026, 11, 20)), tmp_path / "curated"


class TaskInstance:
    """What the operator uses of its task instance: its map index and XCom push."""

    map_index = -1

    def __init__(self) -> None:
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value


def rendered(task, settings: Settings, run):
    """The task rendered as Airflow renders it when it runs, with the run's plan as plan_run's XCom."""
    op = copy.copy(task)
    op.__dict__["settings"] = settings
    op.run = run.as_xcom() if run else None
    op.render_template_fields({})
    return op


def query_text(curated: Path, query_execution_id: str) -> str:
    return json.loads((curated / "_query_results" / f"{query_execution_id}.json").read_text())["Query"]


def test_one_unmapped_task_runs_the_database_then_every_tables_ddl(dag):
    task = dag.get_task("create_tables")
    assert isinstance(task, RuntimeEventsStatementsOperator)
    assert task.query_files == STATEMENTS
    assert "create_database" not in dag.task_ids
    assert (task.upstream_task_ids, task.downstream_task_ids) == ({"plan_run"}, {"stage_alerts"})


def test_each_statement_is_a_field_of_its_own_rendered_with_its_own_params(dag, lake):
    """What the Rendered Template shows: each file's statement whole, with its own table's name."""
    settings, run, _ = lake
    op = rendered(dag.get_task("create_tables"), settings, run)
    assert [f for f in op.template_fields if f.endswith(".sql")] == STATEMENTS
    for name in STATEMENTS:
        expected = sql.render(name, sql.sql_params(settings, run, {}, query=name))
        assert getattr(op, name) == expected, name
        (statement,) = [s for s in sqlglot.parse(getattr(op, name), read="athena") if s is not None]
        # IF NOT EXISTS: a retry, or the next run, runs them all again
        assert isinstance(statement, exp.Create) and statement.args.get("exists"), name


def test_the_task_creates_every_table_and_pushes_each_statements_statistics(dag, lake):
    from runtime_events.embedded.engine import EmbeddedEngine

    settings, run, curated = lake
    op = rendered(dag.get_task("create_tables"), settings, run)
    ti = TaskInstance()
    ids = op.execute({"ti": ti})
    metastore = EmbeddedEngine(curated / "_catalog").metastore
    # falco_events only when raw_format reads Falco's shape (not the default)
    assert settings.raw_format == "panoptica"
    assert sorted(metastore.list_tables(settings.database)) == sorted(t.name for t in TABLES if t.name != "falco_events")
    statistics = ti.xcom[QUERY_STATISTICS]
    assert [s["query_execution_id"] for s in statistics] == ids and len(set(ids)) == len(STATEMENTS)
    assert [(s["task_id"], s["map_index"]) for s in statistics] == [("create_tables", i) for i in range(len(STATEMENTS))]
    assert [query_text(curated, i) for i in ids] == [getattr(op, name) for name in STATEMENTS]
    assert {(s["statement_type"], s["data_scanned_bytes"]) for s in statistics} == {("DDL", 0)}
    # again, as a retry or the next run does: nothing to do, nothing fails
    again = rendered(dag.get_task("create_tables"), settings, run)
    assert len(again.execute({"ti": TaskInstance()})) == len(STATEMENTS)


def test_a_failing_statement_fails_the_task_with_the_engines_reason_and_the_rest_do_not_run(lake, tmp_path):
    from airflow.providers.common.compat.sdk import AirflowException
    from airflow.sdk import DAG

    settings, _, curated = lake
    folder = tmp_path / "sql"
    folder.mkdir()
    (folder / "first.sql").write_text("CREATE DATABASE IF NOT EXISTS {{ params.database }}")
    (folder / "broken.sql").write_text("SELECT * FROM {{ params.database }}.nowhere")
    (folder / "last.sql").write_text("CREATE DATABASE IF NOT EXISTS never_created")
    with DAG("statements", schedule=None, template_searchpath=[str(folder)]):
        task = RuntimeEventsStatementsOperator(task_id="run_statements", query=["first.sql", "broken.sql", "last.sql"])
    op = rendered(task, settings, None)
    ti = TaskInstance()
    with pytest.raises(AirflowException, match=r"Final state of Athena job is FAILED.*nowhere"):
        op.execute({"ti": ti})
    ran = sorted(json.loads(p.read_text())["Query"] for p in (curated / "_query_results").glob("*.json"))
    assert ran == sorted([f"CREATE DATABASE IF NOT EXISTS {settings.database}", f"SELECT * FROM {settings.database}.nowhere"])
    assert QUERY_STATISTICS not in ti.xcom
