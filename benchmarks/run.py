#!/usr/bin/env python
"""Fast and cheap at scale: the project's benchmark (issue #5).

    .venv/bin/python benchmarks/run.py            # full size: 1M alerts, 90-day history
    .venv/bin/python benchmarks/run.py --quick    # smoke size, writes benchmarks/results/quick.md
    .venv/bin/python benchmarks/run.py --only marginal   # one part (a, airflow, marginal, scheduled, scale, b, c, d)

Measures, on the same generated data and in one run:

a. one day of alerts (default 1,000,000 over 20 clusters, 200 NDJSON files) loaded by the
   pipeline on the embedded engine (tests/local_pipeline.Pipeline.run_day: stage, audit, write,
   publish, aggregates), against (i) the floor, a bare DuckDB read_json -> partitioned Parquet COPY,
   and (ii) a straightforward pandas + pyarrow script producing the same curated partitions. Wall
   time and peak memory of each (each contender is a subprocess; its peak RSS is the child's
   ru_maxrss from wait4). Airflow's own start-up is measured apart (``airflow dags test`` of a
   small day minus its statements' engine time, and ``airflow tasks test`` of one trivial task).
b. a 90-day history in a dated raw layout: the day-90 run against the day-1 run (wall time and the
   stage statement's DataScannedInBytes).
c. the Panoptica guide's first query on the raw table against the same answer from
   daily_rule_counts: bytes scanned, time, equal answers.
d. DAG parse time beyond importing Airflow, and the number of Athena statements a daily run sends.
marginal. issue #15's measure: T(1M-alert day) − T(10k-alert day of the same shape) of whole
   ``airflow dags test`` processes (fresh lake, fresh Airflow home), against the floor (≤ 3×) and
   the pandas script (≥ 5× faster), peak memory of the process tree (< 1.5 GB), task time per task.
scheduled. one run through ``airflow scheduler`` (LocalExecutor) and ``airflow api-server``:
   trigger to success, task instances, task time against the statements' engine time.
scale. a day of 1,000 clusters through the embedded pipeline: time, memory, write batches,
   partitions and files per partition; with (scheduled), a 90-day backfill estimate.
Every part reports what its runs would send to Athena: statements and bytes scanned per run.

Every contender runs as ``run.py --child NAME --params JSON`` so that its time and memory are its
own. Generated data and work folders live in benchmarks/results/ (git-ignored); the Markdown table
is printed and written to benchmarks/RESULTS.md (full size) or benchmarks/results/quick.md.
Anything in the existing Markdown file after the line ``## Profile findings`` is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
RESULTS = BENCH / "results"
PYTHON = sys.executable
sys.path[:0] = [str(REPO / "plugins"), str(REPO / "tests")]

KEYS = ("container.id", "evt.time", "k8s.ns.name", "k8s.pod.name", "proc.cmdline", "proc.pid",
        "cluster_id", "rule_name", "description", "severity", "related_cves")
DATABASE = "runtime_security"
GUIDE_QUERY = ("SELECT rule_name, severity, COUNT(rule_name) as count_rules FROM runtime_events "
               "GROUP BY rule_name, severity ORDER BY count_rules")
AGGREGATE_QUERY = ("SELECT rule_name, severity, sum(event_count) as count_rules FROM daily_rule_counts "
                   "GROUP BY rule_name, severity ORDER BY count_rules")
SEVERITY = {**dict.fromkeys(["critical", "emergency", "alert"], "Critical"),
            **dict.fromkeys(["high", "error"], "High"),
            **dict.fromkeys(["medium", "warning"], "Medium"),
            **dict.fromkeys(["low", "notice"], "Low"),
            **dict.fromkeys(["info", "informational", "debug"], "Info")}
MARKER = "## Profile findings"
PARTS = ("a", "airflow", "marginal", "scheduled", "scale", "b", "c", "d")
MB = 1024 * 1024


# =============================================================================================
# Helpers shared by parent and children (standard library only at import time, so that the DAG
# parse child measures the DAG file and not this script's imports).
def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def raw_files(root: Path) -> list[Path]:
    """Visible files under root, as Athena and the embedded engine list them."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        found.extend(Path(dirpath) / f for f in filenames if not f.startswith((".", "_")))
    return sorted(found)


def query_stats(curated: Path, since: set[str] | None = None) -> list[dict]:
    """The statements recorded under <curated>/_query_results, in submission order."""
    rows = []
    for path in (curated / "_query_results").glob("*.json"):
        if since is not None and path.name in since:
            continue
        info = json.loads(path.read_text())
        text = info.get("Query", "")
        body = [line for line in text.splitlines() if line.strip() and not line.strip().startswith("--")]
        rows.append({
            "file": path.name,
            "submitted": info["Status"].get("SubmissionDateTime", ""),
            "state": info["Status"]["State"],
            "ms": info["Statistics"].get("EngineExecutionTimeInMillis", 0),
            "scanned": info["Statistics"].get("DataScannedInBytes", 0),
            "kind": statement_kind(text),
            "type": info.get("StatementType", ""),
            "first_line": (body[0].strip() if body else "")[:100],
        })
    rows.sort(key=lambda r: r["submitted"])
    return rows


def statement_kind(text: str) -> str:
    """A short name for a statement of the DAG, from its text and the table catalogue: a table's
    build is ``build <table>`` for every aggregate of ``runtime_events.tables``."""
    from runtime_events.tables import AGGREGATES

    t = " ".join(text.split())
    created = re.search(r"\bCREATE TABLE (?:\w+\.)?(\w+)", t)
    created_table = created.group(1) if created else ""
    if "CREATE DATABASE" in t or "CREATE SCHEMA" in t:
        return "create_database"
    if "CREATE EXTERNAL TABLE" in t:
        return "create_table " + t.split("CREATE EXTERNAL TABLE IF NOT EXISTS ")[-1].split()[0].split(".")[-1]
    if "CREATE TABLE" in t and "runtime_events_lines" in t:
        return "stage_alerts"
    if "line_count" in t and "event_count" in t and "_stage_" in t and "INSERT INTO" not in t:
        return "audit_stage"
    if "WITH NO DATA" in t:
        return "create_version"
    if "INSERT INTO" in t and "copy_number = 1" in t and "runtime_events_load_audit" not in t:
        return "write_batch"
    if "expected_rows" in t and "written_rows" in t:
        return "audit_version"
    if "row_count" in t and "UNION ALL" in t:
        return "count_aggregate_rows"
    if "INSERT INTO" in t and "runtime_events_load_audit" in t:
        return "record_load_audit"
    if "INSERT INTO" in t and "runtime_events_query_costs" in t:
        return "record_query_costs"
    # a run's version of an aggregate is the table <name>_<run token>: the longest name that fits
    for name in sorted((table.name for table in AGGREGATES), key=len, reverse=True):
        if created_table.startswith(name + "_r"):
            return "build " + name
    if "DROP TABLE" in t:
        return "drop_table"
    return "other"


def child_env() -> dict:
    """The environment of every child: bytecode caches on (in a folder of the benchmark's own), as
    in any installed Airflow. Without them (PYTHONDONTWRITEBYTECODE=1 and a source tree without
    __pycache__) every start-up compiles thousands of modules again, which is not what a deployed
    scheduler or DAG processor pays."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(RESULTS / "pycache")
    return env


def airflow_env(home: Path, raw: Path, curated: Path) -> dict:
    from airflow_env import airflow_env as isolated_airflow_env

    return isolated_airflow_env(
        home, {"raw_location": raw, "curated_location": curated, "reject_threshold": "0.5"},
        base=child_env(), bin_dir=Path(PYTHON).parent,
    ) | {"AIRFLOW__CORE__UNIT_TEST_MODE": "False"}


# =============================================================================================
# Children: each runs in its own process and returns a JSON-able dict.
def child_generate(out: str, start: str, days: int, clusters: int, events_per_day: int,
                   files_per_day: int, seed: int, layout: str = "flat") -> dict:
    from runtime_events import simulate

    out_dir = Path(out)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    summary = simulate.generate_alerts(tmp, date.fromisoformat(start), days, clusters=clusters,
                                       events_per_day=events_per_day, files_per_day=files_per_day,
                                       seed=seed, layout=layout)
    seconds = time.perf_counter() - started
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    files = raw_files(out_dir)
    return {"seconds": seconds, "files": len(files), "bytes": sum(f.stat().st_size for f in files),
            "alerts": summary.alerts_written}


def child_pipeline(raw: str, lake: str, day: str) -> dict:
    """The DAG's statements and publish steps for one day, on the embedded engine."""
    from local_pipeline import Pipeline, make_settings

    lake_dir = Path(lake)
    shutil.rmtree(lake_dir, ignore_errors=True)
    lake_dir.mkdir(parents=True)
    pipeline = Pipeline(make_settings(lake_dir, raw_location=raw))
    started = time.perf_counter()
    pipeline.run_day(day)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "statements": query_stats(lake_dir / "curated")}


FLOOR_SQL = """
COPY (
    SELECT
        "container.id" AS container_id, "evt.time" AS evt_time, "k8s.ns.name" AS namespace,
        "k8s.pod.name" AS pod_name, "proc.cmdline" AS cmdline, "proc.pid" AS pid, rule_name,
        description, severity, related_cves, cluster_id,
        CAST(CAST(coalesce(to_timestamp(TRY_CAST("evt.time" AS DOUBLE) / 1e9),
                           TRY_CAST("evt.time" AS TIMESTAMPTZ)) AS DATE) AS VARCHAR) AS dt
    FROM read_json({files}, format = 'newline_delimited', columns = {columns}, ignore_errors = true)
) TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt, cluster_id), OVERWRITE_OR_IGNORE)
"""


def child_floor(raw: str, out: str) -> dict:
    """The floor: DuckDB's own NDJSON reader straight into dt/cluster_id-partitioned Parquet."""
    import duckdb

    shutil.rmtree(out, ignore_errors=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    files = [str(f) for f in raw_files(Path(raw))]
    columns = "{" + ", ".join(f"'{k}': 'VARCHAR'" for k in KEYS) + "}"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    started = time.perf_counter()
    con.execute(FLOOR_SQL.format(files=files, columns=columns, out=out))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "threads": con.execute("SELECT current_setting('threads')").fetchone()[0]}


