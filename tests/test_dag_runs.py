"""The DAG end to end through Airflow itself: ``airflow dags test`` on the embedded engine.

Simulated alerts (``runtime-events generate``) plus the hostile fixture set go through three
daily runs; every table is then compared row for row with the independent oracle, the guide's
queries run verbatim through ``runtime-events query``, and a rerun changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest

import oracle
from airflow_env import airflow_env as isolated_airflow_env
from alert_fixtures import write_nasty_alerts
from runtime_events.embedded.engine import EmbeddedEngine

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
TABLES = ["runtime_events_parquet", "daily_rule_counts", "daily_severity_counts",
          "daily_workload_counts", "daily_cve_counts", "daily_attack_counts", "ocsf_detection_findings"]
GUIDE = [
    "SELECT rule_name, severity, COUNT(rule_name) as count_rules FROM runtime_events GROUP BY rule_name, severity ORDER BY count_rules;",
    """SELECT rule_name, "proc.cmdline", "evt.time" FROM runtime_events WHERE severity='High' ORDER BY "evt.time" DESC limit 8;""",
    "SELECT * FROM runtime_events WHERE rule_name='Detect Outbound Connections To Common Miner Pool Ports';",
]


def airflow_env(tmp: Path) -> dict:
    return isolated_airflow_env(tmp / "airflow", {"raw_location": tmp / "raw", "curated_location": tmp / "curated",
                                                  "reject_threshold": "0.5"})


def run(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dagruns")
    env = airflow_env(tmp)
    elsewhere = tmp / "cwd"  # the DAGs must work from any working directory
    elsewhere.mkdir()
    run([str(BIN / "runtime-events"), "generate", "--start", DAYS[0], "--days", "3",
         "--clusters", "3", "--events-per-day", "120", "--seed", "11"], env, elsewhere)
    write_nasty_alerts(tmp / "raw" / "edge-cases", DAYS)
    run([str(BIN / "airflow"), "db", "migrate"], env, elsewhere)
    for day in DAYS:
        run([str(BIN / "airflow"), "dags", "test", "runtime_events_daily", day], env, elsewhere)
    return tmp, env


def table(tmp: Path, name: str):
    engine = EmbeddedEngine(tmp / "curated" / "_catalog")
    return engine.execute(f"SELECT * FROM {name}", "runtime_security").table.to_pandas()


@pytest.mark.parametrize("name", TABLES)
def test_three_daily_runs_equal_the_oracle(lake, name):
    tmp, _ = lake
    expected = oracle.expected_tables(tmp / "raw", DAYS)[name]
    got = table(tmp, name)
    got = got[got["dt"].isin(DAYS)]
    assert len(expected) > 0
    assert oracle.canonical(got[list(expected.columns)]).equals(oracle.canonical(expected))


def test_the_runs_export_each_day_once_in_security_lakes_layout(lake):
    """export_to_security_lake, through Airflow: each day's folder holds one run's copy of the
    day's findings, one per curated alert (later runs replaced earlier copies)."""
    import pyarrow.parquet as pq

    tmp, _ = lake
    root = tmp / "security_lake" / "ext" / "runtime_events" / "region=us-east-1" / "accountId=000000000000"
    curated = table(tmp, "runtime_events_parquet")
    days = sorted(set(curated["dt"]))
    assert set(DAYS) <= set(days)
    assert sorted(p.name for p in root.iterdir()) == [f"eventDay={d.replace('-', '')}" for d in days]
    for day in days:
        files = sorted((root / f"eventDay={day.replace('-', '')}").iterdir())
        assert len({f.name.rsplit("-", 1)[0] for f in files}) == 1, files
        uids = sorted(u for f in files for u in pq.read_table(f, columns=["metadata"]).column("metadata").combine_chunks()
                      .field("uid").to_pylist())
        assert uids == sorted(curated.loc[curated["dt"] == day, "event_id"])


