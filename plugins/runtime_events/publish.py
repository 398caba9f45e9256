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
from typing import Protocol

from runtime_events.ledger import Ledger, TableHistory
from runtime_events.partitions import partition_path
from runtime_events.settings import Settings
from runtime_events.storage import Storage, delete_inside, is_inside, storage_for
from runtime_events.tables import AGGREGATES, EVENTS, PUBLISHED, RAW_EVENTS, RAW_LINES, Table

log = logging.getLogger(__name__)

Values = tuple[str | None, ...]
_TOKEN = re.compile(r"^r([0-9]{8}t[0-9]{6})_[0-9a-f]{8}$")
# The work of a run that died is removed once it is this old and nothing published refers to it.
ORPHAN_AGE = timedelta(hours=6)


class PublishError(Exception):
    """A publish, rollback or repair refused: retrying does not change the answer."""


class GlueRefused(Exception):
    """Glue answered a partition change with errors (a concurrent change, throttling): retried."""


class Catalogue(Protocol):
    def partitions(self, table: str) -> dict[Values, str]: ...
    def replace_partitions(self, table: str, new: dict[Values, str], drop: list[Values]) -> dict[Values, str]: ...
    def drop_table(self, table: str) -> None: ...
    def tables(self) -> list[str]: ...
    def definition(self, table: str) -> dict | None: ...


# -- the embedded engine's side ---------------------------------------------------------------
class EmbeddedCatalogue:
    def __init__(self, settings: Settings) -> None:
        from runtime_events.embedded.metastore import Metastore

        self.database = settings.database
        self.metastore = Metastore(Path(settings.curated_location) / "_catalog")

    def partitions(self, table: str) -> dict[Values, str]:
        if not self.metastore.table_exists(self.database, table):
            return {}
        info = self.metastore.get_table(self.database, table)  # a damaged file raises, naming it
        return {p.values: p.location for p in info.partitions}

    def replace_partitions(self, table: str, new: dict[Values, str], drop: list[Values]) -> dict[Values, str]:
        return self.metastore.update_partitions(self.database, table, add=new, drop=drop, if_not_exists=False)

    def drop_table(self, table: str) -> None:
        self.metastore.drop_table(self.database, table, if_exists=True)

    def tables(self) -> list[str]:
        return self.metastore.list_tables(self.database)

    def definition(self, table: str) -> dict | None:
        if not self.metastore.table_exists(self.database, table):
            return None
        info = self.metastore.get_table(self.database, table)
        return {"location": info.location, "parameters": info.properties,
                "partition_keys": [k for k, _ in info.partition_keys]}


# -- AWS: Glue through the Amazon provider's hook ---------------------------------------------
class GlueCatalogue:
    def __init__(self, settings: Settings) -> None:
        from airflow.providers.amazon.aws.hooks.glue_catalog import GlueCatalogHook

        from runtime_events.operators import AWS_CLIENT_CONFIG

        self.database = settings.database
        self.client = GlueCatalogHook(aws_conn_id=settings.aws_conn_id, config=AWS_CLIENT_CONFIG).get_conn()

    def partitions(self, table: str) -> dict[Values, str]:
        found: dict[Values, str] = {}
        try:
            for page in self.client.get_paginator("get_partitions").paginate(
                DatabaseName=self.database, TableName=table
            ):
                for p in page["Partitions"]:
                    found[tuple(p["Values"])] = p["StorageDescriptor"]["Location"]
        except self.client.exceptions.EntityNotFoundException:
            return {}
        return found

    def replace_partitions(self, table: str, new: dict[Values, str], drop: list[Values]) -> dict[Values, str]:
        current = self.partitions(table)
        glue_table = self.client.get_table(DatabaseName=self.database, Name=table)["Table"]
        keys = [k["Name"] for k in glue_table.get("PartitionKeys", [])]
        for values in [*new, *drop]:
            if len(values) != len(keys):
                raise PublishError(f"partition {list(values)} does not match the keys {keys} of table {table}")
        descriptor = glue_table["StorageDescriptor"]

        def partition_input(values: Values, location: str) -> dict:
            return {"Values": list(values), "StorageDescriptor": {**descriptor, "Location": location}}

        creates = [partition_input(v, loc) for v, loc in new.items() if v not in current]
        updates = [{"PartitionValueList": list(v), "PartitionInput": partition_input(v, loc)}
                   for v, loc in new.items() if v in current and current[v] != loc]
        deletes = [{"Values": list(v)} for v in drop if v in current]
        for i in range(0, len(creates), 100):
            self._check(self.client.batch_create_partition(
                DatabaseName=self.database, TableName=table, PartitionInputList=creates[i:i + 100]))
        for i in range(0, len(updates), 100):
            self._check(self.client.batch_update_partition(
                DatabaseName=self.database, TableName=table, Entries=updates[i:i + 100]))
        for i in range(0, len(deletes), 25):
            self._check(self.client.batch_delete_partition(
                DatabaseName=self.database, TableName=table, PartitionsToDelete=deletes[i:i + 25]))
        replaced = {v: current[v] for v in new if v in current and current[v] != new[v]}
        replaced |= {v: current[v] for v in drop if v in current}
        return replaced

    def drop_table(self, table: str) -> None:
        try:
            self.client.delete_table(DatabaseName=self.database, Name=table)
        except self.client.exceptions.EntityNotFoundException:
            pass

    def tables(self) -> list[str]:
        names = []
        for page in self.client.get_paginator("get_tables").paginate(DatabaseName=self.database):
            names.extend(t["Name"] for t in page["TableList"])
        return names

    def definition(self, table: str) -> dict | None:
        try:
            found = self.client.get_table(DatabaseName=self.database, Name=table)["Table"]
        except self.client.exceptions.EntityNotFoundException:
            return None
        return {"location": found["StorageDescriptor"].get("Location"), "parameters": found.get("Parameters", {}),
                "partition_keys": [k["Name"] for k in found.get("PartitionKeys", [])]}

    @staticmethod
    def _check(response: dict) -> None:
        errors = response.get("Errors") or []
        if errors:
            raise GlueRefused(f"Glue refused partition changes: {errors[:3]}")