def child_pandas(raw: str, out: str, dt_from: str, dt_to: str) -> dict:
    """A straightforward pandas + pyarrow script producing the curated partitions."""
    import gzip
    import hashlib
    import re

    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()

    def no_constants(name):
        raise ValueError(name)

    def as_text(value):
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    rows, rejected = [], 0
    for path in raw_files(Path(raw)):
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        source = str(path)
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_constant=no_constants)
            except ValueError:  # not UTF-8 or not JSON
                rejected += 1
                continue
            if not isinstance(obj, dict):
                rejected += 1
                continue
            rows.append([as_text(obj.get(k)) for k in KEYS]
                        + [isinstance(obj.get("cluster_id"), str) and isinstance(obj.get("rule_name"), str),
                           source])
    df = pd.DataFrame(rows, columns=[*KEYS, "strings_ok", "source_file"], dtype=object)
    del rows

    # evt.time: epoch digits (s / ms / us / ns by size) or ISO-8601 with an optional offset
    text = df["evt.time"].str.strip()
    digits = text.str.fullmatch(r"[0-9]+", na=False)
    d = text.where(digits).str.lstrip("0").replace("", "0")
    n = d.str.len()
    ms_text = d.where(n < 15, d.str[:-3]).where(n < 18, d.str[:-6])
    ms = pd.to_numeric(ms_text, errors="coerce")
    ms = ms.where(n >= 12, ms * 1000)
    ms = ms.where((ms >= -62135596800000) & (ms <= 253402300799999))
    epoch_time = pd.to_datetime(ms, unit="ms")
    iso = text.str.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}"
                             r"(\.[0-9]{1,9})?(Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?", na=False)
    iso_time = pd.to_datetime(text.where(iso), format="ISO8601", utc=True, errors="coerce")
    event_time = iso_time.dt.tz_localize(None).dt.floor("ms").fillna(epoch_time)
    df["event_time"] = event_time.astype("datetime64[ms]")
    valid = (df["event_time"].notna() & df["strings_ok"].astype(bool)
             & df["cluster_id"].fillna("").ne("") & df["rule_name"].fillna("").ne(""))
    rejected += int((~valid).sum())
    df = df[valid].reset_index(drop=True)

    df["event_id"] = [
        hashlib.sha256(",".join("-" if v is None else f"{len(v)}:{v}" for v in values).encode()).hexdigest()
        for values in zip(*(df[k].tolist() for k in KEYS))
    ]
    df = df.sort_values("source_file", kind="stable").drop_duplicates("event_id")
    df["dt"] = df["event_time"].values.astype("datetime64[D]").astype(str)
    df = df[(df["dt"] >= dt_from) & (df["dt"] <= dt_to)]

    pid_ok = df["proc.pid"].str.fullmatch(r"[+-]?[0-9]+", na=False)
    pid = pd.to_numeric(df["proc.pid"].where(pid_ok), errors="coerce")
    df["pid"] = pid.where((pid >= -2**31) & (pid <= 2**31 - 1)).astype("Int32")
    df["severity_c"] = df["severity"].str.strip().str.lower().map(SEVERITY).fillna("Unknown")
    cve = re.compile(r"CVE-[0-9]{4}-[0-9]{4,}", re.IGNORECASE | re.ASCII)
    df["related_cves_c"] = [sorted({m.upper() for m in cve.findall(v)}) if v else []
                            for v in df["related_cves"].tolist()]

    schema = pa.schema([
        ("event_id", pa.string()), ("event_time", pa.timestamp("ms")), ("container_id", pa.string()),
        ("namespace", pa.string()), ("pod_name", pa.string()), ("cmdline", pa.string()),
        ("pid", pa.int32()), ("rule_name", pa.string()), ("description", pa.string()),
        ("severity", pa.string()), ("related_cves", pa.list_(pa.string())), ("source_file", pa.string()),
        ("dt", pa.string()), ("cluster_id", pa.string()),
    ])
    curated = pd.DataFrame({
        "event_id": df["event_id"], "event_time": df["event_time"], "container_id": df["container.id"],
        "namespace": df["k8s.ns.name"], "pod_name": df["k8s.pod.name"], "cmdline": df["proc.cmdline"],
        "pid": df["pid"], "rule_name": df["rule_name"], "description": df["description"],
        "severity": df["severity_c"], "related_cves": df["related_cves_c"], "source_file": df["source_file"],
        "dt": df["dt"], "cluster_id": df["cluster_id"],
    })
    table = pa.Table.from_pandas(curated, schema=schema, preserve_index=False)
    pq.write_to_dataset(table, out, partition_cols=["dt", "cluster_id"], compression="zstd")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": table.num_rows, "rejected": rejected}


def child_history(raw: str, lake: str, layout: str, first: str, last: str, repeat: int) -> dict:
    """The history lake: day 1, then every day up to the last (a backfill). Then, alternately, the
    day-1 run on a fresh lake of its own and the last day's run on the history lake, so that a
    change in the machine's load hits both alike: wall time and the stage statement's
    DataScannedInBytes of each run."""
    from local_pipeline import Pipeline, make_settings
    from runtime_events.embedded.metastore import Metastore

    history, fresh = Path(lake) / "history", Path(lake) / "fresh"

    def one(lake_dir: Path, day: str, **overrides: str) -> dict:
        curated = lake_dir / "curated"
        before = {p.name for p in (curated / "_query_results").glob("*.json")} if curated.exists() else set()
        pipeline = Pipeline(make_settings(lake_dir, raw_location=raw, raw_layout=layout, **overrides))
        started = time.perf_counter()
        pipeline.run_day(day)
        seconds = time.perf_counter() - started
        stats = query_stats(curated, since=before)
        stage = [s for s in stats if s["kind"] == "stage_alerts"]
        return {"day": day, "seconds": seconds, "statements": len(stats),
                "stage_ms": stage[0]["ms"] if stage else None,
                "stage_scanned": stage[0]["scanned"] if stage else None,
                "athena": [[s["kind"], s["type"], s["scanned"]] for s in stats]}

    first_day, last_day = date.fromisoformat(first), date.fromisoformat(last)
    shutil.rmtree(history, ignore_errors=True)
    history.mkdir(parents=True)
    backfill = [one(history, first)]
    day = first_day + timedelta(days=1)
    while day < last_day:
        # each day once (lookback_days=0): the same history, at half the cost of the default window
        backfill.append(one(history, day.isoformat(), lookback_days="0"))
        day += timedelta(days=1)
    day1, last_runs = [], []
    for _ in range(repeat):
        shutil.rmtree(fresh, ignore_errors=True)  # nothing loaded before day 1
        fresh.mkdir(parents=True)
        day1.append(one(fresh, first))
        last_runs.append(one(history, last))  # the first is the real day-N run, then reruns of it
    partitions = len(Metastore(history / "curated" / "_catalog").get_table(DATABASE, "runtime_events_parquet").partitions)
    return {"day1": day1, "backfill": backfill[1:], "last": last_runs, "catalog_partitions": partitions}


def child_guide(lake: str, repeat: int) -> dict:
    """The guide's first query on the raw table and its equivalent on daily_rule_counts."""
    from runtime_events.embedded.hook import EmbeddedAthenaHook
    from runtime_events import results

    curated = Path(lake) / "curated"
    hook = EmbeddedAthenaHook(str(curated), log_query=False)
    out = {}
    for name, text in (("raw", GUIDE_QUERY), ("aggregate", AGGREGATE_QUERY)):
        runs = []
        for _ in range(repeat if name == "raw" else max(repeat, 5)):
            started = time.perf_counter()
            query_id = hook.run_query(text, {"Database": DATABASE})
            seconds = time.perf_counter() - started
            if hook.poll_query_status(query_id) != "SUCCEEDED":
                raise RuntimeError(hook.get_state_change_reason(query_id))
            info = hook.get_query_info(query_id)["QueryExecution"]
            runs.append({"seconds": seconds, "scanned": info["Statistics"]["DataScannedInBytes"],
                         "engine_ms": info["Statistics"]["EngineExecutionTimeInMillis"]})
        rows = list(results.iter_rows([hook.get_query_results(query_id, max_results=10**6)]))
        out[name] = {"runs": runs, "rows": [[r["rule_name"], r["severity"], int(r["count_rules"])] for r in rows]}
    return out


def child_parse(dag_file: str) -> dict:
    """DAG parse time beyond importing Airflow: import airflow.sdk, then time the DAG file."""
    import runpy

    started = time.perf_counter()
    import airflow.sdk  # noqa: F401

    airflow_seconds = time.perf_counter() - started
    before = set(sys.modules)
    print("BENCH_PARSE_START", file=sys.stderr, flush=True)
    started = time.perf_counter()
    runpy.run_path(dag_file, run_name="runtime_events_daily_bench")
    seconds = time.perf_counter() - started
    new = sorted(set(sys.modules) - before)
    top: dict[str, int] = {}
    for module in new:
        top[module.split(".")[0]] = top.get(module.split(".")[0], 0) + 1
    return {"seconds": seconds, "airflow_sdk_import_seconds": airflow_seconds, "new_modules": len(new),
            "new_modules_by_package": dict(sorted(top.items(), key=lambda kv: -kv[1]))}


def child_stage_profile(raw: str, lake: str, day: str, out: str) -> dict:
    """DuckDB's profile of the stage statement (the pipeline's most expensive one): CPU seconds
    per operator, after the engine's translation, on the same data."""
    import sqlglot

    from local_pipeline import make_settings
    from runtime_events import planning, sql
    from runtime_events.embedded.engine import EmbeddedEngine, _translate

    lake_dir = Path(lake)
    shutil.rmtree(lake_dir, ignore_errors=True)
    lake_dir.mkdir(parents=True)
    settings = make_settings(lake_dir, raw_location=raw)
    run = planning.plan_window(settings, date.fromisoformat(day))
    engine = EmbeddedEngine(lake_dir / "curated" / "_catalog", lake_dir / "curated")
    for name in ("create_database.sql", "runtime_events_lines/create_table.sql"):
        engine.execute(sql.render(name, sql.sql_params(settings, run, query=name)), DATABASE)
    text = sql.render("runtime_events_parquet/stage_alerts.sql", sql.sql_params(settings, run))
    query = sqlglot.parse_one(text, read="athena").expression.copy()
    with engine._connect() as con:
        started = time.perf_counter()
        engine._bind_tables(con, query, DATABASE)
        bind_seconds = time.perf_counter() - started
        duck = _translate(query).sql(dialect="duckdb")
        con.execute("PRAGMA enable_profiling = 'json'")
        con.execute(f"PRAGMA profiling_output = '{out}'")
        started = time.perf_counter()
        con.execute(f"CREATE TEMP TABLE __result AS {duck}")
        seconds = time.perf_counter() - started
    profile = json.loads(Path(out).read_text())
    operators = []

    def walk(node: dict, depth: int) -> None:
        extra = node.get("extra_info") or {}
        what = extra.get("Projections") or extra.get("Function") or extra.get("Filters") or ""
        if isinstance(what, list):
            what = ", ".join(str(w) for w in what)
        operators.append({"depth": depth, "name": node["name"], "cpu_seconds": node.get("timing", 0.0),
                          "rows": node.get("intermediate_rows"), "what": str(what)[:160]})
        for child in node.get("children", []):
            walk(child, depth + 1)

    for node in profile.get("operator", []):
        walk(node, 0)
    return {"read_lines_seconds": bind_seconds, "query_seconds": seconds,
            "cpu_seconds": profile["query"].get("cpu_time"),
            "peak_buffer_memory": profile.get("system", {}).get("peak_buffer_memory"),
            "operators": operators}


def child_verify(pipeline_lake: str, pandas_out: str, floor_out: str) -> dict:
    return verify_outputs(Path(pipeline_lake), Path(pandas_out), Path(floor_out))


