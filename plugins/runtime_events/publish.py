"""Publish, keep, roll back and clean up: the catalogue and storage side of write-audit-publish.

A run writes each table's new partitions into a version folder of its own inside the table's
folder (``<table>/<run_token>/dt=.../``). Publishing points the table's partitions for the days
the run rebuilt at that folder in one catalogue change (Glue on Athena, the embedded catalogue
locally), so a reader sees a whole old partition or a whole new one, and records the change in
the ledger (:mod:`runtime_events.ledger`).

Nothing is deleted when it is replaced. Clean-up deletes a replaced version only once it was
replaced ``retention_days`` ago, the work of a run only when the ledger names it as that run's
and nothing published points into it, and either only after resolving the path and finding it
inside that table's own folder. Whatever the ledger does not name is reported, never deleted.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from runtime_events import engines, reference
from runtime_events.catalogue import Catalogue, Values
from runtime_events.ledger import Ledger, TableHistory
from runtime_events.partitions import partition_path
from runtime_events.planning import RunPlan, is_stale, token_of_work_table
from runtime_events.settings import Settings
from runtime_events.storage import Storage, delete_inside
from runtime_events.tables import AGGREGATES, EVENTS, PUBLISHED, RAW, REFERENCE, TABLES, Table

log = logging.getLogger(__name__)


class PublishError(Exception):
    """A publish, rollback or repair refused: retrying does not change the answer."""


class Lake:
    """The catalogue, the storage and the ledger of one configuration, made once."""

    def __init__(self, settings: Settings, catalogue: Catalogue | None = None, storage: Storage | None = None) -> None:
        parts = engines.backend(settings)
        self.settings = settings
        self.catalogue = catalogue or parts.catalogue
        self.storage = storage or parts.storage
        self.ledger = Ledger(settings, self.storage)


# -- before a run -------------------------------------------------------------------------------
def run_folders(settings: Settings, plan: RunPlan) -> list[dict]:
    """The folders a run creates: its stage, and a version folder per published table."""
    work = plan.work(settings)
    return [{"table": EVENTS.name, "kind": "stage", "location": work["stage"]["location"]}] + [
        {"table": name, "kind": "version", "location": version["location"]}
        for name, version in work["versions"].items()]


def prepare_run(lake: Lake, plan: RunPlan) -> None:
    """Before a run writes anything: the curated root is this database's, the raw location is
    there, the raw tables follow the raw settings, the reference files are in place, and the
    run's folders are on record."""
    settings = lake.settings
    lake.ledger.claim()
    lake.ledger.check_location()
    check_raw_location(lake)
    for table in drifted_raw_tables(lake):
        # External tables: dropping one changes the catalogue only, never the alert files.
        log.info("table %s no longer matches raw_location/raw_layout: re-created by create_tables", table)
        lake.catalogue.drop_table(table)
    place_reference_files(lake)
    add_new_columns(lake)
    lake.ledger.start_run(plan.run_token, run_folders(settings, plan))


def add_new_columns(lake: Lake) -> list[str]:
    """Bring the project's tables made by an earlier release up to their DDL: columns the DDL
    has and the table lacks are appended (as ALTER TABLE ADD COLUMNS would; files written before
    read them as null). Nothing is dropped, renamed or retyped; the partitions stay."""
    changed = []
    for table in TABLES:
        if table.kind not in ("curated", "aggregate", "record"):
            continue
        found = lake.catalogue.definition(table.name)
        if found is None:
            continue  # create_tables makes it, whole
        have = set(found.get("columns", [])) | set(found["partition_keys"])
        declared = ddl_columns(lake.settings, table)
        for column, wanted in declared:
            found_type = found.get("column_types", {}).get(column)
            if found_type is not None and _type_text(found_type) != _type_text(wanted):
                raise PublishError(
                    f"table {table.name} has the column {column} as {found_type} where this release's "
                    f"create_table.sql has {wanted}: the project never retypes a column. Was the table "
                    f"changed by hand? Restore the type (Glue UpdateTable), or drop the table: its files stay "
                    f"and `runtime-events repair {table.name}` re-attaches its partitions.")
        missing = [(c, t) for c, t in declared if c not in have]
        if missing:
            log.info("table %s: adding the columns %s that this release's DDL has", table.name,
                     ", ".join(f"{c} {t}" for c, t in missing))
            lake.catalogue.add_columns(table.name, missing)
            changed.append(table.name)
    return changed


