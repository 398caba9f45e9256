"""What users rely on in the DAG file and the SQL files, checked without running them."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date

import pytest
import sqlglot
from sqlglot import exp

from runtime_events import planning, sql
from runtime_events.paths import REPO_DAGS, SQL_DIR
from runtime_events.settings import Settings
from runtime_events.tables import AGGREGATES, TABLES

# Every statement file (``_macros.sql`` holds only the macros the others import).
SQL_FILES = sorted(p.relative_to(SQL_DIR).as_posix() for p in SQL_DIR.rglob("*.sql") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_DAGS))


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "runtime_events_daily" in dagbag.dags


def test_dag_has_tags_docs_retries_and_no_catchup(dagbag):
    dag = dagbag.dags["runtime_events_daily"]
    assert {"runtime-security", "athena"} <= set(dag.tags)
    assert dag.doc_md and "Runtime events" in dag.doc_md
    assert dag.catchup is False
    assert dag.params["allow_shrink"] is False
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
        assert task.execution_timeout is not None and task.execution_timeout.total_seconds() > 0, task.task_id
        assert re.fullmatch(r"[a-z]+(_[a-z]+)+", task.task_id), task.task_id


def test_every_referenced_sql_file_exists(dagbag):
    dag = dagbag.dags["runtime_events_daily"]
    referenced, built = set(), set()
    for task in dag.tasks:
        query = getattr(task, "query_file", None) or getattr(task, "partial_kwargs", {}).get("query")
        mapped = getattr(getattr(task, "expand_input", None), "value", None)
        if isinstance(mapped, dict) and "query" in mapped:  # not expand_kwargs (refresh_quicksight_datasets)
            referenced.update(mapped["query"])
        elif isinstance(query, str):
            referenced.add(query)
        referenced.update(getattr(task, "query_files", ()))
        if query == "build_version.sql":
            built.update(p["table"] for p in mapped["sql_params"])
    assert referenced, "no task refers to a .sql file"
    for name in referenced:
        assert (SQL_DIR / name).is_file(), name
    for table in TABLES:
        assert table.create_sql in referenced
    assert built == {t.name for t in AGGREGATES}
    for table in AGGREGATES:
        assert (SQL_DIR / table.select_sql).is_file(), table.select_sql


def _render(name: str, table: str = "daily_rule_counts", **overrides: str) -> str:
    values = {"raw_location": "s3://alerts-bucket/lightspin/k8s_runtime_events/",
              "curated_location": "s3://lake-bucket/curated/", **overrides}
    settings = Settings.load(lambda key: values.get(key.removeprefix("runtime_events_")))
    run = planning.plan_window(settings, date(2026, 11, 20))
    extra = {"batch": 0, "tables": [t.name for t in AGGREGATES]}
    if name == "build_version.sql":
        extra["table"] = table
    return sql.render(name, sql.sql_params(settings, run, extra, query=name))


@pytest.mark.parametrize("name", SQL_FILES)
def test_every_sql_file_is_one_athena_statement(name):
    text = _render(name)
    statements = [s for s in sqlglot.parse(text, read="athena") if s is not None]
    assert len(statements) == 1
    assert not any(isinstance(node, exp.Command) for node in statements[0].walk())
    assert "{{" not in text and "{%" not in text


@pytest.mark.parametrize("table", [t.name for t in AGGREGATES])
def test_each_aggregates_build_is_one_athena_ctas(table):
    """build_version.sql with each table's select.sql inside (the OCSF one writes nested ROW,
    ARRAY(ROW) and MAP values): one CREATE TABLE AS of Athena SQL."""
    text = _render("build_version.sql", table=table)
    (statement,) = [s for s in sqlglot.parse(text, read="athena") if s is not None]
    assert isinstance(statement, exp.Create) and isinstance(statement.expression, exp.Query)
    assert not any(isinstance(node, exp.Command) for node in statement.walk())
    assert statement.expression.named_selects[-1] == "dt"


@pytest.mark.parametrize("raw_format", ["falco", "auto"])
@pytest.mark.parametrize("name", ["runtime_events_parquet/stage_alerts.sql", "falco_events/create_table.sql"])
def test_statements_reading_falcos_shape_are_one_athena_statement(name, raw_format):
    text = _render(name, raw_format=raw_format, falco_cluster_field="k8smeta.cluster.name",
                   raw_layout="{yyyy}-{MM}-{dd}/")
    (statement,) = [s for s in sqlglot.parse(text, read="athena") if s is not None]
    assert not any(isinstance(node, exp.Command) for node in statement.walk())
    assert isinstance(statement, exp.Create) and "{{" not in text and "{%" not in text
    if name.startswith("runtime_events_parquet"):
        assert '$.output_fields["k8smeta.cluster.name"]' in text and '$.output_fields["k8s.pod.name"]' in text
        assert ("CASE WHEN is_falco THEN json_extract" in text) == (raw_format == "auto")


def test_guide_queries_parse_as_athena():
    for query in GUIDE_QUERIES:
        assert sqlglot.parse_one(query, read="athena") is not None


def test_dag_file_parses_fast_and_without_settings_in_the_metastore():
    """Parsing reads only the environment: no metadata-DB or network call."""
    code = ("import time, runpy; import airflow.sdk; t=time.perf_counter(); "
            f"runpy.run_path({str(REPO_DAGS / 'runtime_events_daily.py')!r}); print(time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////nonexistent/nowhere/airflow.db", "AIRFLOW_HOME": "/tmp/runtime-events-parse-home"})
    assert float(out.stdout.strip().splitlines()[-1]) < 5


GUIDE_QUERIES = [
    "SELECT rule_name, severity, COUNT(rule_name) as count_rules FROM runtime_events GROUP BY rule_name, severity ORDER BY count_rules;",
    """SELECT rule_name, "proc.cmdline", "evt.time" FROM runtime_events WHERE severity='High' ORDER BY "evt.time" DESC limit 8;""",
    "SELECT * FROM runtime_events WHERE rule_name='Detect Outbound Connections To Common Miner Pool Ports';",
]