CHILDREN = {
    "generate": child_generate, "pipeline": child_pipeline, "floor": child_floor, "pandas": child_pandas,
    "history": child_history, "guide": child_guide, "parse": child_parse, "stage_profile": child_stage_profile,
    "verify": child_verify,
}


# =============================================================================================
# Parent: spawn children, measure, compare, report.
def spawn(argv: list[str], log_name: str, env: dict | None = None, cwd: Path | None = None,
          watch_tree: bool = False) -> dict:
    """Run argv; wall seconds, peak RSS (bytes, from wait4: the largest process of its tree, as
    Linux's wait4 reports the maximum over the process and the children it waited for), exit
    code, stdout. ``watch_tree`` also samples the summed memory of the process and all its
    descendants every 0.2 s (``tree_rss``: the peak of the sum, :func:`tree_usage`;
    ``tree_processes``: the most processes seen at once)."""
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{log_name}.log", "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env or child_env(), cwd=cwd)
        tree = {"tree_rss": 0, "tree_processes": 0}
        watching = threading.Event()
        if watch_tree:
            def watch() -> None:
                while not watching.wait(0.2):
                    rss, count = tree_usage(proc.pid)
                    tree["tree_rss"], tree["tree_processes"] = max(tree["tree_rss"], rss), max(tree["tree_processes"], count)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
        stdout = proc.stdout.read()
        proc.stdout.close()
        watching.set()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall": wall, "peak_rss": usage.ru_maxrss * 1024, "returncode": proc.returncode,
            "stdout": stdout.decode(errors="replace"), "log": str(logs / f"{log_name}.log"),
            **(tree if watch_tree else {})}


def processes() -> dict[int, tuple[int, int, int]]:
    """Every process now: pid -> (parent pid, start time in clock ticks, RSS in bytes)."""
    found = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        # fields from the third of proc(5): ppid is the 4th, starttime the 22nd, rss the 24th
        found[int(entry.name)] = (int(fields[1]), int(fields[19]), int(fields[21]) * page)
    return found


def descendants(root: int, table: dict[int, tuple[int, int, int]] | None = None) -> dict[int, tuple[int, int, int]]:
    """root and every process below it."""
    table = processes() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in found:
            found[pid] = table[pid]
            todo.extend(children.get(pid, []))
    return found