def _type_text(hive_type: str) -> str:
    """A Hive type for comparison: Glue and the DDL may differ in spaces, case and quoting."""
    return re.sub(r"[\s`]+", "", hive_type.lower())


_COLUMN = re.compile(r"^\s*`([a-z_][a-z0-9_]*)`\s+([a-z][a-z0-9_<>(), :`]*?)\s*,?\s*$")


def ddl_columns(settings: Settings, table: Table) -> list[tuple[str, str]]:
    """The columns (name, type) the table's ``create_table.sql`` declares, in order."""
    from runtime_events import sql

    text = sql.render(table.create_sql, sql.sql_params(settings, None, query=table.create_sql))
    body = text[text.index("(", text.index(f".{table.name}")) + 1:]
    columns = []
    for line in body.splitlines():
        if line.startswith(")"):
            break
        match = _COLUMN.match(line)
        if match:
            columns.append((match.group(1), match.group(2)))
    return columns


def place_reference_files(lake: Lake) -> None:
    """Write each reference table's file (shipped with the package) into the table's folder,
    as JSON lines, when it differs from what is there: the file is the package's own, replaced
    whole, and nothing else in the folder is touched."""
    for table in REFERENCE:
        location = reference_file_location(lake.settings, table)
        text = reference.json_lines(table.name)
        if lake.storage.read_text(location) != text:
            lake.storage.write_text(location, text)
            log.info("reference table %s: %s written (%d rows)", table.name, location, text.count("\n"))
        root = lake.settings.table_location(table.name)
        others = [f for f in lake.storage.files(root) if f != location
                  and not any(part.startswith((".", "_")) for part in f[len(root):].split("/"))]
        if others:
            log.warning("table %s reads every file under %s, and %d are not the package's (%s): their rows are "
                        "read too and count again in what joins the table. Move them out; the project deletes "
                        "nothing it did not write.", table.name, root, len(others), ", ".join(others[:5]))


def reference_file_location(settings: Settings, table: Table) -> str:
    return f"{settings.table_location(table.name)}{table.name}.json"


def check_raw_location(lake: Lake) -> None:
    location = lake.settings.raw_location
    if location.startswith("s3://"):
        try:
            found = lake.storage.has_files(location)
        except Exception as exc:  # noqa: BLE001  (botocore's errors: access, no such bucket)
            raise PublishError(f"raw_location {location} cannot be read ({exc}); setting runtime_events_raw_location") from exc
        if not found:
            raise PublishError(f"raw_location {location} holds no files: a wrong prefix, or nothing has "
                               "landed yet (setting runtime_events_raw_location)")
        return
    path = Path(location)
    if not path.is_dir():
        raise PublishError(f"raw_location {location} is not a folder that exists (an unmounted volume, or "
                           "a wrong path?); setting runtime_events_raw_location")
    try:
        next(path.iterdir(), None)
    except OSError as exc:
        raise PublishError(f"raw_location {location} cannot be read ({exc.strerror}); "
                           "setting runtime_events_raw_location") from None


def drifted_raw_tables(lake: Lake) -> list[str]:
    """The raw tables whose location or layout differ from the settings (changed since created)."""
    settings = lake.settings
    drifted = []
    for table in RAW:
        found = lake.catalogue.definition(table.name)
        if found is None:
            continue
        location = (found["location"] or "").rstrip("/") + "/"
        template = found["parameters"].get("storage.location.template")
        wants_template = None if settings.raw_layout == "flat" else settings.raw_location + "${arrival_date}/"
        if location != settings.raw_location or (table.name == "runtime_events_lines" and template != wants_template):
            drifted.append(table.name)
    return drifted