def catalogue_for(settings: Settings) -> Catalogue:
    return GlueCatalogue(settings) if settings.is_athena else EmbeddedCatalogue(settings)


class Lake:
    """The catalogue, the storage and the ledger of one configuration, made once."""

    def __init__(self, settings: Settings, catalogue: Catalogue | None = None, storage: Storage | None = None) -> None:
        self.settings = settings
        self.catalogue = catalogue or catalogue_for(settings)
        self.storage = storage or storage_for(settings)
        self.ledger = Ledger(settings, self.storage)


# -- before a run -------------------------------------------------------------------------------
def version_table(table: Table, run_token: str) -> str:
    return f"{table.name}_{run_token}"


def run_folders(settings: Settings, run_token: str) -> list[dict]:
    """The folders a run creates: its stage, and a version folder per published table."""
    stage = {"table": EVENTS.name, "kind": "stage",
             "location": f"{settings.table_location(EVENTS.name)}_stage/{run_token}/"}
    return [stage] + [{"table": t.name, "kind": "version", "location": f"{settings.table_location(t.name)}{run_token}/"}
                      for t in PUBLISHED]


def prepare_run(lake: Lake, run: dict) -> None:
    """Before a run writes anything: the curated root is this database's, the raw location is
    there, the raw tables follow the raw settings, and the run's folders are on record."""
    settings = lake.settings
    lake.ledger.claim()
    lake.ledger.check_location()
    check_raw_location(lake)
    for table in drifted_raw_tables(lake):
        # External tables: dropping one changes the catalogue only, never the alert files.
        log.info("table %s no longer matches raw_location/raw_layout: re-created by create_tables", table)
        lake.catalogue.drop_table(table)
    lake.ledger.start_run(run["run_token"], run_folders(settings, run["run_token"]))


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
    for table in (RAW_EVENTS, RAW_LINES):
        found = lake.catalogue.definition(table.name)
        if found is None:
            continue
        location = (found["location"] or "").rstrip("/") + "/"
        template = found["parameters"].get("storage.location.template")
        wants_template = None if settings.raw_layout == "flat" else settings.raw_location + "${arrival_date}/"
        if location != settings.raw_location or (table is RAW_LINES and template != wants_template):
            drifted.append(table.name)
    return drifted


# -- publish ------------------------------------------------------------------------------------
def publish(lake: Lake, table: Table, run: dict, days: list[str], rows: dict[Values, int] | None = None) -> dict:
    """Point ``table``'s partitions of ``days`` (the window days the run has lines for) and of
    window days never published at the run's version, in one catalogue change recorded in the
    ledger. Partitions the ledger knows but the catalogue lost (a dropped table) are re-attached
    in the same change. Nothing is deleted here."""
    catalogue, ledger, token = lake.catalogue, lake.ledger, run["run_token"]
    record = ledger.run(token)
    if record is None or record.get("finished_at") or catalogue.definition(version_table(table, token)) is None:
        raise PublishError(
            f"run {token} has finished or its version of {table.name} is gone (its clean-up ran): "
            "publishing it again would drop its days. Start a new run of the day instead.")
    history = ledger.history(table.name)
    recorded = history.latest()
    current = catalogue.partitions(table.name)
    published_days = {v[0] for v in current} | {v[0] for v in recorded}
    rebuild = set(days) | {d for d in run["days"] if d not in published_days}
    new = {v: loc for v, loc in catalogue.partitions(version_table(table, token)).items() if v[0] in rebuild}
    if table.partition_keys == ("dt",):
        # A rebuilt day without alerts still gets its (empty) partition: BI sees zero, not a gap.
        version_root = f"{lake.settings.table_location(table.name)}{token}/"
        for day in sorted(rebuild):
            new.setdefault((day,), version_root + partition_path(["dt"], (day,)))
    for values in new:
        if len(values) != len(table.partition_keys):
            raise PublishError(f"partition {list(values)} does not match the keys {table.partition_keys} of {table.name}")
    drop = [v for v in current if v[0] in rebuild and v not in new]
    if drop and not run.get("allow_shrink"):
        raise PublishError(f"publishing would drop {len(drop)} partitions of {table.name} ({drop[:3]}...) "
                           "and the run does not allow it (allow_shrink)")
    reattach = {v: loc for v, loc in recorded.items() if v not in current and v[0] not in rebuild}
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
               "days_kept": sorted(set(run["days"]) - rebuild)}
    log.info("published %s", summary)
    return summary