def tree_usage(root: int) -> tuple[int, int]:
    """The memory of root and its descendants now, and how many processes that is: their summed
    PSS (each shared page split among the processes sharing it, so that forked workers are not
    counted many times over), or their RSS where the kernel gives no PSS."""
    tree = descendants(root)
    total = 0
    for pid, (_, _, rss) in tree.items():
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            total += next(int(l.split()[1]) * 1024 for l in text.splitlines() if l.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            total += rss
    return total, len(tree)


LOAD: list[float] = []


def run_child(name: str, log_name: str | None = None, **params) -> dict:
    load_before = os.getloadavg()[0]
    LOAD.append(load_before)
    done = spawn([PYTHON, str(Path(__file__).resolve()), "--child", name, "--params", json.dumps(params)],
                 log_name or name, cwd=RESULTS)
    if done["returncode"] != 0:
        tail = Path(done["log"]).read_text(errors="replace")[-3000:]
        raise SystemExit(f"child {name} failed ({done['returncode']}); log {done['log']}:\n{tail}")
    line = next(l for l in reversed(done["stdout"].splitlines()) if l.startswith("BENCH_RESULT "))
    result = json.loads(line.removeprefix("BENCH_RESULT "))
    LOAD.append(os.getloadavg()[0])
    return {"process_wall": done["wall"], "peak_rss": done["peak_rss"], "load_before": load_before, **result}


def best(runs: list[dict], key: str = "seconds") -> dict:
    return min(runs, key=lambda r: r[key])


def generate(name: str, **params) -> dict:
    """Generated data, cached under results/data/<name>/ with its parameters."""
    folder = RESULTS / "data" / name
    meta_file = folder.with_name(name + ".json")
    if folder.is_dir() and meta_file.exists():
        meta = json.loads(meta_file.read_text())
        if meta.get("params") == params:
            log(f"data {name}: cached ({meta['files']} files, {meta['bytes'] / MB:.0f} MB)")
            return meta
    log(f"data {name}: generating {params}")
    result = run_child("generate", f"generate-{name}", out=str(folder), **params)
    meta = {"params": params, **{k: result[k] for k in ("files", "bytes", "alerts", "seconds")}}
    meta_file.write_text(json.dumps(meta))
    log(f"data {name}: {meta['files']} files, {meta['bytes'] / MB:.0f} MB in {result['seconds']:.0f} s")
    return meta


def warm_cache(folder: Path) -> None:
    """Read every raw file once so that every contender starts with the same (warm) page cache."""
    for path in raw_files(folder):
        with open(path, "rb") as f:
            while f.read(8 * MB):
                pass


def verify_outputs(pipeline_lake: Path, pandas_out: Path, floor_out: Path) -> dict:
    """The three outputs hold the same alerts: row counts per partition, and the pandas script's
    rows equal the pipeline's (event_id, time, pid, severity, CVEs, source file, partition)."""
    import duckdb

    from runtime_events.embedded.engine import EmbeddedEngine

    engine = EmbeddedEngine(pipeline_lake / "curated" / "_catalog")
    pipe = engine.execute("SELECT * FROM runtime_events_parquet", DATABASE).table
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("pipe", pipe)
    con.execute(f"CREATE VIEW pan AS SELECT * FROM read_parquet('{pandas_out}/**/*.parquet', hive_partitioning = true, "
                "hive_types_autocast = false)")
    con.execute(f"CREATE VIEW flo AS SELECT * FROM read_parquet('{floor_out}/**/*.parquet', hive_partitioning = true, "
                "hive_types_autocast = false)")
    counts = {name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in ("pipe", "pan", "flo")}
    per_partition = {}
    for name in ("pipe", "pan", "flo"):
        per_partition[name] = sorted(con.execute(
            f"SELECT CAST(dt AS VARCHAR), cluster_id, count(*) FROM {name} GROUP BY ALL ORDER BY ALL").fetchall())
    cols = ("event_id, epoch_ms(CAST(event_time AS TIMESTAMP)) AS t, pid, severity, array_to_string(related_cves, ',') AS cves, "
            "rule_name, namespace, pod_name, container_id, cmdline, description, source_file, "
            "CAST(dt AS VARCHAR) AS dt, cluster_id")
    diff = con.execute(f"SELECT (SELECT count(*) FROM (SELECT {cols} FROM pipe EXCEPT ALL SELECT {cols} FROM pan)), "
                       f"(SELECT count(*) FROM (SELECT {cols} FROM pan EXCEPT ALL SELECT {cols} FROM pipe))").fetchone()
    return {"rows": counts, "partitions_equal": per_partition["pipe"] == per_partition["pan"] == per_partition["flo"],
            "partitions": len(per_partition["pipe"]), "pipeline_not_in_pandas": diff[0],
            "pandas_not_in_pipeline": diff[1]}


def one_day(args, day: str, alerts: int, clusters: int, files_per_cluster: int) -> tuple[dict, Path]:
    """A generated day of alerts (cached): its description and its folder."""
    name = f"day-{alerts}-c{clusters}-f{files_per_cluster}-s{args.seed}"
    data = generate(name, start=day, days=1, clusters=clusters, events_per_day=alerts,
                    files_per_day=files_per_cluster, seed=args.seed)
    return data, RESULTS / "data" / name


def scenario_a(args, day: str) -> dict:
    data, raw = one_day(args, day, args.alerts, args.clusters, args.files_per_cluster)
    work = RESULTS / "work"
    warm_cache(raw)
    window_from = (date.fromisoformat(day) - timedelta(days=2)).isoformat()
    out: dict = {"data": data, "floor": [], "pipeline": [], "pandas": []}
    for i in range(args.repeat):
        # interleaved, so that a burst of load from other processes hits every contender alike
        for name in ("floor", "pipeline", "pandas"):
            reps = (max(3, args.repeat) if i == 0 else 0) if name == "floor" else 1
            for _ in range(reps):
                log(f"(a) {name} run {len(out[name]) + 1}")
                if name == "floor":
                    r = run_child("floor", raw=str(raw), out=str(work / "floor"))
                elif name == "pipeline":
                    r = run_child("pipeline", raw=str(raw), lake=str(work / "pipeline"), day=day)
                else:
                    r = run_child("pandas", raw=str(raw), out=str(work / "pandas"), dt_from=window_from, dt_to=day)
                log(f"(a) {name}: {r['seconds']:.1f} s work, {r['process_wall']:.1f} s process, "
                    f"peak {r['peak_rss'] / MB:.0f} MB")
                out[name].append(r)
    log("(a) verifying that the three outputs hold the same alerts")
    # in a child: a million rows read here would stay in this process, and every later child
    # starts with its high-water mark (Linux keeps ru_maxrss across fork and exec)
    out["verify"] = run_child("verify", pipeline_lake=str(work / "pipeline"), pandas_out=str(work / "pandas"),
                              floor_out=str(work / "floor"))
    log(f"(a) verify: {out['verify']}")
    if args.profile:
        log("(a) profiling the stage statement")
        out["stage_profile"] = run_child("stage_profile", raw=str(raw), lake=str(work / "profile"), day=day,
                                         out=str(RESULTS / "stage_profile.json"))
    return out


AIRFLOW = str(Path(PYTHON).parent / "airflow")


def fresh_airflow_home(home: Path) -> Path:
    """An empty Airflow home with a migrated SQLite metadata database (migrated once, then
    copied: a fresh home costs no migration inside the measured runs)."""
    template = RESULTS / "airflow-db-template" / "airflow.db"
    if not template.exists():
        log("airflow: migrating a metadata database once (cached in results/airflow-db-template)")
        shutil.rmtree(template.parent, ignore_errors=True)
        template.parent.mkdir(parents=True)
        env = airflow_env(template.parent, RESULTS / "work" / "none", RESULTS / "work" / "none")
        done = spawn([AIRFLOW, "db", "migrate"], "airflow-db-migrate", env=env, cwd=RESULTS)
        if done["returncode"]:
            shutil.rmtree(template.parent, ignore_errors=True)
            raise SystemExit(f"airflow db migrate failed; see {done['log']}")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy(template, home / "airflow.db")
    return home


def scenario_airflow(args, day: str) -> dict:
    """Airflow's share, apart from the pipeline: `airflow dags test` of a small day minus its
    statements' engine time, and `airflow tasks test` of the trivial plan_run task."""
    work = RESULTS / "work" / "airflow"
    raw = work / "raw"
    shutil.rmtree(work, ignore_errors=True)
    home = fresh_airflow_home(work / "home")
    out: dict = {"dags_test": [], "tasks_test": []}
    days = [(date.fromisoformat(day) + timedelta(days=i)).isoformat() for i in range(args.airflow_repeat)]
    run_child("generate", "generate-airflow", out=str(raw), start=days[0], days=len(days), clusters=3,
              events_per_day=300, files_per_day=2, seed=args.seed)
    env = airflow_env(home, raw, work / "curated-tasks")
    for i in range(max(3, args.repeat) + 1):  # the first fills the bytecode cache, not counted
        done = spawn([AIRFLOW, "tasks", "test", "runtime_events_daily", "plan_run", days[0]],
                     f"airflow-tasks-test-{i}", env=env, cwd=work)
        if done["returncode"]:
            raise SystemExit(f"airflow tasks test failed; see {done['log']}")
        if i:
            out["tasks_test"].append({"wall": done["wall"], "peak_rss": done["peak_rss"]})
        log(f"airflow: tasks test plan_run {done['wall']:.1f} s{'' if i else ' (warm-up)'}")
    for i, d in enumerate(days):
        curated = work / f"curated-{i}"
        env = airflow_env(home, raw, curated)
        log(f"airflow: dags test runtime_events_daily {d}")
        done = spawn([AIRFLOW, "dags", "test", "runtime_events_daily", d],
                     f"airflow-dags-test-{i}", env=env, cwd=work)
        if done["returncode"]:
            raise SystemExit(f"airflow dags test failed; see {done['log']}")
        stats = query_stats(curated)
        engine = sum(s["ms"] for s in stats) / 1000
        out["dags_test"].append({"wall": done["wall"], "peak_rss": done["peak_rss"], "statements": len(stats),
                                 "engine_seconds": engine, "overhead": done["wall"] - engine,
                                 "kinds": [s["kind"] for s in stats],
                                 "athena": [[s["kind"], s["type"], s["scanned"]] for s in stats]})
        log(f"airflow: dags test {done['wall']:.1f} s, {len(stats)} statements, engine {engine:.1f} s")
    return out


DAG_ID = "runtime_events_daily"


def metadata_runs(home: Path) -> list[dict]:
    """The DAG's runs and their task instances, as the metadata database of ``home`` recorded
    them (whatever the DAG's task ids are today)."""
    import sqlite3

    con = sqlite3.connect(home / "airflow.db", timeout=60)
    con.row_factory = sqlite3.Row
    try:
        runs = [dict(r) for r in con.execute(
            "SELECT run_id, run_type, state, queued_at, start_date, end_date FROM dag_run WHERE dag_id = ? ORDER BY id",
            (DAG_ID,))]
        for run in runs:
            run["tasks"] = [dict(r) for r in con.execute(
                "SELECT task_id, map_index, state, try_number, start_date, end_date, duration FROM task_instance "
                "WHERE dag_id = ? AND run_id = ? ORDER BY start_date IS NULL, start_date", (DAG_ID, run["run_id"]))]
    finally:
        con.close()
    return runs


def utc(value: str | None) -> datetime | None:
    """A time of the metadata database (SQLite keeps them as text, in UTC)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace(" ", "T"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def task_totals(tasks: list[dict]) -> dict[str, dict]:
    """Per task id: instances (a mapped task has one per map index), summed duration, states."""
    totals: dict[str, dict] = {}
    for t in tasks:
        row = totals.setdefault(t["task_id"], {"instances": 0, "seconds": 0.0, "states": []})
        row["instances"] += 1
        row["seconds"] += t["duration"] or 0.0
        if t["state"] not in row["states"]:
            row["states"].append(t["state"])
    return totals


def published_layout(curated: Path, table: str = "runtime_events_parquet") -> dict:
    """The published partitions of ``table`` and the Parquet files in each one's folder."""
    from runtime_events.embedded.metastore import Metastore

    info = Metastore(curated / "_catalog").get_table(DATABASE, table)
    files = sorted(len(list(Path(p.location.removeprefix("file://")).glob("*.parquet"))) for p in info.partitions)
    return {"partitions": len(files), "files_min": files[0] if files else 0,
            "files_median": statistics.median(files) if files else 0, "files_max": files[-1] if files else 0,
            "files": sum(files), "days": len({p.values[0] for p in info.partitions})}


def dags_test(log_name: str, raw: Path, day: str, work: Path, watch_tree: bool = False) -> dict:
    """One ``airflow dags test runtime_events_daily <day>`` on a fresh lake and a fresh Airflow
    home: the wall time of the whole CLI process, its memory, the statements its lake recorded
    and the task instances its metadata database recorded."""
    home = fresh_airflow_home(work / "home")  # removes the work of an earlier run first
    shutil.rmtree(work / "curated", ignore_errors=True)
    load_before = os.getloadavg()[0]
    LOAD.append(load_before)
    done = spawn([AIRFLOW, "dags", "test", DAG_ID, day], log_name, env=airflow_env(home, raw, work / "curated"),
                 cwd=work, watch_tree=watch_tree)
    LOAD.append(os.getloadavg()[0])
    runs = metadata_runs(home)
    state = runs[-1]["state"] if runs else "no run"
    if done["returncode"] or state != "success":
        raise SystemExit(f"airflow dags test {day} failed (exit {done['returncode']}, run {state}); see {done['log']}")
    return {"wall": done["wall"], "peak_rss": done["peak_rss"], "tree_rss": done.get("tree_rss"),
            "tree_processes": done.get("tree_processes"), "load_before": load_before,
            "statements": query_stats(work / "curated"), "tasks": runs[-1]["tasks"],
            "published": published_layout(work / "curated")}


def scenario_marginal(args, day: str) -> dict:
    """The issue's measure of the pipeline: the marginal cost of alerts through Airflow,
    T(big day) − T(small day) of whole ``airflow dags test`` processes (same clusters and files
    per cluster, so only the alerts per file differ), against the floor and the pandas script
    on the big day's files."""
    big, big_raw = one_day(args, day, args.alerts, args.clusters, args.files_per_cluster)
    small, small_raw = one_day(args, day, args.marginal_small, args.clusters, args.files_per_cluster)
    work = RESULTS / "work" / "marginal"
    for raw in (big_raw, small_raw):
        warm_cache(raw)
    out: dict = {"data": {"big": big, "small": small}, "floor": [], "pandas": [], "small": [], "big": []}
    for i in range(max(3, args.repeat)):
        log(f"(marginal) floor run {i + 1}")
        out["floor"].append(run_child("floor", "marginal-floor", raw=str(big_raw), out=str(work / "floor")))
        log(f"(marginal) floor: {out['floor'][-1]['seconds']:.2f} s")
    shutil.rmtree(work / "floor", ignore_errors=True)
    log("(marginal) warm-up: one small-day dags test (fills the bytecode cache, not counted)")
    dags_test("marginal-warm-up", small_raw, day, work / "warm-up")
    for i in range(args.repeat):
        # interleaved, so that a burst of load from other processes hits both alike
        for size, raw in (("small", small_raw), ("big", big_raw)):
            log(f"(marginal) dags test of the {out['data'][size]['alerts']:,}-alert day, run {i + 1}")
            r = dags_test(f"marginal-{size}-{i}", raw, day, work / size, watch_tree=size == "big")
            log(f"(marginal) {size}: {r['wall']:.1f} s, peak {r['peak_rss'] / MB:.0f} MB (largest process), "
                f"{(r['tree_rss'] or 0) / MB:.0f} MB (tree, sampled)")
            out[size].append(r)
    window_from = (date.fromisoformat(day) - timedelta(days=2)).isoformat()
    for i in range(args.repeat):
        log(f"(marginal) pandas run {i + 1}")
        out["pandas"].append(run_child("pandas", "marginal-pandas", raw=str(big_raw), out=str(work / "pandas"),
                                       dt_from=window_from, dt_to=day))
        log(f"(marginal) pandas: {out['pandas'][-1]['seconds']:.1f} s")
    shutil.rmtree(work / "pandas", ignore_errors=True)
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_services(services: dict[str, subprocess.Popen]) -> None:
    """Stop what the scheduled run started: SIGTERM to each service's process group, SIGKILL to
    a group still there after 30 s, then the same to any process that was seen below a service
    and is still alive (same pid and start time), wherever its group."""
    table = processes()
    seen: dict[int, tuple[int, int, int]] = {}
    for proc in services.values():
        seen.update(descendants(proc.pid, table))
    for proc in services.values():
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in services.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        now = processes()
        left = [pid for pid, (_, start, _) in seen.items() if pid in now and now[pid][1] == start]
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if left and sig == signal.SIGTERM:
            time.sleep(10)


def wait_until(what: str, ready, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists())
            raise SystemExit(f"{what} did not happen within {timeout:.0f} s\n{tails}")
        time.sleep(0.5)


def scenario_scheduled(args, day: str) -> dict:
    """One run as a deployment runs it: ``airflow api-server`` and ``airflow scheduler`` with the
    LocalExecutor (each task a process of its own), on SQLite as tests/test_backfill.py runs
    them. The DAG is unpaused, one run of a small day is triggered; trigger to success, task
    instances, task time against the statements' engine time. Every process started is
    stopped, whatever happens."""
    import secrets
    import urllib.request

    data, raw = one_day(args, day, args.scheduled_alerts, 3, 2)
    work = RESULTS / "work" / "scheduled"
    home = fresh_airflow_home(work / "home")
    shutil.rmtree(work / "curated", ignore_errors=True)
    port = free_port()
    env = airflow_env(home, raw, work / "curated") | {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        # only the triggered run: no run of the latest interval when the DAG is unpaused
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        # SQLite with several writers (scheduler, api-server, task processes): wait for the lock
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_ENABLED": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "sqlite_settings.CONNECT_ARGS",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")])),
    }
    for argv in (["dags", "reserialize"], ["dags", "unpause", DAG_ID]):
        done = spawn([AIRFLOW, *argv], f"scheduled-{argv[1]}", env=env, cwd=work)
        if done["returncode"]:
            raise SystemExit(f"airflow {' '.join(argv)} failed; see {done['log']}")
    logs = RESULTS / "logs"
    service_logs = [logs / f"scheduled-{name}.log" for name in ("api-server", "scheduler")]
    services: dict[str, subprocess.Popen] = {}
    peak = {"rss": 0, "processes": 0}

    def scheduler_running() -> bool:
        import sqlite3

        con = sqlite3.connect(home / "airflow.db", timeout=60)
        try:
            return con.execute("SELECT count(*) FROM job WHERE job_type = 'SchedulerJob' AND state = 'running'").fetchone()[0] > 0
        finally:
            con.close()

    def api_up() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5):
                return True
        except OSError:
            return False

    def finished() -> bool:
        usage = [tree_usage(p.pid) for p in services.values()]
        peak["rss"] = max(peak["rss"], sum(u[0] for u in usage))
        peak["processes"] = max(peak["processes"], sum(u[1] for u in usage))
        runs = [r for r in metadata_runs(home) if r["run_type"] == "manual"]
        return bool(runs) and runs[-1]["state"] in ("success", "failed")

    try:
        started = time.perf_counter()
        for name, ready, path in (("api-server", api_up, service_logs[0]), ("scheduler", scheduler_running, service_logs[1])):
            with open(path, "wb") as service_log:
                services[name] = subprocess.Popen([AIRFLOW, name], env=env, cwd=work, start_new_session=True,
                                                  stdout=service_log, stderr=subprocess.STDOUT)
            wait_until(f"airflow {name} start-up", ready, 180, service_logs)
        services_seconds = time.perf_counter() - started
        log(f"(scheduled) api-server and scheduler up in {services_seconds:.1f} s; triggering {day}")
        LOAD.append(os.getloadavg()[0])
        started = time.perf_counter()
        done = spawn([AIRFLOW, "dags", "trigger", DAG_ID, "-l", f"{day}T00:00:00+00:00"], "scheduled-trigger",
                     env=env, cwd=work)
        if done["returncode"]:
            raise SystemExit(f"airflow dags trigger failed; see {done['log']}")
        wait_until("the triggered run's end", finished, args.scheduled_timeout, [*service_logs, Path(done["log"])])
        observed = time.perf_counter() - started
        LOAD.append(os.getloadavg()[0])
    finally:
        stop_services(services)
    run = [r for r in metadata_runs(home) if r["run_type"] == "manual"][-1]
    if run["state"] != "success":
        failed = [t["task_id"] for t in run["tasks"] if t["state"] != "success"]
        raise SystemExit(f"the scheduled run ended {run['state']} (tasks not successful: {failed}); "
                         f"see {home / 'logs'} and {service_logs}")
    queued, start, end = utc(run["queued_at"]), utc(run["start_date"]), utc(run["end_date"])
    log(f"(scheduled) run {run['state']}: queued → end {(end - queued).total_seconds():.1f} s, "
        f"{len(run['tasks'])} task instances")
    return {"data": data, "services_seconds": services_seconds, "trigger_command_seconds": done["wall"],
            "trigger_to_observed_success": observed, "queued_to_end": (end - queued).total_seconds(),
            "start_to_end": (end - start).total_seconds(), "tasks": run["tasks"],
            "statements": query_stats(work / "curated"), "peak_tree_rss": peak["rss"],
            "peak_processes": peak["processes"], "published": published_layout(work / "curated")}