# -- publish ------------------------------------------------------------------------------------
def publish(lake: Lake, table: Table, run: RunPlan, days: list[str], rows: dict[Values, int] | None = None) -> dict:
    """Point ``table``'s partitions of ``days`` (the window days the run has lines for) and of
    window days never published at the run's version, in one catalogue change recorded in the
    ledger. Partitions the ledger knows but the catalogue lost (a dropped table) are re-attached
    in the same change. Nothing is deleted here.

    Driven by the table's declared partition keys: a partition of a rebuilt day that the new
    version does not have is dropped (only when the run allows shrinking); a table partitioned
    by ``dt`` alone gets an empty partition for a rebuilt day without rows (BI sees zero, not a
    gap), where a table with more keys has no partition to give."""
    catalogue, ledger, token = lake.catalogue, lake.ledger, run.run_token
    version = run.version_table(table.name)
    record = ledger.run(token)
    if record is None or record.get("finished_at") or catalogue.definition(version) is None:
        raise PublishError(
            f"run {token} has finished or its version of {table.name} is gone (its clean-up ran): "
            "publishing it again would drop its days. Start a new run of the day instead.")
    check_version_matches(table, catalogue.definition(table.name), catalogue.definition(version))
    day_of = table.day_of
    history = ledger.history(table.name)
    recorded = history.latest()
    current = catalogue.partitions(table.name)
    published_days = {day_of(v) for v in current} | {day_of(v) for v in recorded}
    rebuild = set(days) | {d for d in run.day_strings if d not in published_days}
    new = {v: loc for v, loc in catalogue.partitions(version).items() if day_of(v) in rebuild}
    if table.partition_keys == ("dt",):
        version_root = lake.settings.table_location(table.name) + token + "/"
        for day in sorted(rebuild):
            new.setdefault((day,), version_root + partition_path(["dt"], (day,)))
    for values in new:
        if len(values) != len(table.partition_keys):
            raise PublishError(f"partition {list(values)} does not match the keys {table.partition_keys} of {table.name}")
    drop = [v for v in current if day_of(v) in rebuild and v not in new]
    if drop and not run.allow_shrink:
        raise PublishError(f"publishing would drop {len(drop)} partitions of {table.name} ({drop[:3]}...) "
                           "and the run does not allow it (allow_shrink)")
    reattach = {v: loc for v, loc in recorded.items() if v not in current and day_of(v) not in rebuild}
    rows = rows or {}
    changes = [{"values": v, "location": loc, "previous": current.get(v), "rows": rows.get(v, 0)}
               for v, loc in sorted(new.items(), key=_order)]
    changes += [{"values": v, "location": None, "previous": current[v], "rows": 0} for v in drop]
    if changes:
        ledger.record(table.name, "publish", token, changes)
    if reattach:
        log.warning("re-attaching %d partitions of %s that the catalogue lost (was the table dropped?)",
                    len(reattach), table.name)
        ledger.record(table.name, "repair", token, [
            {"values": v, "location": loc, "previous": None} for v, loc in sorted(reattach.items(), key=_order)])
    catalogue.replace_partitions(table.name, {**new, **reattach}, drop)
    summary = {"table": table.name, "days_rebuilt": sorted(rebuild), "partitions_published": len(new),
               "partitions_dropped": len(drop), "partitions_reattached": len(reattach),
               "days_kept": sorted(set(run.day_strings) - rebuild)}
    log.info("published %s", summary)
    return summary


def check_version_matches(table: Table, published: dict | None, version: dict) -> None:
    """The table exists with the declared partition keys, and the run's version has its columns:
    Athena reads Parquet by column name, so a misnamed column would publish as nulls."""
    if published is None:
        raise PublishError(f"table {table.name} is not in the catalogue: its create_table.sql did not create it "
                           f"(does the file create the table of its own folder?)")
    if tuple(published["partition_keys"]) != table.partition_keys:
        raise PublishError(f"table {table.name} is partitioned by {published['partition_keys']} in the catalogue, "
                           f"not by {list(table.partition_keys)} as the project declares: was it created by hand?")
    wanted = [*published.get("columns", []), *published["partition_keys"]]
    got = [*version.get("columns", []), *version["partition_keys"]]
    if sorted(wanted) != sorted(got):
        missing, extra = sorted(set(wanted) - set(got)), sorted(set(got) - set(wanted))
        raise PublishError(f"the run's version of {table.name} does not have the table's columns (missing: "
                           f"{', '.join(missing) or 'none'}; not in the table: {', '.join(extra) or 'none'}): "
                           f"its select.sql must give the columns of its create_table.sql. Nothing was published.")


def _order(item: tuple) -> tuple:
    return tuple((v is None, v or "") for v in item[0])