def test_guide_queries_run_verbatim(lake):
    tmp, env = lake
    lines = oracle.read_alert_lines(tmp / "raw")
    valid, _ = oracle.classify(lines)
    first = run([str(BIN / "runtime-events"), "query", GUIDE[0]], env, tmp)
    rows = list(csv.DictReader(io.StringIO(first.stdout)))
    assert list(rows[0]) == ["rule_name", "severity", "count_rules"]
    counts = [int(r["count_rules"]) for r in rows]
    assert counts == sorted(counts)
    # every valid line has a rule name: the guide's count for a rule is at least the valid count
    miner = "Detect Outbound Connections To Common Miner Pool Ports"
    guide_total = sum(int(r["count_rules"]) for r in rows if r["rule_name"] == miner)
    assert guide_total >= (valid["rule_name"] == miner).sum() > 0
    second = run([str(BIN / "runtime-events"), "query", GUIDE[1]], env, tmp)
    rows = list(csv.DictReader(io.StringIO(second.stdout)))
    assert 0 < len(rows) <= 8 and list(rows[0]) == ["rule_name", "proc.cmdline", "evt.time"]
    third = run([str(BIN / "runtime-events"), "query", GUIDE[2], "--format", "json"], env, tmp)
    rows = [json.loads(line) for line in third.stdout.splitlines()]
    assert len(rows) == guide_total and all(r["rule_name"] == miner for r in rows)


def test_load_audit_has_every_run_and_day(lake):
    tmp, _ = lake
    audit = table(tmp, "runtime_events_load_audit")
    assert audit["run_token"].nunique() == 3
    latest = audit[audit["logical_date"] == DAYS[-1]].set_index("dt")
    expected = oracle.expected_counts(tmp / "raw").set_index("dt")
    for day in DAYS:
        assert latest.loc[day, "alerts_loaded"] == expected.loc[day, "loaded"]
        assert latest.loc[day, "duplicates_dropped"] == expected.loc[day, "duplicate"]


def test_create_tables_shows_each_statement_whole_and_records_each_ones_cost(lake):
    """One task instance runs the database's and every table's DDL: its Rendered Template (as the
    UI reads it from the metadata database) holds each statement whole under its file name, that
    is the text the engine ran, and the cost table has a row per statement, by position."""
    import sqlite3

    from runtime_events.tables import TABLES as CATALOGUE

    tmp, _ = lake
    statements = ["create_database.sql", *(t.create_sql for t in CATALOGUE)]
    with sqlite3.connect(tmp / "airflow" / "airflow.db") as db:
        rendered = [json.loads(r) for (r,) in db.execute(  # in run order (dags test names runs by their start)
            "SELECT rendered_fields FROM rendered_task_instance_fields WHERE task_id = 'create_tables' ORDER BY run_id")]
        instances = db.execute("SELECT count(*) FROM task_instance WHERE task_id = 'create_tables' "
                               "GROUP BY run_id").fetchall()
    assert len(rendered) >= len(DAYS) and set(instances) == {(1,)}
    ran = {p.stem: json.loads(p.read_text())["Query"] for p in (tmp / "curated" / "_query_results").glob("*.json")}
    costs = table(tmp, "runtime_events_query_costs")
    costs = costs[costs["task_id"] == "create_tables"]
    # (the UI masks the rendered run plan's run_token, a "token": the runs pair up by their order)
    tokens = sorted(costs["run_token"].unique())  # r<start time>_...
    assert len(tokens) == len(rendered)
    for fields, token in zip(rendered, tokens):
        assert sorted(f for f in fields if f.endswith(".sql")) == sorted(statements)
        mine = costs[costs["run_token"] == token].sort_values("map_index")
        assert list(mine["map_index"]) == list(range(len(statements)))
        assert [ran[q] for q in mine["query_execution_id"]] == [fields[name] for name in statements]


def test_rerun_of_a_day_leaves_identical_tables(lake):
    tmp, env = lake
    before = {name: oracle.canonical(table(tmp, name)) for name in TABLES}
    run([str(BIN / "airflow"), "dags", "test", "runtime_events_daily", DAYS[1]], env, tmp)
    for name in TABLES:
        assert oracle.canonical(table(tmp, name)).equals(before[name]), name


