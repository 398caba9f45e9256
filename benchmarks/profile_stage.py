#!/usr/bin/env python
"""Profile the stage statement (stage_alerts.sql) on the embedded engine, and measure rewrites of it.

    .venv/bin/python benchmarks/profile_stage.py                      # the 1M-alert day of run.py
    .venv/bin/python benchmarks/profile_stage.py --raw DIR --variants now,all --profile

Each variant runs in a process of its own: the statement as the engine translates it today
("now"), or with some of these local rewrites of the translated DuckDB SQL applied:

  parse        the trino_json_parse guard (engine._MACROS) runs its regexp_replace over the whole
               line only when 'NaN', 'Infinity' or a trailing comma occur in it at all
  fields       every field out of one parse: json_extract_string(doc, [11 paths]) and
               json_type(doc, [3 paths]) instead of one json_extract per field
  event_id     sha256(concat_ws(...)) instead of lower(hex(unhex(sha256(encode(array_to_string(
               list_transform(...)))))))
  batch        write_batch numbered on the distinct (dt, cluster_id) pairs and joined back,
               instead of dense_rank() over every line
  materialize  the CTE referenced twice (scoped) is materialized, its inputs are not
  all          all of the above

It prints wall time, CPU time and peak RSS of each, and checks that every variant's rows equal
those of "now". The rewrites patch the translated SQL text: when stage_alerts.sql changes they may
no longer apply, and the script says so. Nothing in plugins/ or include/ is changed.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO / "tests")]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_RAW = RESULTS / "data" / "day-1000000-c20-f10-s20261120"
KEYS = ["container.id", "evt.time", "k8s.ns.name", "k8s.pod.name", "proc.cmdline", "proc.pid", "cluster_id",
        "rule_name", "description", "severity", "related_cves"]
NAMES = ["container_id", "evt_time", "namespace", "pod_name", "cmdline", "pid", "cluster_id", "rule_name",
         "description", "severity", "related_cves"]
ALL = ("parse", "fields", "event_id", "batch", "materialize")


def path(key: str) -> str:
    return f"'$.\"{key}\"'"


class RewriteError(Exception):
    pass


def expect(text: str, piece: str, what: str) -> None:
    if piece not in text:
        raise RewriteError(f"rewrite {what!r} no longer applies: {piece[:60]!r} not in the translated SQL")


def rewrite(duck: str, parts: set[str]) -> str:
    if "parse" in parts:
        old = "TRY(TRINO_JSON_PARSE(line)) AS doc"
        expect(duck, old, "parse")
        duck = duck.replace(old, "CASE WHEN NOT (contains(line, 'NaN') OR contains(line, 'Infinity') OR "
                                 r"regexp_matches(line, ',\s*[\]}]')) THEN TRY(json(line)) "
                                 "ELSE TRY(TRINO_JSON_PARSE(line)) END AS doc")
    if "fields" in parts:
        expect(duck, "fields /*", "fields")
        expect(duck, "), time_parts", "fields")
        start, end = duck.index("fields /*"), duck.index("), time_parts")
        fields = ("fields AS (SELECT source_file, line, doc, json_type(doc) = 'OBJECT' AS is_object, "
                  + ", ".join(f"v[{i + 1}] AS {n}" for i, n in enumerate(NAMES))
                  + ", ty[1] = 'VARCHAR' AS evt_time_is_string, ty[2] = 'VARCHAR' AS cluster_id_is_string, "
                  "ty[3] = 'VARCHAR' AS rule_name_is_string FROM (SELECT *, json_extract_string(doc, ["
                  + ", ".join(path(k) for k in KEYS) + "]) AS v, json_type(doc, ["
                  + f"{path('evt.time')}, {path('cluster_id')}, {path('rule_name')}]) AS ty FROM lines)\n")
        duck = duck[:start] + fields + duck[end:]
    if "event_id" in parts:
        expect(duck, "curated AS (\n  SELECT\n    CASE", "event_id")
        start = duck.index("CASE", duck.index("curated AS (\n  SELECT\n    CASE"))
        end = duck.index("END AS event_id") + len("END AS event_id")
        duck = duck[:start] + ("CASE WHEN reject_reason IS NULL THEN sha256(concat_ws(',', "
                               + ", ".join(f"coalesce(CAST(length({n}) AS VARCHAR) || ':' || {n}, '-')" for n in NAMES)
                               + ")) END AS event_id") + duck[end:]
    if "batch" in parts:
        old = ("  CASE\n    WHEN reject_reason IS NULL\n    THEN (\n      DENSE_RANK() OVER (PARTITION BY reject_reason IS NULL "
               "ORDER BY dt, cluster_id) - 1\n    ) / 100\n  END AS write_batch")
        expect(duck, old, "batch")
        duck = duck.replace(old, "CASE WHEN reject_reason IS NULL THEN p_batch END AS write_batch")
        old = "FROM scoped\nWHERE\n  scope <> 'other_days'"
        expect(duck, old, "batch")
        duck = duck.replace(old, (
            "FROM scoped LEFT JOIN (SELECT dt AS p_dt, cluster_id AS p_cluster_id, "
            "(row_number() OVER (ORDER BY dt, cluster_id) - 1) // 100 AS p_batch FROM (SELECT DISTINCT dt, cluster_id "
            "FROM scoped WHERE reject_reason IS NULL AND scope <> 'other_days')) ON dt = p_dt AND cluster_id = p_cluster_id\n"
            "WHERE\n  scope <> 'other_days'"))
    if "materialize" in parts:
        expect(duck, "), scoped /*", "materialize")
        expect(duck, "WITH lines AS (", "materialize")
        start = duck.index("), scoped /*")
        at = duck.index("AS (", start)
        duck = duck[:at] + "AS MATERIALIZED (" + duck[at + 4:]
        duck = duck.replace("WITH lines AS (", "WITH lines AS NOT MATERIALIZED (", 1)
    return duck


def child(raw: str, variant: str, out: str, profile: bool) -> dict:
    import sqlglot

    from local_pipeline import make_settings
    from runtime_events import sql
    from runtime_events.embedded.engine import EmbeddedEngine, _translate

    parts = set() if variant == "now" else set(ALL if variant == "all" else variant.split("+"))
    lake = Path(out).with_suffix(".lake")
    shutil.rmtree(lake, ignore_errors=True)
    lake.mkdir(parents=True)
    settings = make_settings(lake, raw_location=raw)
    run = sql.plan_window(settings, date(2026, 11, 20))
    engine = EmbeddedEngine(lake / "curated" / "_catalog", lake / "curated")
    for name in ("create_database.sql", "runtime_events_lines/create_table.sql"):
        engine.execute(sql.render(name, sql.sql_params(settings, run)), "runtime_security")
    text = sql.render("runtime_events_parquet/stage_alerts.sql", sql.sql_params(settings, run))
    query = sqlglot.parse_one(text, read="athena").expression.copy()
    before = resource.getrusage(resource.RUSAGE_SELF)
    operators = []
    with engine._connect() as con:
        started = time.perf_counter()
        engine._bind_tables(con, query, "runtime_security")  # reads the raw lines (Python -> Arrow)
        read_seconds = time.perf_counter() - started
        duck = rewrite(_translate(query).sql(dialect="duckdb", pretty=True), parts)
        if profile:
            con.execute("PRAGMA enable_profiling = 'json'")
            con.execute(f"PRAGMA profiling_output = '{out}.profile.json'")
        started = time.perf_counter()
        con.execute(f"CREATE TEMP TABLE __result AS {duck}")
        query_seconds = time.perf_counter() - started
        if profile:
            con.execute("PRAGMA disable_profiling")
        after = resource.getrusage(resource.RUSAGE_SELF)
        rows = con.execute("SELECT count(*) FROM __result").fetchone()[0]
        con.execute(f"COPY __result TO '{out}' (FORMAT parquet)")
    if profile:
        def walk(node: dict) -> None:
            extra = node.get("extra_info") or {}
            what = extra.get("Projections") or extra.get("CTE Name") or extra.get("Function") or ""
            operators.append((node.get("timing", 0.0), node["name"], str(what)[:110]))
            for c in node.get("children", []):
                walk(c)
        for node in json.loads(Path(f"{out}.profile.json").read_text()).get("operator", []):
            walk(node)
        operators.sort(reverse=True)
    shutil.rmtree(lake, ignore_errors=True)
    return {"variant": variant, "read_seconds": read_seconds, "query_seconds": query_seconds,
            "cpu_seconds": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
            "peak_rss": after.ru_maxrss * 1024, "rows": rows, "operators": operators[:8]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", default=str(DEFAULT_RAW), help="a flat raw folder of one day (2026-11-20)")
    parser.add_argument("--variants", default="now,parse,fields,event_id,batch,materialize,all")
    parser.add_argument("--profile", action="store_true", help="print DuckDB's top operators of each variant")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        raw, variant, out = args.child
        print("PROFILE_RESULT " + json.dumps(child(raw, variant, out, args.profile)), flush=True)
        return
    if not Path(args.raw).is_dir():
        raise SystemExit(f"{args.raw} does not exist: run benchmarks/run.py first (it generates and caches the data), "
                         "or pass --raw")
    work = RESULTS / "profile_stage"
    work.mkdir(parents=True, exist_ok=True)
    import duckdb

    baseline = None
    for variant in args.variants.split(","):
        out = work / f"{variant}.parquet"
        argv = [sys.executable, __file__, "--child", args.raw, variant, str(out)] + (["--profile"] if args.profile else [])
        done = subprocess.run(argv, capture_output=True, text=True)
        line = next((l for l in done.stdout.splitlines() if l.startswith("PROFILE_RESULT ")), None)
        if line is None:
            print(f"{variant:12s} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        r = json.loads(line.removeprefix("PROFILE_RESULT "))
        same = ""
        if variant == "now":
            baseline = out
        elif baseline is not None:
            con = duckdb.connect()
            differ = con.execute(
                f"SELECT (SELECT count(*) FROM (SELECT * FROM '{baseline}' EXCEPT ALL SELECT * FROM '{out}')) + "
                f"(SELECT count(*) FROM (SELECT * FROM '{out}' EXCEPT ALL SELECT * FROM '{baseline}'))").fetchone()[0]
            same = "same rows as now" if differ == 0 else f"**{differ} rows differ from now**"
        print(f"{variant:12s} read lines {r['read_seconds']:5.1f} s | query {r['query_seconds']:6.1f} s | "
              f"CPU {r['cpu_seconds']:6.1f} s | peak RSS {r['peak_rss'] / 2**30:5.2f} GB | {r['rows']:,} rows | {same}",
              flush=True)
        for seconds, name, what in r["operators"]:
            print(f"    {seconds:7.2f} s CPU  {name:12s} {what}")


if __name__ == "__main__":
    main()