# -- clean up -------------------------------------------------------------------------------
def clean_up(lake: Lake, run: RunPlan | None, now: datetime | None = None,
             extra_tables: tuple[Table, ...] = ()) -> dict:
    """Drop the run's work tables; delete its stage and what of its versions was never
    published; sweep the work of runs that died long ago; delete versions replaced at least
    ``retention_days`` ago. Every delete is of a folder the ledger names, inside its table's
    folder, and never of one the catalogue points into. ``extra_tables``: published tables
    beyond the catalogue's (tests of the publish mechanism)."""
    settings, catalogue, storage, ledger = lake.settings, lake.catalogue, lake.storage, lake.ledger
    tables = (*PUBLISHED, *extra_tables)
    now = now or datetime.now(timezone.utc)
    token = run.run_token if run else None
    tables_dropped = files_deleted = 0
    for name in catalogue.tables():
        owner = token_of_work_table(name)
        if owner and (owner == token or is_stale(owner, now)):
            catalogue.drop_table(name)
            tables_dropped += 1
    histories = {t.name: ledger.history(t.name) for t in tables}
    referenced = {t.name: _resolve_all(storage, catalogue.partitions(t.name).values()) for t in tables}
    runs = ledger.runs(unfinished_only=True)
    for record in runs:
        mine = record["run_token"] == token
        stale = not record.get("finished_at") and is_stale(record["run_token"], now)
        if not (mine or stale):
            continue
        for folder in record["folders"]:
            root = settings.table_location(folder["table"])
            if folder["kind"] == "version" and (
                    folder["table"] not in histories  # a table this clean-up does not know: kept
                    or _in_use(storage, folder["location"], histories[folder["table"]], referenced[folder["table"]])):
                continue  # published: its partitions leave by retention, one by one
            files_deleted += delete_inside(storage, folder["location"], root)
        ledger.finish_run(record["run_token"])
    retention = timedelta(days=settings.retention_days)
    for table in tables:
        root = settings.table_location(table.name)
        deleted = []
        for location, replaced_at in sorted(histories[table.name].superseded().items()):
            if now - datetime.fromisoformat(replaced_at) < retention:
                continue
            if _overlaps_any(_resolved(storage, location), referenced[table.name]):
                continue  # the catalogue still points there (a publish that did not finish)
            files_deleted += delete_inside(storage, location, root)
            deleted.append(location)
        if deleted:
            ledger.record(table.name, "delete", token or "cleanup", deleted=deleted)
    _report_unrecorded(lake, tables, runs, histories, referenced)
    summary = {"tables_dropped": tables_dropped, "files_deleted": files_deleted}
    log.info("cleaned up %s", summary)
    return summary


def _in_use(storage: Storage, folder: str, history: TableHistory | None, referenced: list[str]) -> bool:
    recorded = list(referenced)
    if history is not None:
        recorded += _resolve_all(storage, (v.location for h in history.versions.values() for v in h if v.location))
    return _overlaps_any(_resolved(storage, folder), recorded)


def _overlaps_any(location: str, others: list[str]) -> bool:
    return any(o.startswith(location) or location.startswith(o) for o in others)


def _resolve_all(storage: Storage, locations) -> list[str]:
    return sorted({_resolved(storage, loc) for loc in locations})


def _resolved(storage: Storage, location: str) -> str:
    try:
        return storage.resolve(location)
    except Exception:  # noqa: BLE001  (not a plain location: compare it as written)
        return location


def _report_unrecorded(lake: Lake, tables: tuple[Table, ...], runs: list[dict], histories: dict,
                       referenced: dict) -> None:
    storage = lake.storage
    known = _resolve_all(storage, (f["location"] for r in runs for f in r["folders"]))
    for table in tables:
        history = histories[table.name]
        recorded = _resolve_all(storage, [v.location for h in history.versions.values() for v in h if v.location]
                                + list(history.replaced)) + referenced[table.name] + known
        for folder in storage.folders(lake.settings.table_location(table.name)):
            name = folder.rstrip("/").rsplit("/", 1)[-1]
            if not name.startswith(("_", ".")) and not _overlaps_any(_resolved(storage, folder), recorded):
                log.warning("%s is not in the ledger of table %s: left alone (the project deletes only "
                            "what it recorded)", folder, table.name)


# -- versions, rollback, repair (the command line) ----------------------------------------------
def table_named(name: str) -> Table:
    for table in PUBLISHED:
        if table.name == name:
            return table
    raise PublishError(f"{name!r} is not a published table; one of: {', '.join(t.name for t in PUBLISHED)}")


def versions(lake: Lake, table: Table, dt: str | None = None) -> list[dict]:
    """The kept versions of each partition (of day ``dt``), oldest first, marking the one the
    catalogue points at."""
    history = lake.ledger.history(table.name)
    current = lake.catalogue.partitions(table.name)
    out = []
    for values in sorted(history.versions, key=lambda v: _order((v,))):
        if dt is not None and table.day_of(values) != dt:
            continue
        for version in history.kept(values):
            out.append({**dict(zip(table.partition_keys, values)), "run_token": version.run_token,
                        "published_at": version.at, "kind": version.kind, "rows": version.rows,
                        "current": current.get(values) == version.location, "location": version.location})
    return out


