#!/usr/bin/env python
"""Fast and cheap at scale: the project's benchmark (issue #5).

    .venv/bin/python benchmarks/run.py            # full size: 1M alerts, 90-day history (~30 min)
    .venv/bin/python benchmarks/run.py --quick    # smoke size (~2 min), writes benchmarks/results/quick.md

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
import shutil
import statistics
import subprocess
import sys
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
            "first_line": (body[0].strip() if body else "")[:100],
        })
    rows.sort(key=lambda r: r["submitted"])
    return rows


def statement_kind(text: str) -> str:
    """A short name for a statement of the DAG, from its text."""
    t = " ".join(text.split())
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
    for name in ("daily_rule_counts", "daily_severity_counts", "daily_workload_counts", "daily_cve_counts"):
        if f".{name}_r" in t and "CREATE TABLE" in t:
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
                "stage_scanned": stage[0]["scanned"] if stage else None}

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


CHILDREN = {
    "generate": child_generate, "pipeline": child_pipeline, "floor": child_floor, "pandas": child_pandas,
    "history": child_history, "guide": child_guide, "parse": child_parse, "stage_profile": child_stage_profile,
}


# =============================================================================================
# Parent: spawn children, measure, compare, report.
def spawn(argv: list[str], log_name: str, env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run argv; wall seconds, peak RSS (bytes, from wait4), exit code, stdout."""
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{log_name}.log", "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env or child_env(), cwd=cwd)
        stdout = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall": wall, "peak_rss": usage.ru_maxrss * 1024, "returncode": proc.returncode,
            "stdout": stdout.decode(errors="replace"), "log": str(logs / f"{log_name}.log")}


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


def scenario_a(args, day: str) -> dict:
    data = generate(f"day-{args.alerts}-c{args.clusters}-f{args.files_per_cluster}-s{args.seed}",
                    start=day, days=1, clusters=args.clusters, events_per_day=args.alerts,
                    files_per_day=args.files_per_cluster, seed=args.seed)
    raw = RESULTS / "data" / f"day-{args.alerts}-c{args.clusters}-f{args.files_per_cluster}-s{args.seed}"
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
    out["verify"] = verify_outputs(work / "pipeline", work / "pandas", work / "floor")
    log(f"(a) verify: {out['verify']}")
    if args.profile:
        log("(a) profiling the stage statement")
        out["stage_profile"] = run_child("stage_profile", raw=str(raw), lake=str(work / "profile"), day=day,
                                         out=str(RESULTS / "stage_profile.json"))
    return out


def scenario_airflow(args, day: str) -> dict:
    """Airflow's share, apart from the pipeline: `airflow dags test` of a small day minus its
    statements' engine time, and `airflow tasks test` of the trivial plan_run task."""
    work = RESULTS / "work" / "airflow"
    home = work / "home"
    template = RESULTS / "airflow-db-template" / "airflow.db"
    raw = work / "raw"
    if not template.exists():
        log("airflow: migrating a metadata database once (cached in results/airflow-db-template)")
        shutil.rmtree(template.parent, ignore_errors=True)
        template.parent.mkdir(parents=True)
        env = airflow_env(template.parent, raw, work / "curated")
        done = spawn([str(Path(PYTHON).parent / "airflow"), "db", "migrate"], "airflow-db-migrate", env=env, cwd=work.parent)
        if done["returncode"]:
            raise SystemExit(f"airflow db migrate failed; see {done['log']}")
    shutil.rmtree(work, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy(template, home / "airflow.db")
    out: dict = {"dags_test": [], "tasks_test": []}
    days = [(date.fromisoformat(day) + timedelta(days=i)).isoformat() for i in range(args.airflow_repeat)]
    run_child("generate", "generate-airflow", out=str(raw), start=days[0], days=len(days), clusters=3,
              events_per_day=300, files_per_day=2, seed=args.seed)
    env = airflow_env(home, raw, work / "curated-tasks")
    for i in range(max(3, args.repeat) + 1):  # the first fills the bytecode cache, not counted
        done = spawn([str(Path(PYTHON).parent / "airflow"), "tasks", "test", "runtime_events_daily", "plan_run", days[0]],
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
        done = spawn([str(Path(PYTHON).parent / "airflow"), "dags", "test", "runtime_events_daily", d],
                     f"airflow-dags-test-{i}", env=env, cwd=work)
        if done["returncode"]:
            raise SystemExit(f"airflow dags test failed; see {done['log']}")
        stats = query_stats(curated)
        engine = sum(s["ms"] for s in stats) / 1000
        out["dags_test"].append({"wall": done["wall"], "peak_rss": done["peak_rss"], "statements": len(stats),
                                 "engine_seconds": engine, "overhead": done["wall"] - engine,
                                 "kinds": [s["kind"] for s in stats]})
        log(f"airflow: dags test {done['wall']:.1f} s, {len(stats)} statements, engine {engine:.1f} s")
    return out


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
        add("| # | statement | engine time | share | DataScannedInBytes |")
        add("|---|---|---|---|---|")
        stmts = best(a["pipeline"])["statements"]
        total = sum(s["ms"] for s in stmts) or 1
        for i, s in enumerate(stmts, 1):
            add(f"| {i} | {s['kind']} | {s['ms'] / 1000:.2f} s | {100 * s['ms'] / total:.0f}% | {fmt_b(s['scanned'])} |")
        add(f"| | **all statements** | **{total / 1000:.1f} s** | | |")
        add(f"| | outside statements (publish, clean-up, Python) | {best(a['pipeline'])['seconds'] - total / 1000:.1f} s | | |")
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
        add(f"`airflow dags test` of a small day (3 clusters × 300 alerts): {fmt_s(dt['wall'])} wall, statements' engine "
            f"time {fmt_s(dt['engine_seconds'])}, so {fmt_s(dt['overhead'])} is Airflow (CLI start, DAG parse, task "
            f"execution, XCom). One task process (`airflow tasks test`): "
            f"{', '.join(fmt_s(r['wall']) for r in af['tasks_test'])}. Statements per daily run: {dt['statements']} "
            f"({', '.join(sorted(set(dt['kinds'])))}).")
        add("")
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
    parser.add_argument("--only", default="a,airflow,b,c,d", help="comma-separated parts to run: a, airflow, b, c, d")
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

    quick = args.quick
    args.alerts = args.alerts or (20_000 if quick else 1_000_000)
    args.history_days = args.history_days or (10 if quick else 90)
    args.history_alerts = args.history_alerts or (2_000 if quick else 20_000)
    args.repeat = args.repeat or (1 if not quick else 1)
    args.repeat_history = args.repeat_history or (2 if quick else 3)
    args.repeat_guide = args.repeat_guide or (2 if quick else 2)
    if args.history_days < 2:
        parser.error("--history-days must be at least 2")
    output = Path(args.output) if args.output else (RESULTS / "quick.md" if quick else BENCH / "RESULTS.md")
    parts = set(args.only.split(","))
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
    for key in args.redo.split(","):
        done_before.pop(key, None)
    if done_before:
        res["reused"] = {k: done_before.get("date") for k in ("a", "airflow", "b", "c", "d") if k in done_before}

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