def scenario_scale(args, day: str) -> dict:
    """A day of many clusters (default 1,000, one file each) through the embedded pipeline: time,
    memory, write batches, partitions published and files per partition, statements, bytes."""
    data, raw = one_day(args, day, args.scale_alerts, args.scale_clusters, 1)
    warm_cache(raw)
    lake = RESULTS / "work" / "scale"
    runs = []
    for i in range(args.repeat):
        log(f"(scale) pipeline run {i + 1}: {args.scale_alerts:,} alerts over {args.scale_clusters:,} clusters")
        runs.append(run_child("pipeline", "scale-pipeline", raw=str(raw), lake=str(lake), day=day))
        log(f"(scale) {runs[-1]['seconds']:.1f} s, peak {runs[-1]['peak_rss'] / MB:.0f} MB")
    return {"data": data, "runs": runs, "published": published_layout(lake / "curated")}


def scenario_b(args, day1: str) -> dict:
    # Both compared runs get a full window: the lookback days before day 1 and the arrival day
    # after day N exist in the raw layout, so only the size of the history differs between them.
    first = date.fromisoformat(day1)
    start = first - timedelta(days=2)
    total = args.history_days + 3
    name = f"history-{args.history_days}d-{args.history_alerts}-c{args.clusters}-s{args.seed}"
    data = generate(name, start=start.isoformat(), days=total, clusters=args.clusters,
                    events_per_day=args.history_alerts, files_per_day=max(1, args.files_per_cluster // 5),
                    seed=args.seed, layout=args.layout)
    raw = RESULTS / "data" / name
    last = first + timedelta(days=args.history_days - 1)
    log(f"(b) history: day 1 = {first}, day {args.history_days} = {last}, {args.history_days - 2} days of backfill between")
    result = run_child("history", raw=str(raw) + "/", lake=str(RESULTS / "work" / "history"), layout=args.layout,
                       first=first.isoformat(), last=last.isoformat(), repeat=args.repeat_history)
    return {"data": data, **result}


def scenario_c(args) -> dict:
    log("(c) guide query: raw table against daily_rule_counts")
    return run_child("guide", lake=str(RESULTS / "work" / "pipeline"), repeat=args.repeat_guide)


def scenario_d(args) -> dict:
    runs = []
    home = RESULTS / "work" / "parse-home"
    home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(home, RESULTS / "work" / "parse-raw", RESULTS / "work" / "parse-curated")
    for i in range(6):  # the first only fills the bytecode cache and is not counted
        done = spawn([PYTHON, str(Path(__file__).resolve()), "--child", "parse", "--params",
                      json.dumps({"dag_file": str(REPO / "dags" / "runtime_events_daily.py")})],
                     f"parse-{i}", env=env, cwd=home)
        if done["returncode"]:
            raise SystemExit(f"parse child failed; see {done['log']}")
        line = next(l for l in reversed(done["stdout"].splitlines()) if l.startswith("BENCH_RESULT "))
        if i:
            runs.append(json.loads(line.removeprefix("BENCH_RESULT ")))
    # without bytecode caches, as this sandbox runs Python (PYTHONDONTWRITEBYTECODE=1), for reference
    cold_env = {k: v for k, v in env.items() if k != "PYTHONPYCACHEPREFIX"}
    cold_env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = spawn([PYTHON, str(Path(__file__).resolve()), "--child", "parse", "--params",
                  json.dumps({"dag_file": str(REPO / "dags" / "runtime_events_daily.py")})], "parse-cold", env=cold_env, cwd=home)
    line = next(l for l in reversed(done["stdout"].splitlines()) if l.startswith("BENCH_RESULT "))
    cold = json.loads(line.removeprefix("BENCH_RESULT "))
    # one more with -X importtime: what the DAG file imports beyond airflow.sdk, slowest first
    done = spawn([PYTHON, "-X", "importtime", str(Path(__file__).resolve()), "--child", "parse", "--params",
                  json.dumps({"dag_file": str(REPO / "dags" / "runtime_events_daily.py")})],
                 "parse-importtime", env=env, cwd=home)
    lines = Path(done["log"]).read_text(errors="replace").splitlines()
    after = lines[next((i for i, l in enumerate(lines) if "BENCH_PARSE_START" in l), 0):]
    imports = []
    for l in after:
        if l.startswith("import time:") and "|" in l:
            parts = [p.strip() for p in l.removeprefix("import time:").split("|")]
            if parts[0].isdigit():
                imports.append({"self_us": int(parts[0]), "cumulative_us": int(parts[1]), "module": parts[2]})
    top_level = [i for i in imports if not i["module"].startswith(" ")]
    top_level.sort(key=lambda i: -i["cumulative_us"])
    return {"runs": runs, "cold": cold, "slowest_imports": top_level[:12]}


# ---------------------------------------------------------------------------------------------
def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def fmt_b(n: float) -> str:
    for unit, size in (("GB", 1024**3), ("MB", MB), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def verdict(ok: bool, miss: str = "") -> str:
    return "met" if ok else f"**missed**{' (' + miss + ')' if miss else ''}"


BACKFILL_DAYS = 90
BACKFILL_CONCURRENCY = 10  # `airflow backfill create` runs up to 10 runs at once unless told otherwise


def athena_per_run(stmts: list) -> dict:
    """What one run asks of Athena: its statements, the bytes they scanned (DataScannedInBytes
    summed) and what Athena would bill for them (10 MB minimum a query, DDL without a scan free)."""
    from runtime_events.costs import TB, USD_PER_TB, billed_bytes

    triples = [[s["kind"], s.get("type"), s["scanned"]] if isinstance(s, dict) else s for s in stmts]
    billed = sum(billed_bytes(kind_type or ("DDL" if kind.startswith(("create_", "drop_")) else "DML"), scanned)
                 for kind, kind_type, scanned in triples)
    return {"statements": len(triples), "scanned": sum(t[2] for t in triples), "billed": billed,
            "usd": billed / TB * USD_PER_TB}


def athena_cells(stmts: list) -> str:
    per_run = athena_per_run(stmts)
    return (f"| {per_run['statements']} | {fmt_b(per_run['scanned'])} | {fmt_b(per_run['billed'])} | "
            f"${per_run['usd']:.5f} |")


def statements_table(add, stmts: list[dict], seconds: float | None, outside: str) -> None:
    """The statements of one run, in order: kind, engine time, share, DataScannedInBytes."""
    add("| # | statement | engine time | share | DataScannedInBytes |")
    add("|---|---|---|---|---|")
    total = sum(s["ms"] for s in stmts) or 1
    for i, s in enumerate(stmts, 1):
        add(f"| {i} | {s['kind']} | {s['ms'] / 1000:.2f} s | {100 * s['ms'] / total:.0f}% | {fmt_b(s['scanned'])} |")
    add(f"| | **all statements** | **{total / 1000:.1f} s** | | **{fmt_b(sum(s['scanned'] for s in stmts))}** |")
    if seconds is not None:
        add(f"| | {outside} | {seconds - total / 1000:.1f} s | | |")


def tasks_table(add, columns: dict[str, list[dict]]) -> None:
    """Task time per task id (summed over map indexes) of one or more runs, side by side; with
    two runs, the difference and its share of the difference of the sums."""
    totals = {name: task_totals(tasks) for name, tasks in columns.items()}
    names = list(columns)
    order: list[str] = []
    for tasks in columns.values():
        for t in tasks:
            if t["task_id"] not in order:
                order.append(t["task_id"])
    two = len(names) == 2
    header = "| task | instances | " + " | ".join(names) + (" | difference | share of the difference |" if two else " |")
    add(header)
    add("|" + "---|" * (header.count("|") - 1))
    sums = {n: sum(t["seconds"] for t in totals[n].values()) for n in names}
    gap = (sums[names[1]] - sums[names[0]]) if two else 0
    for task_id in order:
        got = [totals[n].get(task_id, {"instances": 0, "seconds": 0.0, "states": []}) for n in names]
        states = sorted({s for g in got for s in g["states"]} - {"success"})
        label = f"{task_id}{' (' + ', '.join(states) + ')' if states else ''}"
        cells = " | ".join(fmt_s(g["seconds"]) for g in got)
        line = f"| {label} | {'/'.join(str(g['instances']) for g in got)} | {cells} |"
        if two:
            diff = got[1]["seconds"] - got[0]["seconds"]
            share = round(100 * diff / gap) if gap else None
            line += (f" {fmt_s(diff) if diff >= 0 else '−' + fmt_s(-diff)} | "
                     f"{'' if share is None else str(share).replace('-', '−') + '%'} |")
        add(line)
    cells = " | ".join(f"**{fmt_s(sums[n])}**" for n in names)
    line = f"| **all task instances** | {'/'.join(str(len(columns[n])) for n in names)} | {cells} |"
    add(line + (f" **{fmt_s(gap)}** | 100% |" if two else ""))


def backfill_estimate(res: dict) -> list[str]:
    """A 90-day backfill, estimated from what was measured: per day, the wall time of one
    scheduled run of a near-empty day (what Airflow costs a run whatever its size) plus the
    engine's time for a day of the size at hand; times 90; divided by the runs that can really
    go at once (Airflow's 10, but no more than the CPUs)."""
    sched, scale, b, marginal = res.get("scheduled"), res.get("scale"), res.get("b"), res.get("marginal")
    if not sched:
        return []
    cpus = os.cpu_count() or 1
    at_once = min(BACKFILL_CONCURRENCY, cpus)
    fixed = sched["queued_to_end"]
    lines = ["## 90-day backfill estimate", "",
             f"Estimated, not measured end to end. Per day: the scheduled run's trigger → success "
             f"({fmt_s(fixed)} for {sched['data']['alerts']:,} alerts: what one run through Airflow costs at "
             f"that size, task processes, scheduling and metadata database included) plus the engine's time for a "
             f"day of the size at hand (for the scheduled run's own size, nothing more). Times {BACKFILL_DAYS}, divided by the runs that really go at "
             f"once: `airflow backfill create` starts up to {BACKFILL_CONCURRENCY}, but this machine has {cpus} CPUs "
             f"and both the engine and the task processes' start-up use them, so at best {at_once}× (one at a "
             "time is the upper bound).", ""]
    lines += ["| day size | engine per day (measured by) | per day with Airflow | "
              f"{BACKFILL_DAYS} days, {at_once} at once | {BACKFILL_DAYS} days, one at a time |", "|---|---|---|---|---|"]
    cases = [(f"{sched['data']['alerts']:,} alerts (scheduled)", 0.0, "included in the scheduled run")]
    if b and b.get("backfill"):
        cases.append((f"{b['data']['params']['events_per_day']:,} alerts (b's history)",
                      statistics.median(x["seconds"] for x in b["backfill"]),
                      "median of (b)'s backfill days, local pipeline, each day once: lookback_days=0"))
    if scale:
        cases.append((f"{scale['data']['alerts']:,} alerts over {scale['published']['partitions']:,} partitions (scale)",
                      best(scale["runs"])["seconds"], "(scale), local pipeline"))
    if marginal:
        big = best(marginal["big"], "wall")
        cases.append((f"{marginal['data']['big']['alerts']:,} alerts (marginal)",
                      sum(s["ms"] for s in big["statements"]) / 1000, "statements of (marginal)'s dags test"))
    for label, engine, how in cases:
        per_day = fixed + engine
        lines.append(f"| {label} | {fmt_s(engine)} ({how}) | {fmt_s(per_day)} | "
                     f"{fmt_min(BACKFILL_DAYS * per_day / at_once)} | {fmt_min(BACKFILL_DAYS * per_day)} |")
    return lines + [""]


def fmt_min(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"


def report(args, res: dict) -> str:
    lines: list[str] = []
    add = lines.append
    rows: list[tuple[str, str, str, str]] = []
    a = res.get("a")
    if a:
        pipe, floor, pandas = best(a["pipeline"]), best(a["floor"]), best(a["pandas"])
        ratio_floor = pipe["seconds"] / floor["seconds"]
        speedup = pandas["seconds"] / pipe["seconds"]
        peak = pipe["peak_rss"]
        n = a["data"]["alerts"]
        rows += [
            (f"(a) pipeline load of one day ({n:,} alerts, {a['data']['files']} files, {fmt_b(a['data']['bytes'])})",
             f"{fmt_s(pipe['seconds'])}, peak {fmt_b(peak)}", "", ""),
            ("(a) floor: DuckDB read_json → partitioned Parquet COPY", f"{fmt_s(floor['seconds'])}, peak {fmt_b(floor['peak_rss'])}", "", ""),
            ("(a) pandas + pyarrow script, same curated partitions", f"{fmt_s(pandas['seconds'])}, peak {fmt_b(pandas['peak_rss'])}", "", ""),
            ("(a) pipeline ÷ floor (wall)", f"{ratio_floor:.1f}×", "≤ 3×",
             verdict(ratio_floor <= 3, f"{ratio_floor / 3:.1f}× over the target")),
            ("(a) pandas ÷ pipeline (wall)", f"{speedup:.2f}×", "≥ 5×",
             verdict(speedup >= 5, f"{5 / speedup:.1f}× short of the target" if speedup > 0 else "")),
            ("(a) pipeline peak memory (RSS)", fmt_b(peak), "< 1.5 GB",
             verdict(peak < 1.5 * 1024**3, f"{peak / (1.5 * 1024**3):.1f}× the target")),
        ]
    af = res.get("airflow")
    if af:
        dt = best(af["dags_test"], "overhead")
        tt = best(af["tasks_test"], "wall")
        rows += [
            ("Airflow start-up, apart: `airflow dags test` of a small day minus its statements' engine time",
             f"{fmt_s(dt['overhead'])} (of {fmt_s(dt['wall'])})", "reported apart", "info"),
            ("Airflow start-up, apart: one task process (`airflow tasks test … plan_run`)", fmt_s(tt["wall"]),
             "reported apart", "info"),
        ]
    m = res.get("marginal")
    if m:
        big, small = best(m["big"], "wall"), best(m["small"], "wall")
        nb, ns = m["data"]["big"]["alerts"], m["data"]["small"]["alerts"]
        marginal = big["wall"] - small["wall"]
        floor, pandas = best(m["floor"]), best(m["pandas"])
        ratio = marginal / floor["seconds"]
        speedup = pandas["seconds"] / marginal if marginal > 0 else float("inf")
        peak = max(max(r["peak_rss"], r.get("tree_rss") or 0) for r in m["big"])
        rows += [
            (f"(marginal) `airflow dags test` of one day, whole CLI process, fresh lake and Airflow home: "
             f"{nb:,} / {ns:,} alerts ({m['data']['big']['files']} files each)",
             f"{fmt_s(big['wall'])} / {fmt_s(small['wall'])}", "", ""),
            (f"(marginal) marginal cost: T({nb:,}) − T({ns:,})", fmt_s(marginal), "", ""),
            ("(marginal) floor: DuckDB read_json → partitioned Parquet COPY of the big day's files",
             fmt_s(floor["seconds"]), "", ""),
            ("(marginal) marginal ÷ floor", f"{ratio:.1f}×", "≤ 3×", verdict(ratio <= 3, f"{ratio / 3:.1f}× over the target")),
            (f"(marginal) pandas + pyarrow script ({fmt_s(pandas['seconds'])}) ÷ marginal", f"{speedup:.2f}×", "≥ 5×",
             verdict(speedup >= 5, f"{5 / speedup:.1f}× short of the target" if speedup > 0 else "")),
            (f"(marginal) peak memory of the `dags test` process tree at {nb:,} alerts", fmt_b(peak), "< 1.5 GB",
             verdict(peak < 1.5 * 1024**3, f"{peak / (1.5 * 1024**3):.1f}× the target")),
        ]
    sc = res.get("scheduled")
    if sc:
        engine = sum(s["ms"] for s in sc["statements"]) / 1000
        durations = sum(t["duration"] or 0 for t in sc["tasks"])
        rows += [
            (f"(scheduled) one run through scheduler + api-server (LocalExecutor), {sc['data']['alerts']:,} alerts: "
             "trigger → success (the run's queued_at → end_date)",
             f"{fmt_s(sc['queued_to_end'])}", "reported", "info"),
            ("(scheduled) task instances; their durations summed vs the statements' engine time",
             f"{len(sc['tasks'])}; {fmt_s(durations)} vs {fmt_s(engine)}", "reported", "info"),
        ]
    sl = res.get("scale")
    if sl:
        r, pub = best(sl["runs"]), sl["published"]
        batches = sum(1 for s in r["statements"] if s["kind"] == "write_batch")
        rows += [
            (f"(scale) one day of {sl['data']['alerts']:,} alerts over {pub['partitions']:,} clusters "
             f"({sl['data']['files']:,} files), local pipeline", f"{fmt_s(r['seconds'])}, peak {fmt_b(r['peak_rss'])}",
             "reported", "info"),
            ("(scale) write batches; partitions published; Parquet files per partition (min / median / max)",
             f"{batches}; {pub['partitions']:,}; {pub['files_min']} / {pub['files_median']:g} / {pub['files_max']}",
             "reported", "info"),
        ]
        if sc:
            per_day = sc["queued_to_end"] + r["seconds"]
            at_once = min(BACKFILL_CONCURRENCY, os.cpu_count() or 1)
            rows.append((f"(scale) {BACKFILL_DAYS}-day backfill of such days, estimated ({fmt_s(per_day)} a day: the "
                         f"scheduled run plus this day's engine time; {at_once} at once – one at a time; see below)",
                         f"{fmt_min(BACKFILL_DAYS * per_day / at_once)} – {fmt_min(BACKFILL_DAYS * per_day)}",
                         "reported", "info"))
    b = res.get("b")
    if b:
        d1, dn = best(b["day1"]), best(b["last"])
        rt = dn["seconds"] / d1["seconds"]
        rb = dn["stage_scanned"] / d1["stage_scanned"]
        rows += [
            (f"(b) day-{args.history_days} run ÷ day-1 run, wall ({fmt_s(dn['seconds'])} vs {fmt_s(d1['seconds'])})",
             f"{rt:.2f}×", "≤ 1.3×", verdict(rt <= 1.3, f"{rt / 1.3:.2f}× the target")),
            (f"(b) day-{args.history_days} ÷ day-1, stage bytes read ({fmt_b(dn['stage_scanned'])} vs {fmt_b(d1['stage_scanned'])})",
             f"{rb:.2f}×", "≤ 1.3×", verdict(rb <= 1.3, f"{rb / 1.3:.2f}× the target")),
        ]
    c = res.get("c")
    if c:
        raw, agg = best(c["raw"]["runs"]), best(c["aggregate"]["runs"])
        fewer = raw["scanned"] / max(agg["scanned"], 1)
        rows += [
            (f"(c) guide query: raw table ({fmt_b(raw['scanned'])}, {fmt_s(raw['seconds'])}) vs daily_rule_counts "
             f"({fmt_b(agg['scanned'])}, {fmt_s(agg['seconds'])}): bytes read", f"{fewer:,.0f}× fewer", "≥ 1000× fewer",
             verdict(fewer >= 1000, f"{1000 / fewer:.1f}× short")),
            ("(c) … time", f"{raw['seconds'] / agg['seconds']:.0f}× faster", "", "info"),
            ("(c) … same answer (raw severities mapped to the canonical ones daily_rule_counts holds)",
             "equal" if c["equal"] else "**different**", "equal", verdict(c["equal"])),
        ]
    d = res.get("d")
    if d:
        parse = min(r["seconds"] for r in d["runs"])
        rows.append(("(d) DAG parse time beyond importing airflow.sdk (best of 5, bytecode cached; "
                     f"without the cache, as this sandbox runs Python: {fmt_s(d['cold']['seconds'])})", fmt_s(parse), "< 0.5 s",
                     verdict(parse < 0.5, f"{parse / 0.5:.1f}× the target")))
    if af:
        rows.append(("(d) Athena statements a daily run sends (`_query_results/*.json` of one `airflow dags test`)",
                     str(af["dags_test"][0]["statements"]), "", "info"))
    elif a:
        rows.append(("(d) Athena statements of one run (local pipeline, no record_query_costs)",
                     str(len(best(a["pipeline"])["statements"])), "", "info"))

    add(f"# Benchmark results{' (quick smoke size)' if args.quick else ''}")
    add("")
    add(f"`{res['command']}` — {res['date']}, commit {res.get('code', '?')}; machine: {res['machine']}.")
    if res.get("reused"):
        add(f"Parts {', '.join(res['reused'])} were measured in an earlier run of {next(iter(res['reused'].values()))} "
            "(`--resume`) and are reported from it.")
    if res.get("load"):
        add(f"1-minute load average seen around the runs: {res['load'][0]:.1f} – {res['load'][1]:.1f} on {os.cpu_count()} CPUs "
            "(other work shared the machine).")
    add("Times are the best of the runs made (the machine is shared, so they are noisy); a")
    add("contender's time is its work inside its own process, imports excluded; its peak memory is the")
    add("whole process's maximum RSS.")
    add("")
    add("| Measure | Measured | Target | Result |")
    add("|---|---|---|---|")
    for r in rows:
        add("| " + " | ".join(r) + " |")
    add("")
    athena = []
    if a:
        athena.append(("(a)", "pipeline, one day (local harness: no record_query_costs)", best(a["pipeline"])["statements"]))
    if af and "athena" in af["dags_test"][0]:
        athena.append(("airflow", "`airflow dags test` of a small day", af["dags_test"][0]["athena"]))
    if m:
        athena.append(("marginal", f"`airflow dags test`, {m['data']['big']['alerts']:,} alerts", best(m["big"], "wall")["statements"]))
        athena.append(("marginal", f"`airflow dags test`, {m['data']['small']['alerts']:,} alerts", best(m["small"], "wall")["statements"]))
    if sc:
        athena.append(("scheduled", f"scheduled run, {sc['data']['alerts']:,} alerts", sc["statements"]))
    if sl:
        athena.append(("scale", f"pipeline, {sl['data']['alerts']:,} alerts over {sl['published']['partitions']:,} "
                       "partitions (local harness)", best(sl["runs"])["statements"]))
    if b and "athena" in b["day1"][0]:
        athena.append(("(b)", "day 1 (fresh lake)", best(b["day1"])["athena"]))
        athena.append(("(b)", f"day {args.history_days} (after the history)", best(b["last"])["athena"]))
    if c:
        athena.append(("(c)", "the guide's query on the raw table", [["query", "DML", best(c["raw"]["runs"])["scanned"]]]))
        athena.append(("(c)", "the same answer from daily_rule_counts", [["query", "DML", best(c["aggregate"]["runs"])["scanned"]]]))
    if d:
        athena.append(("(d)", "parsing the DAG file", []))
    if athena:
        add("## Athena per run")
        add("")
        add("What each part's run would send to Athena: statements, DataScannedInBytes summed (the embedded engine's "
            "imitation, `_query_results/*.json`), what Athena bills (each query rounded up to the MB, 10 MB minimum, "
            "DDL without a scan free) and that at $5 per TB.")
        add("")
        add("| part | run | statements | scanned | billed | cost |")
        add("|---|---|---|---|---|---|")
        for part_name, label, stmts in athena:
            add(f"| {part_name} | {label} " + athena_cells(stmts))
        add("")
    if a:
        add("## (a) Contenders")
        add("")
        add("| Contender | work time (each run) | process wall | peak RSS |")
        add("|---|---|---|---|")
        for name in ("floor", "pipeline", "pandas"):
            runs = a[name]
            add(f"| {name} | {', '.join(fmt_s(r['seconds']) for r in runs)} | "
                f"{fmt_s(best(runs)['process_wall'])} | {fmt_b(max(r['peak_rss'] for r in runs))} |")
        v = a["verify"]
        add("")
        add(f"Same output: rows {v['rows']['pipe']:,} (pipeline), {v['rows']['pan']:,} (pandas), {v['rows']['flo']:,} (floor); "
            f"{v['partitions']} dt/cluster_id partitions, per-partition counts equal: {v['partitions_equal']}; "
            f"pipeline rows missing from pandas: {v['pipeline_not_in_pandas']}, pandas rows missing from pipeline: "
            f"{v['pandas_not_in_pipeline']}.")
        add("")
        add("Pipeline statements (best pipeline run; engine time from `_query_results/*.json`):")
        add("")
        statements_table(add, best(a["pipeline"])["statements"], best(a["pipeline"])["seconds"],
                         "outside statements (publish, clean-up, Python)")
        add("")
        if a.get("stage_profile"):
            sp = a["stage_profile"]
            add(f"Stage statement profile (DuckDB, CPU seconds summed over threads; {fmt_s(sp['query_seconds'])} wall, "
                f"{sp['cpu_seconds']:.0f} s CPU, tables bound in {fmt_s(sp['read_lines_seconds'])} (the raw lines "
                f"stream into the query, read on Python threads), "
                f"peak buffer memory {fmt_b(sp['peak_buffer_memory'] or 0)}):")
            add("")
            add("| operator | CPU s | computes |")
            add("|---|---|---|")
            for op in sorted(sp["operators"], key=lambda o: -o["cpu_seconds"])[:8]:
                add(f"| {op['name']} | {op['cpu_seconds']:.1f} | {op['what'][:120].replace('|', '/')} |")
            add("")
    if af:
        dt = af["dags_test"][0]
        add("## Airflow")
        add("")
        add(f"`airflow dags test` of a small day (300 alerts over 3 clusters): {fmt_s(dt['wall'])} wall, statements' engine "
            f"time {fmt_s(dt['engine_seconds'])}, so {fmt_s(dt['overhead'])} is Airflow (CLI start, DAG parse, task "
            f"execution, XCom). One task process (`airflow tasks test`): "
            f"{', '.join(fmt_s(r['wall']) for r in af['tasks_test'])}. Statements per daily run: {dt['statements']} "
            f"({', '.join(sorted(set(dt['kinds'])))}).")
        add("")
    if m:
        big, small = best(m["big"], "wall"), best(m["small"], "wall")
        nb, ns = m["data"]["big"]["alerts"], m["data"]["small"]["alerts"]
        add("## Marginal cost through Airflow")
        add("")
        add(f"`airflow dags test runtime_events_daily` of a {nb:,}-alert day and of a {ns:,}-alert day of the same "
            f"shape ({m['data']['big']['files']} files, {fmt_b(m['data']['big']['bytes'])} and "
            f"{fmt_b(m['data']['small']['bytes'])}), each on a fresh lake and a fresh Airflow home (a copy of a "
            "migrated SQLite metadata database), run alternately after one uncounted warm-up; the time is the whole "
            "CLI process's wall time, the best run counts. Memory: the largest process of the tree (wait4's "
            "ru_maxrss) and the summed memory (PSS) of the process and its descendants (sampled every 0.2 s, "
            f"processes seen at once: at most {max(r.get('tree_processes') or 0 for r in m['big'])}).")
        add("")
        add("| run | wall (each) | largest process | tree, sampled | statements' engine time | task instances |")
        add("|---|---|---|---|---|---|")
        for size, n in (("small", ns), ("big", nb)):
            runs = m[size]
            r = best(runs, "wall")
            add(f"| {n:,} alerts | {', '.join(fmt_s(x['wall']) for x in runs)} | {fmt_b(max(x['peak_rss'] for x in runs))} | "
                f"{fmt_b(max(x.get('tree_rss') or 0 for x in runs)) if size == 'big' else ''} | "
                f"{fmt_s(sum(s['ms'] for s in r['statements']) / 1000)} | {len(r['tasks'])} |")
        add(f"| floor | {', '.join(fmt_s(x['seconds']) for x in m['floor'])} | {fmt_b(max(x['peak_rss'] for x in m['floor']))} | | | |")
        add(f"| pandas | {', '.join(fmt_s(x['seconds']) for x in m['pandas'])} | {fmt_b(max(x['peak_rss'] for x in m['pandas']))} | | | |")
        add("")
        add("Where the marginal goes: task time per task (Airflow's metadata database, durations summed over "
            "map indexes) of the best run of each size; the wall time outside task instances is the CLI's start, "
            f"the DAG's parse and the run's bookkeeping ({fmt_s(small['wall'] - sum(t['duration'] or 0 for t in small['tasks']))} "
            f"and {fmt_s(big['wall'] - sum(t['duration'] or 0 for t in big['tasks']))}).")
        add("")
        tasks_table(add, {f"{ns:,} alerts": small["tasks"], f"{nb:,} alerts": big["tasks"]})
        add("")
        add(f"Statements of the {nb:,}-alert run (engine time from `_query_results/*.json`):")
        add("")
        statements_table(add, big["statements"], None, "")
        add("")
    if sc:
        engine = sum(s["ms"] for s in sc["statements"]) / 1000
        durations = sum(t["duration"] or 0 for t in sc["tasks"])
        add("## Scheduled run")
        add("")
        add(f"`airflow api-server` and `airflow scheduler` (LocalExecutor, SQLite metadata database; the DAG "
            f"reserialized and unpaused first; up in {fmt_s(sc['services_seconds'])}), then `airflow dags trigger` of "
            f"one day of {sc['data']['alerts']:,} alerts: the run's queued_at → end_date {fmt_s(sc['queued_to_end'])} "
            f"(start_date → end_date {fmt_s(sc['start_to_end'])}); from starting the trigger command to seeing the "
            f"success {fmt_s(sc['trigger_to_observed_success'])} (the command alone {fmt_s(sc['trigger_command_seconds'])}). "
            f"{len(sc['tasks'])} task instances, their durations summed {fmt_s(durations)} against "
            f"{fmt_s(engine)} of the statements' engine time: each task is a process of its own "
            f"(peak {sc['peak_processes']} processes, summed PSS {fmt_b(sc['peak_tree_rss'])}, sampled every 0.5 s).")
        add("")
        tasks_table(add, {"scheduled run": sc["tasks"]})
        add("")
    if sl:
        r, pub = best(sl["runs"]), sl["published"]
        batches = sum(1 for s in r["statements"] if s["kind"] == "write_batch")
        add("## Scale")
        add("")
        add(f"One day of {sl['data']['alerts']:,} alerts over {pub['partitions']:,} clusters, one file each "
            f"({fmt_b(sl['data']['bytes'])}), through the pipeline on the embedded engine "
            f"(`tests/local_pipeline.Pipeline.run_day`): {', '.join(fmt_s(x['seconds']) for x in sl['runs'])} "
            f"(process {fmt_s(r['process_wall'])}), peak RSS {fmt_b(max(x['peak_rss'] for x in sl['runs']))}. "
            f"{batches} write batches (Athena writes at most 100 partitions a statement); {pub['partitions']:,} "
            f"partitions published in one catalogue change, {pub['files']:,} Parquet files, "
            f"{pub['files_min']} / {pub['files_median']:g} / {pub['files_max']} per partition (min / median / max). "
            f"On Glue that publish is {-(-pub['partitions'] // 100)} BatchCreatePartition call(s) of at most 100 "
            "partitions (a rebuild: as many BatchUpdatePartition calls).")
        add("")
        statements_table(add, r["statements"], r["seconds"], "outside statements (publish, clean-up, Python)")
        add("")
    lines.extend(backfill_estimate(res))
    if b:
        add("## (b) History")
        add("")
        bd = b["data"]
        add(f"Raw layout `{args.layout}`: {bd['alerts']:,} alerts, {bd['files']} files, {fmt_b(bd['bytes'])} over "
            f"{args.history_days + 3} arrival days (day 1 − 2 … day {args.history_days} + 1, so that the day-1 and the "
            f"day-{args.history_days} runs both have their full window: lookback days and the next arrival day). "
            f"The history lake gets day 1, then days 2 … {args.history_days - 1} in order (a backfill, each day once: "
            f"lookback_days=0). Then, alternately, day 1 runs on a fresh lake of its own and day "
            f"{args.history_days} on the history lake "
            f"({b.get('catalog_partitions') or '?'} curated partitions in the catalogue).")
        add("")
        add("| run | wall (each) | stage engine time | stage bytes read | statements |")
        add("|---|---|---|---|---|")
        for label, runs in (("day 1", b["day1"]), (f"day {args.history_days}", b["last"])):
            r = best(runs)
            add(f"| {label} | {', '.join(fmt_s(x['seconds']) for x in runs)} | {r['stage_ms'] / 1000:.2f} s | "
                f"{fmt_b(r['stage_scanned'])} | {r['statements']} |")
        if b["backfill"]:
            k = min(10, len(b["backfill"]))
            first = statistics.median(x["seconds"] for x in b["backfill"][:k])
            last = statistics.median(x["seconds"] for x in b["backfill"][-k:])
            add(f"| backfill, median of first {k} / last {k} | {fmt_s(first)} / {fmt_s(last)} | | | |")
        add("")
    if c:
        add("## (c) Guide query")
        add("")
        add(f"Raw: `{GUIDE_QUERY}`  ")
        add(f"Aggregate: `{AGGREGATE_QUERY}`")
        add("")
        add(f"Raw runs: {', '.join(fmt_s(r['seconds']) for r in c['raw']['runs'])}; aggregate runs: "
            f"{', '.join(fmt_s(r['seconds']) for r in c['aggregate']['runs'])}. {len(c['aggregate']['rows'])} "
            f"(rule, severity) rows.")
        add("")
    if d:
        add("## (d) DAG parse")
        add("")
        parse_runs = ", ".join(f"{r['seconds']:.3f} s" for r in d["runs"])
        add(f"Runs: {parse_runs} (importing airflow.sdk first took "
            f"{min(r['airflow_sdk_import_seconds'] for r in d['runs']):.2f} s, not counted). Modules the DAG file "
            f"imported beyond airflow.sdk: {d['runs'][0]['new_modules']}, by package: "
            + ", ".join(f"{k} {v}" for k, v in list(d["runs"][0]["new_modules_by_package"].items())[:8]) + ".")
        add("")
        add("Slowest imports the DAG file triggers (`-X importtime`, cumulative):")
        add("")
        add("| module | cumulative |")
        add("|---|---|")
        for i in d["slowest_imports"][:8]:
            add(f"| `{i['module']}` | {i['cumulative_us'] / 1000:.0f} ms |")
        add("")
    return "\n".join(lines)


def code_version() -> str:
    """The commit measured, and whether the code it runs (not the benchmark's own files) differs."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "plugins", "include", "dags", "tests"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"
    return head + (" with uncommitted changes in plugins/include/dags/tests" if dirty else "")


def machine() -> str:
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024**2:.1f} GB RAM"
    except OSError:
        pass
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import duckdb
    import pandas
    import pyarrow

    return (f"{os.cpu_count()} CPUs ({cpu or platform.processor()}), {mem}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, DuckDB {duckdb.__version__}, pandas {pandas.__version__}, "
            f"pyarrow {pyarrow.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke size: 20k alerts, 10-day history, 1 repeat")
    parser.add_argument("--alerts", type=int, help="alerts in the one-day load (default 1,000,000)")
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--files-per-cluster", type=int, default=10, help="files per cluster and day (20 × 10 = 200)")
    parser.add_argument("--history-days", type=int, help="days of history for (b) (default 90)")
    parser.add_argument("--history-alerts", type=int, help="alerts per history day (default 20,000)")
    parser.add_argument("--layout", default="{yyyy}/{MM}/{dd}/", help="raw_layout of the history")
    parser.add_argument("--repeat", type=int, help="runs of each (a) contender; the best is reported (floor: at least 3)")
    parser.add_argument("--repeat-history", type=int, help="runs of day 1 and of day N in (b)")
    parser.add_argument("--repeat-guide", type=int, help="runs of the raw guide query in (c)")
    parser.add_argument("--airflow-repeat", type=int, default=1, help="`airflow dags test` runs")
    parser.add_argument("--marginal-small", type=int,
                        help="alerts of the small day of (marginal), same clusters and files (default 10,000)")
    parser.add_argument("--scheduled-alerts", type=int, default=300, help="alerts of the day (scheduled) triggers")
    parser.add_argument("--scheduled-timeout", type=float, default=1800,
                        help="seconds to wait for the scheduled run to end")
    parser.add_argument("--scale-clusters", type=int, help="clusters of the (scale) day (default 1,000)")
    parser.add_argument("--scale-alerts", type=int, help="alerts of the (scale) day (default 200,000)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts to run: {', '.join(PARTS)}")
    parser.add_argument("--profile", action="store_true", help="also profile the stage statement in DuckDB (a)")
    parser.add_argument("--seed", type=int, default=20261120)
    parser.add_argument("--resume", help="a results/run-*.json of an earlier run: its finished parts are reused")
    parser.add_argument("--redo", default="", help="with --resume: parts to measure again all the same (e.g. b,d)")
    parser.add_argument("--output", help="Markdown file (default benchmarks/RESULTS.md; --quick: results/quick.md)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = CHILDREN[args.child](**json.loads(args.params or "{}"))
        print("BENCH_RESULT " + json.dumps(result), flush=True)
        return
    # a SIGTERM ends the run like Ctrl-C: the finally blocks stop what the parts started
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    quick = args.quick
    args.alerts = args.alerts or (20_000 if quick else 1_000_000)
    args.history_days = args.history_days or (10 if quick else 90)
    args.history_alerts = args.history_alerts or (2_000 if quick else 20_000)
    args.repeat = 1 if args.repeat is None else args.repeat
    args.repeat_history = (2 if quick else 3) if args.repeat_history is None else args.repeat_history
    args.repeat_guide = 2 if args.repeat_guide is None else args.repeat_guide
    args.marginal_small = args.marginal_small or (2_000 if quick else 10_000)
    args.scale_clusters = args.scale_clusters or (150 if quick else 1_000)  # quick: still two write batches
    args.scale_alerts = args.scale_alerts or (20_000 if quick else 200_000)
    if args.history_days < 2:
        parser.error("--history-days must be at least 2")
    for name in ("repeat", "repeat_history", "repeat_guide", "airflow_repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    redo = {k for k in args.redo.split(",") if k}
    if redo and not args.resume:
        parser.error("--redo needs --resume")
    if redo - set(PARTS):
        parser.error(f"--redo: unknown parts {', '.join(sorted(redo - set(PARTS)))} (parts: {', '.join(PARTS)})")
    if args.resume and not Path(args.resume).is_file():
        parser.error(f"--resume: no such file {args.resume}")
    output = Path(args.output) if args.output else (RESULTS / "quick.md" if quick else BENCH / "RESULTS.md")
    parts = set(args.only.split(","))
    if parts - set(PARTS):
        parser.error(f"--only: unknown parts {', '.join(sorted(parts - set(PARTS)))} (parts: {', '.join(PARTS)})")
    if args.marginal_small >= args.alerts:
        parser.error("--marginal-small must be fewer alerts than --alerts")
    if "c" in parts and "a" not in parts and not (RESULTS / "work" / "pipeline" / "curated").exists():
        parser.error("(c) queries the lake of (a): run with a, or run (a) once first")
    RESULTS.mkdir(parents=True, exist_ok=True)

    day = "2026-11-20"
    history_day1 = "2026-06-01"
    res: dict = {"command": " ".join([".venv/bin/python", "benchmarks/run.py", *sys.argv[1:]]), "code": code_version(),
                 "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine()}
    started = time.perf_counter()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    raw_json = RESULTS / f"run-{stamp}{'-quick' if quick else ''}.json"
    done_before = json.loads(Path(args.resume).read_text()) if args.resume else {}
    if done_before and done_before.get("quick", "-quick" in Path(args.resume).name) != quick:
        parser.error(f"--resume: {args.resume} is a {'quick' if not quick else 'full-size'} run; "
                     f"this one is {'quick' if quick else 'full-size'}")
    for key in redo:
        done_before.pop(key, None)
    res["quick"] = quick
    reused = {k: done_before.get("date") for k in PARTS if k in done_before and k in parts}
    if reused:
        res["reused"] = reused

    def part(key: str, compute) -> None:
        if key in done_before:
            log(f"({key}) reused from {args.resume}")
            res[key] = done_before[key]
        else:
            res[key] = compute()
        raw_json.write_text(json.dumps(res, indent=1, default=str))  # a later failure keeps this part

    if "a" in parts:
        part("a", lambda: scenario_a(args, day))
    if "airflow" in parts:
        part("airflow", lambda: scenario_airflow(args, day))
    if "marginal" in parts:
        part("marginal", lambda: scenario_marginal(args, day))
    if "scheduled" in parts:
        part("scheduled", lambda: scenario_scheduled(args, day))
    if "scale" in parts:
        part("scale", lambda: scenario_scale(args, day))
    if "c" in parts:
        part("c", lambda: scenario_c(args))
        mapped: dict = {}
        for rule, severity, count in res["c"]["raw"]["rows"]:
            key = (rule, SEVERITY.get((severity or "").strip().lower(), "Unknown"))
            mapped[key] = mapped.get(key, 0) + count
        agg = {(rule, severity): count for rule, severity, count in res["c"]["aggregate"]["rows"]}
        res["c"]["equal"] = mapped == agg
        log(f"(c) answers equal: {res['c']['equal']}")
    if "b" in parts:
        part("b", lambda: scenario_b(args, history_day1))
    if "d" in parts:
        log("(d) DAG parse time")
        part("d", lambda: scenario_d(args))
    res["total_seconds"] = time.perf_counter() - started
    res["load"] = [min(LOAD), max(LOAD)] if LOAD else None

    raw_json.write_text(json.dumps(res, indent=1, default=str))
    text = report(args, res)
    kept = ""
    if output.exists():
        old = output.read_text()
        if MARKER in old:
            kept = old[old.index(MARKER):]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + ("\n" + kept if kept else "\n"))
    print(text)
    log(f"written {output} (raw numbers: results/run-{stamp}{'-quick' if quick else ''}.json); "
        f"total {res['total_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