def day_states(table: Table, history: TableHistory, dt: str) -> list[dict]:
    """The partitions of day ``dt`` after each recorded publish or rollback of it, oldest first."""
    state: dict[Values, str] = {}
    out = []
    for record in history.records:
        touched = [p for p in record["partitions"] if table.day_of(tuple(p["values"])) == dt]
        if not touched or record["kind"] not in ("publish", "rollback"):
            continue
        for p in touched:
            if p["location"] is None:
                state.pop(tuple(p["values"]), None)
            else:
                state[tuple(p["values"])] = p["location"]
        out.append({"run_token": record["run_token"], "at": record["at"], "kind": record["kind"],
                    "partitions": dict(state)})
    return out


def rollback(lake: Lake, table: Table, dt: str, to_run: str | None = None) -> dict:
    """Point day ``dt`` of ``table`` back at the previous kept version (or run ``to_run``'s) in
    one catalogue change, recorded in the ledger."""
    history = lake.ledger.history(table.name)
    states = day_states(table, history, dt)
    current = {v: loc for v, loc in lake.catalogue.partitions(table.name).items() if table.day_of(v) == dt}
    if not states:
        raise PublishError(f"the ledger has no version of {table.name} dt={dt}")
    publishes = [s for s in states if s["kind"] == "publish"
                 and not set(s["partitions"].values()) & history.deleted]
    if to_run:
        chosen = [s for s in publishes if s["run_token"] == to_run]
        if not chosen:
            runs = sorted({s["run_token"] for s in publishes})
            raise PublishError(f"run {to_run} has no kept version of {table.name} dt={dt}; kept: {', '.join(runs) or 'none'}")
    else:
        # The version published before the one the catalogue points at now.
        now_at = max((i for i, s in enumerate(publishes) if s["partitions"] == current), default=len(publishes))
        chosen = [s for s in publishes[:now_at] if s["partitions"] != current]
        if not chosen:
            raise PublishError(f"{table.name} dt={dt} has no earlier kept version to roll back to")
    target = chosen[-1]
    if target["partitions"] == current:
        raise PublishError(f"{table.name} dt={dt} already reads the version of run {target['run_token']}")
    new = target["partitions"]
    drop = [v for v in current if v not in new]
    changes = [{"values": v, "location": loc, "previous": current.get(v), "rows": _rows_of(history, v, loc)}
               for v, loc in sorted(new.items(), key=_order)]
    changes += [{"values": v, "location": None, "previous": current[v], "rows": 0} for v in drop]
    lake.ledger.record(table.name, "rollback", target["run_token"], changes)
    lake.catalogue.replace_partitions(table.name, new, drop)
    summary = {"table": table.name, "dt": dt, "to_run": target["run_token"], "partitions": len(new),
               "dropped": len(drop)}
    log.info("rolled back %s", summary)
    return summary


def rollback_day(lake: Lake, table: Table, dt: str, to_run: str | None = None) -> list[dict]:
    """:func:`rollback`; for the curated copy, the daily aggregates of the day follow it to the
    same run's versions, so that they keep agreeing with it (an aggregate that run did not
    publish is left as it is, and said so)."""
    summaries = [rollback(lake, table, dt, to_run)]
    if table is EVENTS:
        for aggregate in AGGREGATES:
            try:
                summaries.append(rollback(lake, aggregate, dt, summaries[0]["to_run"]))
            except PublishError as exc:
                summaries.append({"table": aggregate.name, "dt": dt, "error": str(exc)})
    return summaries


def _rows_of(history: TableHistory, values: Values, location: str) -> int | None:
    for version in history.versions.get(values, []):
        if version.location == location and version.rows is not None:
            return version.rows
    return None


def repair(lake: Lake, table: Table) -> dict:
    """Point every partition the ledger knows at its latest recorded version (after the table
    was dropped and created again, or its catalogue entry was lost)."""
    recorded = lake.ledger.history(table.name).latest()
    current = lake.catalogue.partitions(table.name)
    changed = {v: loc for v, loc in recorded.items() if current.get(v) != loc}
    if changed:
        lake.ledger.record(table.name, "repair", "repair", [
            {"values": v, "location": loc, "previous": current.get(v)} for v, loc in sorted(changed.items(), key=_order)])
        lake.catalogue.replace_partitions(table.name, changed, [])
    summary = {"table": table.name, "partitions_reattached": len(changed), "partitions_recorded": len(recorded)}
    log.info("repaired %s", summary)
    return summary