def test_a_hostile_setting_fails_the_run_by_name_before_any_sql(lake, tmp_path):
    tmp, env = lake
    results = tmp / "curated" / "_query_results"
    before = set(results.iterdir())
    hostile = env | {"AIRFLOW_VAR_RUNTIME_EVENTS_DATABASE": "runtime_security; DROP TABLE runtime_events --"}
    done = subprocess.run([str(BIN / "airflow"), "dags", "test", "runtime_events_daily", DAYS[0]], env=hostile,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "runtime_events_database" in done.stdout + done.stderr
    assert set(results.iterdir()) == before  # no statement reached the engine


def test_a_day_before_start_date_fails_saying_so(lake, tmp_path):
    tmp, env = lake
    done = subprocess.run([str(BIN / "airflow"), "dags", "test", "runtime_events_daily", "2019-12-31"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "before setting runtime_events_start_date=2020-01-01" in done.stdout + done.stderr


def test_a_missing_raw_location_fails_by_name_and_keeps_every_day(lake, tmp_path):
    tmp, env = lake
    before = {name: oracle.canonical(table(tmp, name)) for name in TABLES}
    missing = tmp / "not-mounted"
    done = subprocess.run([str(BIN / "airflow"), "dags", "test", "runtime_events_daily", DAYS[-1]],
                          env=env | {"AIRFLOW_VAR_RUNTIME_EVENTS_RAW_LOCATION": str(missing)},
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert f"raw_location {missing}/ is not a folder" in done.stdout + done.stderr
    for name in TABLES:
        assert oracle.canonical(table(tmp, name)).equals(before[name]), name


def test_a_day_that_would_shrink_is_published_only_with_allow_shrink(tmp_path):
    env = airflow_env(tmp_path)
    run([str(BIN / "runtime-events"), "generate", "--start", DAYS[0], "--days", "1", "--clusters", "2",
         "--events-per-day", "60", "--seed", "3"], env, tmp_path)
    run([str(BIN / "airflow"), "db", "migrate"], env, tmp_path)
    dags_test = [str(BIN / "airflow"), "dags", "test", "runtime_events_daily", DAYS[0]]
    run(dags_test, env, tmp_path)
    full = oracle.canonical(table(tmp_path, "runtime_events_parquet"))
    files = sorted((tmp_path / "raw").rglob("*.json*"))
    files[0].rename(tmp_path / files[0].name)  # a raw file expired, say
    refused = subprocess.run(dags_test, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0
    assert "rows rebuilt against" in refused.stdout + refused.stderr and "allow_shrink=true" in refused.stdout
    assert oracle.canonical(table(tmp_path, "runtime_events_parquet")).equals(full)
    run([*dags_test, "--conf", '{"allow_shrink": true}'], env, tmp_path)
    expected = oracle.expected_tables(tmp_path / "raw", [DAYS[0]])["runtime_events_parquet"]
    got = table(tmp_path, "runtime_events_parquet")
    assert 0 < len(got) < len(full)
    assert oracle.canonical(got[list(expected.columns)]).equals(oracle.canonical(expected))


def test_each_rebuilt_day_is_a_partition_of_the_aggregate_asset_events(lake):
    """Airflow 3.3's partitioned asset events: one event per table and rebuilt day."""
    tmp, _ = lake
    import sqlite3

    with sqlite3.connect(tmp / "airflow" / "airflow.db") as db:
        rows = db.execute("SELECT a.name, e.partition_key, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                          "WHERE e.partition_key IS NOT NULL").fetchall()
    last = [(name, key) for name, key, extra in rows if json.loads(extra)["dt_to"] == DAYS[-1]]
    assert sorted(last) == sorted((f"runtime_security.{t}", d) for t in TABLES[1:] for d in DAYS)


def test_the_example_partitioned_consumer_dag_imports(tmp_path):
    example = REPO / "docs" / "examples" / "runtime_events_rule_report.py"
    probe = ("import runpy, sys; from airflow.dag_processing.dagbag import DagBag; "
             "bag = DagBag(dag_folder=sys.argv[1]); "
             "print(bag.import_errors, list(bag.dags), type(bag.dags['runtime_events_rule_report'].timetable).__name__)")
    out = run([str(BIN / "python"), "-c", probe, str(example)], airflow_env(tmp_path), tmp_path)
    assert out.stdout.strip().splitlines()[-1] == "{} ['runtime_events_rule_report'] PartitionedAssetTimetable"
