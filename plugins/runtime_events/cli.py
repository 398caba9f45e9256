"""``runtime-events``: the local command line, reading the same settings as the DAGs.

    runtime-events generate --start 2026-11-14 --days 7 [--clusters 3] [--events-per-day 200]
                            [--seed 42] [--out DIR]
    runtime-events query "SELECT ..." [--format csv|json|table]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from runtime_events import results
from runtime_events.settings import Lookup, Settings, SettingsError, environment_lookup


def settings_lookup() -> Lookup:
    """The environment first (``AIRFLOW_VAR_RUNTIME_EVENTS_*``), then the Airflow Variables in
    the metadata database, when this machine has one."""
    env = environment_lookup(os.environ)
    cache: dict[str, str | None] = {}

    def lookup(key: str) -> str | None:
        value = env(key)
        if value is not None or os.environ.get("RUNTIME_EVENTS_SKIP_AIRFLOW_VARIABLES"):
            return value
        if key not in cache:
            cache[key] = _airflow_variable(key)
        return cache[key]

    return lookup


def _airflow_variable(key: str) -> str | None:
    try:
        from airflow.models.variable import Variable

        return Variable.get(key, default_var=None)
    except Exception:  # no metadata database here: the environment is all there is
        return None


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from runtime_events.simulate import generate_alerts

    upload_to = None
    if args.out:
        out = Path(args.out)
    elif settings.raw_location.startswith("s3://"):
        upload_to = settings.raw_location
        out = Path(tempfile.mkdtemp(prefix="runtime-events-"))
    else:
        out = Path(settings.raw_location)
    started = time.monotonic()
    summary = generate_alerts(
        out, args.start, args.days, clusters=args.clusters, events_per_day=args.events_per_day,
        seed=args.seed, layout=args.layout, progress=lambda message: print(message, file=sys.stderr),
    )
    print(f"wrote {summary.alerts_written} alerts in {len(summary.files)} files under {out} "
          f"in {time.monotonic() - started:.1f}s", file=sys.stderr)
    if upload_to:
        from runtime_events.publish import S3Storage, _split_s3

        bucket, prefix = _split_s3(upload_to)
        hook = S3Storage(settings).hook
        for file in summary.files:
            hook.load_file(str(file), key=prefix + str(file.relative_to(out)), bucket_name=bucket, replace=True)
        print(f"uploaded {len(summary.files)} files to {upload_to}", file=sys.stderr)
    return 0


def _query(args: argparse.Namespace, settings: Settings) -> int:
    # Airflow and the Amazon hooks log to stdout: keep their lines off the result.
    with contextlib.redirect_stdout(sys.stderr):
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stdout__:
                handler.setStream(sys.stderr)
        if settings.is_athena:
            from airflow.providers.amazon.aws.hooks.athena import AthenaHook

            hook = AthenaHook(aws_conn_id=settings.aws_conn_id, log_query=False)
        else:
            from runtime_events.embedded.hook import EmbeddedAthenaHook

            hook = EmbeddedAthenaHook(settings.curated_location, log_query=False)
        query_id = hook.run_query(
            args.sql, {"Database": settings.database, "Catalog": "AwsDataCatalog"},
            settings.result_configuration(), None, settings.athena_workgroup,
        )
        state = hook.poll_query_status(query_id, sleep_time=1)
        if state != "SUCCEEDED":
            print(f"query {state}: {hook.get_state_change_reason(query_id)}", file=sys.stderr)
            return 1
        pages = list(_pages(hook, query_id))
    if args.format == "json":
        for row in results.iter_rows(pages):
            print(results.json_line(row))
        return 0
    if args.format == "table":
        return _print_table(pages)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    first = True
    for page in pages:
        result = page["ResultSet"]
        rows = result["Rows"]
        names = [c["Name"] for c in result["ResultSetMetadata"]["ColumnInfo"]]
        if first:
            writer.writerow(names)
            if rows and [d.get("VarCharValue") for d in rows[0]["Data"]] == names:
                rows = rows[1:]
            first = False
        for row in rows:
            writer.writerow([cell.get("VarCharValue", "") for cell in row["Data"]])
    return 0


def _print_table(pages) -> int:
    header: list[str] = []
    body: list[list[str]] = []
    for page in pages:
        result = page["ResultSet"]
        rows = [[cell.get("VarCharValue", "") for cell in row["Data"]] for row in result["Rows"]]
        if not header:
            header = [c["Name"] for c in result["ResultSetMetadata"]["ColumnInfo"]]
            rows = rows[1:] if rows and rows[0] == header else rows
        body.extend(rows)
    widths = [min(60, max([len(h)] + [len(r[i]) for r in body])) for i, h in enumerate(header)]
    for row in [header, ["-" * w for w in widths], *body]:
        print("  ".join(v[:60].ljust(w) for v, w in zip(row, widths)).rstrip())
    print(f"({len(body)} rows)")
    return 0


def _pages(hook, query_id: str):
    token = None
    while True:
        page = hook.get_query_results(query_id, next_token_id=token)
        if page is None:
            return
        yield page
        token = page.get("NextToken")
        if not token:
            return


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, not {text!r}") from None


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="runtime-events", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write simulated Panoptica alerts")
    gen.add_argument("--start", type=_day, required=True, help="first day, YYYY-MM-DD")
    gen.add_argument("--days", type=int, required=True, help="number of days")
    gen.add_argument("--clusters", type=int, default=3)
    gen.add_argument("--events-per-day", type=int, default=200, help="alerts a day, all clusters")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--out", help="folder to write to (default: the raw_location setting)")
    gen.add_argument("--layout", default=None,
                     help="'flat' or a date-path template (default: the raw_layout setting)")
    query = commands.add_parser("query", help="run one Athena SQL statement on the configured engine")
    query.add_argument("sql")
    query.add_argument("--format", choices=("csv", "json", "table"), default="csv",
                       help="csv with a header row (default), json lines, or an aligned table")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.load(settings_lookup())
    except SettingsError as exc:
        print(f"runtime-events: {exc}", file=sys.stderr)
        return 2
    if args.command == "generate":
        args.layout = args.layout or settings.raw_layout
        return _generate(args, settings)
    return _query(args, settings)


def entry_point() -> int:
    try:
        return main()
    except BrokenPipeError:  # the reader (head, less) stopped early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(entry_point())
