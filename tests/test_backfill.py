"""An Airflow 3 backfill of 30 days at its default 10 concurrent runs, with overlapping lookback
windows, leaves exactly the tables 30 sequential runs leave.

Airflow itself runs it: ``airflow backfill create`` only queues runs, so the test starts a
scheduler (LocalExecutor on SQLite) and an api-server on 127.0.0.1, unpauses the DAG, and waits.
The sequential runs' tables are the oracle's: test_dag_runs.py proves a sequential run equals it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

import oracle
from alert_fixtures import write_nasty_alerts
from local_pipeline import make_settings
from runtime_events import publish
from runtime_events.embedded.engine import EmbeddedEngine
from test_dag_runs import BIN, REPO, TABLES, airflow_env, run

pytestmark = pytest.mark.slow

FIRST = date(2026, 2, 1)
DAYS = [(FIRST + timedelta(days=i)).isoformat() for i in range(30)]
TIMEOUT = 40 * 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("backfill")
    port = free_port()
    env = airflow_env(tmp) | {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "6",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "runtime-events-backfill-test",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "1200",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_ENABLED": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "sqlite_settings.CONNECT_ARGS",
        "PYTHONPATH": str(REPO / "tests"),
    }
    run([str(BIN / "runtime-events"), "generate", "--start", (FIRST - timedelta(days=2)).isoformat(),
         "--days", "33", "--clusters", "2", "--events-per-day", "60", "--seed", "5"], env, tmp)
    write_nasty_alerts(tmp / "raw" / "edge-cases", DAYS[10:13], per_day=40)
    run([str(BIN / "airflow"), "db", "migrate"], env, tmp)
    run([str(BIN / "airflow"), "dags", "reserialize"], env, tmp)
    run([str(BIN / "airflow"), "dags", "unpause", "runtime_events_daily"], env, tmp)
    run([str(BIN / "airflow"), "backfill", "create", "--dag-id", "runtime_events_daily",
         "--from-date", DAYS[0], "--to-date", DAYS[-1]], env, tmp)
    logs = tmp / "service-logs"
    logs.mkdir()
    services = []
    try:
        for name in ("api-server", "scheduler"):
            services.append(subprocess.Popen(
                [str(BIN / "airflow"), name], env=env, cwd=tmp, start_new_session=True,
                stdout=open(logs / f"{name}.log", "w"), stderr=subprocess.STDOUT))
            if name == "api-server":
                wait_for_http(f"http://127.0.0.1:{port}/api/v2/monitor/health", logs)
        deadline = time.monotonic() + TIMEOUT
        while True:
            states = run_states(env, tmp)
            if len(states) == len(DAYS) and all(s in ("success", "failed") for s in states.values()):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"backfill did not finish: {states}\n" + tail(logs))
            time.sleep(10)
    finally:
        for service in services:
            os.killpg(service.pid, signal.SIGTERM)
        for service in services:
            try:
                service.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(service.pid, signal.SIGKILL)
    return tmp, states, logs


def wait_for_http(url: str, logs: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer\n" + tail(logs))


def run_states(env: dict, cwd: Path) -> dict:
    done = run([str(BIN / "airflow"), "dags", "list-runs", "runtime_events_daily", "-o", "json"], env, cwd)
    lines = [line for line in done.stdout.splitlines() if line.startswith(("[{", "[]"))]
    text = lines[-1] if lines else "[]"
    # unpausing also schedules the latest interval: only the backfill's runs are compared
    return {r["logical_date"][:10]: r["state"] for r in json.loads(text) if r["run_id"].startswith("backfill__")}


def tail(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n" + p.read_text()[-3000:] for p in sorted(logs.glob("*.log")))


def test_every_backfilled_run_succeeded(backfilled):
    _, states, logs = backfilled
    assert sorted(states) == DAYS
    assert set(states.values()) == {"success"}, states


@pytest.mark.parametrize("name", TABLES)
def test_backfill_equals_sequential_runs(backfilled, name):
    tmp, _, _ = backfilled
    # Sequential runs for these days leave every dt from the first window's start to the last day
    window = [(FIRST + timedelta(days=i)).isoformat() for i in range(-2, 30)]
    expected = oracle.expected_tables(tmp / "raw", window)[name]
    got = EmbeddedEngine(tmp / "curated" / "_catalog").execute(f"SELECT * FROM {name}", "runtime_security").table.to_pandas()
    assert len(expected) > 0
    assert oracle.canonical(got[list(expected.columns)]).equals(oracle.canonical(expected))


def test_no_work_left_behind(backfilled):
    tmp, _, _ = backfilled
    engine = EmbeddedEngine(tmp / "curated" / "_catalog")
    assert [t for t in engine.metastore.list_tables("runtime_security") if "_r2" in t] == []
    stage = tmp / "curated" / "runtime_events_parquet" / "_stage"
    assert not stage.exists() or not any(stage.iterdir())
    # every version folder on disk is one the ledger recorded; replaced ones stay retention_days,
    # then exactly one version folder per published partition is left
    settings = make_settings(tmp, reject_threshold="0.5")
    lake = publish.Lake(settings)
    info = engine.metastore.get_table("runtime_security", "runtime_events_parquet")
    published = {Path(p.location.rstrip("/")) for p in info.partitions}

    def on_disk() -> set[Path]:
        return {p.parent for p in (tmp / "curated" / "runtime_events_parquet").rglob("*.parquet")}

    recorded = {Path(v.location.rstrip("/")) for h in lake.ledger.history("runtime_events_parquet").versions.values()
                for v in h if v.location}
    assert published <= on_disk() <= recorded
    publish.clean_up(lake, None, now=datetime.now(timezone.utc) + timedelta(days=settings.retention_days, minutes=1))
    assert on_disk() == published
