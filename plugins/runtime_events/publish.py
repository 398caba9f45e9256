"""Publish and clean up: the catalogue and storage side of write-audit-publish.

A run writes each table's new partitions into a version folder of its own inside the table's
folder (``<table>/<run_token>/dt=.../``). Publishing points the table's partitions for the run's
window at that folder in one catalogue change (Glue on Athena, the embedded catalogue locally),
so a reader sees a whole old partition or a whole new one. Only then is replaced data deleted,
and only inside the table's own folder.
"""

from __future__ import annotations

import logging
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from runtime_events.partitions import partition_path
from runtime_events.embedded.metastore import CatalogError, Metastore
from runtime_events.settings import Settings
from runtime_events.tables import EVENTS, PUBLISHED, Table

log = logging.getLogger(__name__)

Values = tuple[str | None, ...]
_TOKEN_FOLDER = re.compile(r"^r([0-9]{8}t[0-9]{6})_[0-9a-f]{8}$")
# Work of a run that died is removed once it is this old and nothing refers to it.
ORPHAN_AGE = timedelta(hours=6)


class Catalogue(Protocol):
    def partitions(self, table: str) -> dict[Values, str]: ...
    def replace_partitions(self, table: str, new: dict[Values, str], drop: list[Values]) -> dict[Values, str]: ...
    def drop_table(self, table: str) -> None: ...
    def tables(self) -> list[str]: ...


class Storage(Protocol):
    def folders(self, location: str) -> list[str]: ...
    def delete(self, location: str) -> int: ...


# -- the embedded engine's side ---------------------------------------------------------------
class EmbeddedCatalogue:
    def __init__(self, settings: Settings) -> None:
        self.database = settings.database
        self.metastore = Metastore(Path(settings.curated_location) / "_catalog")

    def partitions(self, table: str) -> dict[Values, str]:
        try:
            info = self.metastore.get_table(self.database, table)
        except CatalogError:
            return {}
        return {p.values: p.location for p in info.partitions}

    def replace_partitions(self, table: str, new: dict[Values, str], drop: list[Values]) -> dict[Values, str]:
        return self.metastore.update_partitions(self.database, table, add=new, drop=drop, if_not_exists=False)

    def drop_table(self, table: str) -> None:
        self.metastore.drop_table(self.database, table, if_exists=True)

    def tables(self) -> list[str]:
        return self.metastore.list_tables(self.database)


class LocalStorage:
    def folders(self, location: str) -> list[str]:
        path = Path(location)
        return sorted(str(p) + "/" for p in path.iterdir() if p.is_dir()) if path.is_dir() else []

    def delete(self, location: str) -> int:
        path = Path(location)
        if not path.exists():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file())
        shutil.rmtree(path)
        return count


# -- AWS: Glue and S3 through the Amazon provider's hooks --------------------------------------
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
        descriptor = self.client.get_table(DatabaseName=self.database, Name=table)["Table"]["StorageDescriptor"]

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

    @staticmethod
    def _check(response: dict) -> None:
        errors = response.get("Errors") or []
        if errors:
            raise RuntimeError(f"Glue refused partition changes: {errors[:3]}")


class S3Storage:
    def __init__(self, settings: Settings) -> None:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from runtime_events.operators import AWS_CLIENT_CONFIG

        self.hook = S3Hook(aws_conn_id=settings.aws_conn_id, config=AWS_CLIENT_CONFIG)

    def folders(self, location: str) -> list[str]:
        bucket, prefix = _split_s3(location)
        return [f"s3://{bucket}/{p}" for p in self.hook.list_prefixes(bucket, prefix, delimiter="/")]

    def delete(self, location: str) -> int:
        bucket, prefix = _split_s3(location)
        keys = self.hook.list_keys(bucket, prefix=prefix)
        if keys:
            self.hook.delete_objects(bucket, keys)
        return len(keys)


def _split_s3(location: str) -> tuple[str, str]:
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    return bucket, prefix


def catalogue_for(settings: Settings) -> Catalogue:
    return GlueCatalogue(settings) if settings.is_athena else EmbeddedCatalogue(settings)


def storage_for(settings: Settings) -> Storage:
    return S3Storage(settings) if settings.is_athena else LocalStorage()


# -- the steps ---------------------------------------------------------------------------------
def version_table(table: Table, run_token: str) -> str:
    return f"{table.name}_{run_token}"


