#!/usr/bin/env python
"""Profile the stage statement (stage_alerts.sql) on the embedded engine, and measure rewrites of it.

    .venv/bin/python benchmarks/profile_stage.py                      # the 1M-alert day of run.py
    .venv/bin/python benchmarks/profile_stage.py --raw DIR --profile

Each variant runs in a process of its own: "now" is the statement as the engine translates it
today; a rewrite is a function in REWRITES that patches the translated DuckDB SQL text (name them
with --variants now,NAME,NAME+NAME). It prints wall time, CPU time and peak RSS of each, and checks
that every variant's rows equal those of "now", so a rewrite can be measured before it is moved
into the engine's translation. The rewrites measured on 2026-11-27 (one multi-path JSON
extraction, the cheap json_parse pre-check, sha256(concat_ws(...)), batches without dense_rank)
are in the engine and the SQL now. Nothing in plugins/ or include/ is changed by this script.
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


class RewriteError(Exception):
    pass


def expect(text: str, piece: str, what: str) -> None:
    if piece not in text:
        raise RewriteError(f"rewrite {what!r} no longer applies: {piece[:60]!r} not in the translated SQL")


def any_copy(duck: str) -> str:
    """Number the duplicates without ordering them by file: what the window's ORDER BY costs.
    Rows differ from "now" where a duplicate spans files (another copy is kept)."""
    old = "ORDER BY source_file)"
    expect(duck, old, "any_copy")
    return duck.replace(old, ")")


REWRITES = {"any_copy": any_copy}


def rewrite(duck: str, parts: set[str]) -> str:
    for name in sorted(parts):
        if name not in REWRITES:
            raise RewriteError(f"no rewrite named {name!r}; known: {', '.join(REWRITES)}")
        duck = REWRITES[name](duck)
    return duck


def child(raw: str, variant: str, out: str, profile: bool) -> dict:
    import sqlglot

    from local_pipeline import make_settings
    from runtime_events import planning, sql
    from runtime_events.embedded.engine import EmbeddedEngine, _translate

    parts = set() if variant == "now" else set(variant.split("+"))
    lake = Path(out).with_suffix(".lake")
    shutil.rmtree(lake, ignore_errors=True)
    lake.mkdir(parents=True)
    settings = make_settings(lake, raw_location=raw)
    run = planning.plan_window(settings, date(2026, 11, 20))
    engine = EmbeddedEngine(lake / "curated" / "_catalog", lake / "curated")
    for name in ("create_database.sql", "runtime_events_lines/create_table.sql"):
        engine.execute(sql.render(name, sql.sql_params(settings, run, query=name)), "runtime_security")
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
    parser.add_argument("--variants", default="now")
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
        print(f"{variant:12s} bind {r['read_seconds']:5.1f} s | query {r['query_seconds']:6.1f} s | "
              f"CPU {r['cpu_seconds']:6.1f} s | peak RSS {r['peak_rss'] / 2**30:5.2f} GB | {r['rows']:,} rows | {same}",
              flush=True)
        for seconds, name, what in r["operators"]:
            print(f"    {seconds:7.2f} s CPU  {name:12s} {what}")


if __name__ == "__main__":
    main()