def _order(item: tuple) -> tuple:
    return tuple((v is None, v or "") for v in item[0])


# -- clean up -------------------------------------------------------------------------------
def clean_up(lake: Lake, run: dict | None, now: datetime | None = None) -> dict:
    """Drop the run's work tables; delete its stage and what of its versions was never
    published; sweep the work of runs that died long ago; delete versions replaced at least
    ``retention_days`` ago. Every delete is of a folder the ledger names, inside its table's
    folder, and never of one the catalogue points into."""
    settings, catalogue, storage, ledger = lake.settings, lake.catalogue, lake.storage, lake.ledger
    now = now or datetime.now(timezone.utc)
    token = run["run_token"] if run else None
    tables_dropped = files_deleted = 0
    for name in catalogue.tables():
        owner = _token_of(name)
        if owner and (owner == token or _older_than(owner, now, ORPHAN_AGE)):
            catalogue.drop_table(name)
            tables_dropped += 1
    histories = {t.name: ledger.history(t.name) for t in PUBLISHED}
    referenced = {t.name: _resolve_all(storage, catalogue.partitions(t.name).values()) for t in PUBLISHED}
    runs = ledger.runs(unfinished_only=True)
    for record in runs:
        mine = record["run_token"] == token
        stale = not record.get("finished_at") and _older_than(record["run_token"], now, ORPHAN_AGE)
        if not (mine or stale):
            continue
        for folder in record["folders"]:
            root = settings.table_location(folder["table"])
            if folder["kind"] == "version" and _in_use(storage, folder["location"], histories.get(folder["table"]),
                                                       referenced.get(folder["table"], [])):
                continue  # published: its partitions leave by retention, one by one
            files_deleted += delete_inside(storage, folder["location"], root)
        ledger.finish_run(record["run_token"])
    retention = timedelta(days=settings.retention_days)
    for table in PUBLISHED:
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
    _report_unrecorded(lake, runs, histories, referenced)
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


def _report_unrecorded(lake: Lake, runs: list[dict], histories: dict, referenced: dict) -> None:
    storage = lake.storage
    known = _resolve_all(storage, (f["location"] for r in runs for f in r["folders"]))
    for table in PUBLISHED:
        history = histories[table.name]
        recorded = _resolve_all(storage, [v.location for h in history.versions.values() for v in h if v.location]
                                + list(history.replaced)) + referenced[table.name] + known
        for folder in storage.folders(lake.settings.table_location(table.name)):
            name = folder.rstrip("/").rsplit("/", 1)[-1]
            if not name.startswith(("_", ".")) and not _overlaps_any(_resolved(storage, folder), recorded):
                log.warning("%s is not in the ledger of table %s: left alone (the project deletes only "
                            "what it recorded)", folder, table.name)


def _token_of(table_name: str) -> str | None:
    match = re.search(r"_(r[0-9]{8}t[0-9]{6}_[0-9a-f]{8})$", table_name)
    return match.group(1) if match else None


def _older_than(token: str, now: datetime, age: timedelta) -> bool:
    match = _TOKEN.match(token)
    if not match:
        return False
    started = datetime.strptime(match.group(1), "%Y%m%dt%H%M%S").replace(tzinfo=timezone.utc)
    return now - started > age


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
        if dt is not None and values[0] != dt:
            continue
        for version in history.kept(values):
            out.append({**dict(zip(table.partition_keys, values)), "run_token": version.run_token,
                        "published_at": version.at, "kind": version.kind, "rows": version.rows,
                        "current": current.get(values) == version.location, "location": version.location})
    return out


def day_states(history: TableHistory, dt: str) -> list[dict]:
    """The partitions of day ``dt`` after each recorded publish or rollback of it, oldest first."""
    state: dict[Values, str] = {}
    out = []
    for record in history.records:
        touched = [p for p in record["partitions"] if p["values"][0] == dt]
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
    states = day_states(history, dt)
    current = {v: loc for v, loc in lake.catalogue.partitions(table.name).items() if v[0] == dt}
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