def stage_table(run_token: str) -> str:
    return f"runtime_events_stage_{run_token}"


def publish(settings: Settings, table: Table, run: dict, catalogue: Catalogue | None = None,
            storage: Storage | None = None) -> dict:
    """Point ``table``'s partitions for the run's window at the run's version, then delete the
    data they replaced. Returns what changed, for the task log and XCom."""
    catalogue = catalogue or catalogue_for(settings)
    storage = storage or storage_for(settings)
    version_root = f"{settings.table_location(table.name)}{run['run_token']}/"
    new = catalogue.partitions(version_table(table, run["run_token"]))
    window = set(run["days"])
    new = {v: loc for v, loc in new.items() if v[0] in window}
    if table is not EVENTS:
        # A day without alerts still gets its (empty) partition: BI sees zero, not a gap.
        for day in run["days"]:
            new.setdefault((day,), version_root + partition_path(["dt"], (day,)))
    current = catalogue.partitions(table.name)
    drop = [v for v in current if v[0] in window and v not in new]
    replaced = catalogue.replace_partitions(table.name, new, drop)
    deleted = 0
    for location in sorted(set(replaced.values()) - set(new.values())):
        deleted += _delete_inside(settings, storage, table, location)
    summary = {"table": table.name, "partitions_published": len(new), "partitions_dropped": len(drop),
               "partitions_replaced": len(replaced), "files_deleted": deleted}
    log.info("published %s", summary)
    return summary


def clean_up(settings: Settings, run: dict | None, catalogue: Catalogue | None = None,
             storage: Storage | None = None, now: datetime | None = None) -> dict:
    """Drop the run's work tables and delete its stage and whatever of its version was not
    published; also remove what runs that died long ago left behind."""
    catalogue = catalogue or catalogue_for(settings)
    storage = storage or storage_for(settings)
    now = now or datetime.now(timezone.utc)
    tokens = {run["run_token"]} if run else set()
    tables_dropped = files_deleted = 0
    for name in catalogue.tables():
        token = _token_of(name)
        if token and (token in tokens or _is_old(token, now)):
            catalogue.drop_table(name)
            tables_dropped += 1
    for table in PUBLISHED:
        referenced = set(catalogue.partitions(table.name).values())
        root = settings.table_location(table.name)
        for folder in storage.folders(root):
            token = folder.rstrip("/").rsplit("/", 1)[-1]
            if not _TOKEN_FOLDER.match(token) or not (token in tokens or _is_old(token, now)):
                continue
            if not any(loc.startswith(folder) for loc in referenced):
                files_deleted += _delete_inside(settings, storage, table, folder)
            else:
                for partition in _partition_folders(storage, folder, len(table.partition_keys)):
                    if partition not in referenced:
                        files_deleted += _delete_inside(settings, storage, table, partition)
        for folder in storage.folders(root + "_stage/"):
            token = folder.rstrip("/").rsplit("/", 1)[-1]
            if _TOKEN_FOLDER.match(token) and (token in tokens or _is_old(token, now)):
                files_deleted += _delete_inside(settings, storage, table, folder)
    summary = {"tables_dropped": tables_dropped, "files_deleted": files_deleted}
    log.info("cleaned up %s", summary)
    return summary


def _partition_folders(storage: Storage, folder: str, depth: int) -> list[str]:
    level = [folder]
    for _ in range(depth):
        level = [child for parent in level for child in storage.folders(parent)]
    return level


def _token_of(table_name: str) -> str | None:
    match = re.search(r"_(r[0-9]{8}t[0-9]{6}_[0-9a-f]{8})$", table_name)
    return match.group(1) if match else None


def _is_old(token: str, now: datetime) -> bool:
    started = datetime.strptime(_TOKEN_FOLDER.match(token).group(1), "%Y%m%dt%H%M%S")
    return now - started.replace(tzinfo=timezone.utc) > ORPHAN_AGE


def _delete_inside(settings: Settings, storage: Storage, table: Table, location: str) -> int:
    root = settings.table_location(table.name)
    location = location if location.endswith("/") else location + "/"
    if not location.startswith(root) or location == root:
        log.warning("not deleting %s: outside the folder of table %s", location, table.name)
        return 0
    return storage.delete(location)
