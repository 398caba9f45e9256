"""``runtime-events``: the local command line, reading the same settings as the DAGs.

    runtime-events generate --start 2026-11-14 --days 7 [--clusters 3] [--events-per-day 200]
                            [--seed 42] [--out DIR]
    runtime-events query "SELECT ..." [--format csv|json|table]
    runtime-events versions TABLE [--dt D] [--format csv|json|table]
    runtime-events rollback TABLE --dt D [--to RUN]
    runtime-events repair TABLE
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
        fmt=args.format,
    )
    print(f"wrote {summary.alerts_written} alerts in {len(summary.files)} files under {out} "
          f"in {time.monotonic() - started:.1f}s", file=sys.stderr)
    if args.format == "falco" and settings.raw_format == "panoptica":
        print("the DAG reads these with the settings runtime_events_raw_format=falco (or auto) and "
              "runtime_events_raw_layout={yyyy}-{MM}-{dd}/ (Falcosidekick's folders)", file=sys.stderr)
    if upload_to:
        from runtime_events.storage import S3Storage, split_s3

        bucket, prefix = split_s3(upload_to)
        hook = S3Storage(settings.aws_conn_id).hook
        for file in summary.files:
            hook.load_file(str(file), key=prefix + str(file.relative_to(out)), bucket_name=bucket, replace=True)
        print(f"uploaded {len(summary.files)} files to {upload_to}", file=sys.stderr)
    return 0


def _hook(settings: Settings):
    from runtime_events.engines import backend

    return backend(settings).query_hook(log_query=False)


def _run_statement(hook, settings: Settings, text: str) -> str | None:
    """Run one statement; returns its query id, or None (after saying why) when it failed."""
    query_id = hook.run_query(
        text, {"Database": settings.database, "Catalog": "AwsDataCatalog"},
        settings.result_configuration(), None, settings.athena_workgroup,
    )
    state = hook.poll_query_status(query_id, sleep_time=1)
    if state != "SUCCEEDED":
        print(f"query {state}: {hook.get_state_change_reason(query_id)}", file=sys.stderr)
        return None
    return query_id


@contextlib.contextmanager
def _quiet_stdout():
    """Airflow and the Amazon hooks log to stdout: keep their lines off the result."""
    with contextlib.redirect_stdout(sys.stderr):
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stdout__:
                handler.setStream(sys.stderr)
        yield


def _query(args: argparse.Namespace, settings: Settings) -> int:
    with _quiet_stdout():
        hook = _hook(settings)
        query_id = _run_statement(hook, settings, args.sql)
        if query_id is None:
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


def _versions(args: argparse.Namespace, settings: Settings) -> int:
    from runtime_events import publish

    with _quiet_stdout():
        lake = publish.Lake(settings)
        table = publish.table_named(args.table)
        rows = publish.versions(lake, table, args.dt)
    columns = [*table.partition_keys, "run_token", "published_at", "kind", "rows", "current", "location"]
    if args.format == "json":
        for row in rows:
            print(results.json_line(row))
        return 0
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row[c] is None else str(row[c]).lower() if isinstance(row[c], bool) else row[c]
                             for c in columns])
        return 0
    _print_rows(columns, [["" if r[c] is None else ("*" if r[c] is True else "" if r[c] is False else str(r[c]))
                           for c in columns] for r in rows])
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    from runtime_events import publish

    with _quiet_stdout():
        lake = publish.Lake(settings)
        lake.ledger.claim()
        summaries = publish.rollback_day(lake, publish.table_named(args.table), args.dt.isoformat(), args.to)
    for summary in summaries:
        if "error" in summary:
            print(f"{summary['table']} dt={summary['dt']}: left as it is ({summary['error']})")
        else:
            print(f"{summary['table']} dt={summary['dt']}: now the version of run {summary['to_run']} "
                  f"({summary['partitions']} partitions, {summary['dropped']} dropped)")
    return 0


def _repair(args: argparse.Namespace, settings: Settings) -> int:
    from runtime_events import publish, sql

    with _quiet_stdout():
        lake = publish.Lake(settings)
        table = publish.table_named(args.table)
        lake.ledger.claim()
        aside = lake.catalogue.set_aside_damaged(table.name)
        if aside:
            print(f"the catalogue file of {table.name} could not be read: moved aside to {aside}", file=sys.stderr)
        hook = _hook(settings)
        for name in ("create_database.sql", table.create_sql):
            if _run_statement(hook, settings, sql.render(name, sql.sql_params(settings, None, query=name))) is None:
                return 1
        summary = publish.repair(lake, table)
    print(f"{summary['table']}: {summary['partitions_reattached']} partitions re-attached, "
          f"{summary['partitions_recorded']} recorded in the ledger")
    return 0


def _export_security_lake(args: argparse.Namespace, settings: Settings) -> int:
    from runtime_events import planning, publish, security_lake

    if not settings.security_lake_location:
        print("runtime-events: the Security Lake export is off: set runtime_events_security_lake_location "
              "(and, on Athena, runtime_events_security_lake_account_id)", file=sys.stderr)
        return 2
    if args.to < args.from_:
        print(f"runtime-events: --to {args.to} is before --from {args.from_}", file=sys.stderr)
        return 2
    with _quiet_stdout():
        lake = publish.Lake(settings)
        lake.ledger.claim()
        days = sorted(v[0] for v in lake.catalogue.partitions(security_lake.TABLE)
                      if args.from_.isoformat() <= v[0] <= args.to.isoformat())
        summary = security_lake.export(lake, planning.new_run_token(), days)
    for day, done in summary["days"].items():
        print(f"dt={day}: {done['outcome']} ({done.get('files', 0)} files"
              + (f", {done['replaced']} replaced" if done.get("replaced") else "") + ")")
    if not days:
        print(f"no published {security_lake.TABLE} partition from {args.from_} to {args.to}")
    print(f"into {summary['location']}")
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from runtime_events import alerts_page

    with _quiet_stdout():
        page = alerts_page.build(settings, args.from_ and args.from_.isoformat(), args.to and args.to.isoformat(),
                                 args.cluster)
    out = Path(args.out).resolve()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(alerts_page.render(page), encoding="utf-8")
    except OSError as exc:
        print(f"runtime-events: cannot write the report to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"{out}: " + (f"{page.dt_from} to {page.dt_to}" if page.dt_from else "no days")
          + (f", cluster {args.cluster}" if args.cluster else "") + (f" ({page.message})" if page.message else ""))
    return 1 if page.error else 0  # a page that says why it has no charts: a failure for scripts and CI


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from runtime_events import alerts_server

    server = alerts_server.make_server(lambda: Settings.load(settings_lookup()), args.host, args.port)
    host, port = server.server_address[:2]
    print(f"the alerts page is at http://{host}:{port}/ (read-only; Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _quicksight(args: argparse.Namespace, settings: Settings) -> int:
    from runtime_events import quicksight

    if not settings.is_athena:
        print("runtime-events: QuickSight reads Athena: set runtime_events_engine=athena (and its settings)",
              file=sys.stderr)
        return 2
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with _quiet_stdout():
            plan = quicksight.Deployer(settings).deploy(dry_run=args.dry_run)
    except (BotoCoreError, ClientError) as exc:
        print(f"runtime-events: QuickSight deploy stopped: {exc}", file=sys.stderr)
        return 1
    print(("plan (dry run, nothing changed)" if args.dry_run else "deployed")
          + f" in account {plan.account}, {plan.region}:")
    for line in plan.lines():
        print("  " + line)
    print("datasets: " + ",".join(plan.dataset_ids))
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
    _print_rows(header, body)
    return 0


def _print_rows(header: list[str], body: list[list[str]], limit: int = 60) -> None:
    widths = [min(limit, max([len(h)] + [len(r[i]) for r in body])) for i, h in enumerate(header)]
    for row in [header, ["-" * w for w in widths], *body]:
        print("  ".join(v[:limit].ljust(w) for v, w in zip(row, widths)).rstrip())
    print(f"({len(body)} rows)")


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
                     help="'flat' or a date-path template (default: the raw_layout setting; "
                          "--format falco always writes Falcosidekick's YYYY-MM-DD/ folders)")
    gen.add_argument("--format", choices=("panoptica", "falco"), default="panoptica",
                     help="Panoptica's flat alerts (default), or Falco's JSON as Falcosidekick writes it to S3")
    query = commands.add_parser("query", help="run one Athena SQL statement on the configured engine")
    query.add_argument("sql")
    query.add_argument("--format", choices=("csv", "json", "table"), default="csv",
                       help="csv with a header row (default), json lines, or an aligned table")
    versions = commands.add_parser("versions", help="the kept versions of a table's partitions")
    versions.add_argument("table")
    versions.add_argument("--dt", help="only this day, YYYY-MM-DD")
    versions.add_argument("--format", choices=("csv", "json", "table"), default="table")
    rollback = commands.add_parser("rollback", help="point a day's partitions back at a kept version")
    rollback.add_argument("table")
    rollback.add_argument("--dt", type=_day, required=True, help="the day, YYYY-MM-DD")
    rollback.add_argument("--to", help="the run token of the version (default: the previous one)")
    repair = commands.add_parser("repair", help="re-attach every partition's latest recorded version")
    repair.add_argument("table")
    export = commands.add_parser(
        "export-security-lake",
        help="copy the published OCSF findings of a range of days into the Security Lake layout")
    export.add_argument("--from", dest="from_", metavar="YYYY-MM-DD", type=_day, required=True, help="first day")
    export.add_argument("--to", metavar="YYYY-MM-DD", type=_day, required=True, help="last day")
    report = commands.add_parser("report", help="write the alerts page as one self-contained HTML file")
    report.add_argument("--from", dest="from_", metavar="YYYY-MM-DD", type=_day,
                        help="first day (default: 13 days before --to)")
    report.add_argument("--to", metavar="YYYY-MM-DD", type=_day, help="last day (default: the latest day published)")
    report.add_argument("--cluster", help="one cluster (default: every cluster)")
    report.add_argument("--out", default="report.html", help="the file to write (default: report.html)")
    serve = commands.add_parser("serve", help="serve the alerts page over HTTP (read-only)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8793, help="port (default: 8793)")
    qs = commands.add_parser("quicksight", help="QuickSight as code: the data source, datasets and dashboard")
    qs_commands = qs.add_subparsers(dest="action", required=True)
    deploy = qs_commands.add_parser("deploy", help="create or update them (idempotent)")
    deploy.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
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
    from runtime_events.engines import EngineUnavailable, backend
    from runtime_events.ledger import LedgerError
    from runtime_events.publish import PublishError

    from runtime_events.security_lake import ExportError

    refusals: tuple = (SettingsError, PublishError, LedgerError, EngineUnavailable, ExportError)
    try:
        refusals += backend(settings).refusals
    except EngineUnavailable as exc:
        print(f"runtime-events: {exc}", file=sys.stderr)
        return 2
    commands = {"query": _query, "versions": _versions, "rollback": _rollback, "repair": _repair,
                "export-security-lake": _export_security_lake, "report": _report, "serve": _serve,
                "quicksight": _quicksight}
    try:
        return commands[args.command](args, settings)
    except refusals as exc:
        print(f"runtime-events: {exc}", file=sys.stderr)
        return 2


def entry_point() -> int:
    try:
        return main()
    except BrokenPipeError:  # the reader (head, less) stopped early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(entry_point())
