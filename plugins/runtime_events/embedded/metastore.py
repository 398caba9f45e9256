"""The embedded engine's catalogue: Glue's role, kept as JSON files beside the curated data.

One file a table, ``<root>/<database>/<table>.json``, holding its columns, partition keys,
location, format and partitions (values -> location). Changes take an exclusive ``flock`` on the
table and replace the file atomically, so any number of processes (Airflow tasks, runs, the
command line) can read and change it at once; readers never see a half-written file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path


class CatalogError(Exception):
    """Raised with Athena's own error text for a missing or duplicate database or table."""


@dataclass(frozen=True)
class Partition:
    values: tuple[str | None, ...]
    location: str


@dataclass(frozen=True)
class TableInfo:
    database: str
    name: str
    columns: tuple[tuple[str, str], ...]
    partition_keys: tuple[tuple[str, str], ...]
    location: str
    format: str  # "json", "text" or "parquet"
    properties: dict = field(default_factory=dict)
    partitions: tuple[Partition, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns + self.partition_keys]

    def to_json(self) -> dict:
        data = asdict(self)
        data["partitions"] = [[list(p.values), p.location] for p in self.partitions]
        return data

    @classmethod
    def from_json(cls, data: dict) -> TableInfo:
        return cls(
            database=data["database"],
            name=data["name"],
            columns=tuple(tuple(c) for c in data["columns"]),
            partition_keys=tuple(tuple(c) for c in data["partition_keys"]),
            location=data["location"],
            format=data["format"],
            properties=data.get("properties", {}),
            partitions=tuple(Partition(tuple(v), loc) for v, loc in data["partitions"]),
        )


class Metastore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- databases -------------------------------------------------------------------------
    def create_database(self, database: str, if_not_exists: bool = False) -> None:
        path = self.root / database
        if path.is_dir() and not if_not_exists:
            raise CatalogError(f"AlreadyExistsException: Database {database} already exists")
        path.mkdir(parents=True, exist_ok=True)

    def database_exists(self, database: str) -> bool:
        return (self.root / database).is_dir()

    def list_tables(self, database: str) -> list[str]:
        return sorted(p.stem for p in (self.root / database).glob("*.json"))

    # -- tables ----------------------------------------------------------------------------
    def get_table(self, database: str, name: str) -> TableInfo:
        path = self._table_path(database, name)
        try:
            text = path.read_text()
            try:
                return TableInfo.from_json(json.loads(text))
            except (ValueError, KeyError, TypeError) as exc:
                raise CatalogError(
                    f"HIVE_METASTORE_ERROR: the catalogue file {path} of table {database}.{name} is damaged "
                    f"({exc}). `runtime-events repair {name}` moves it aside and rebuilds the table from the "
                    "ledger") from None
        except FileNotFoundError:
            if not self.database_exists(database):
                raise CatalogError(f"SCHEMA_NOT_FOUND: Schema '{database}' does not exist") from None
            raise CatalogError(
                f"TABLE_NOT_FOUND: line 1:1: Table 'awsdatacatalog.{database}.{name}' does not exist"
            ) from None

    def table_exists(self, database: str, name: str) -> bool:
        return self._table_path(database, name).is_file()

    def set_aside(self, database: str, name: str) -> Path | None:
        """Move a table's catalogue file out of the way (kept beside it, never deleted)."""
        with self._locked(database, name):
            path = self._table_path(database, name)
            if not path.exists():
                return None
            aside = path.with_name(f".{path.name}.damaged-{os.getpid()}-{int(time.time())}")
            os.replace(path, aside)
            return aside

    def create_table(self, table: TableInfo, if_not_exists: bool = False) -> bool:
        """Register ``table``; returns False when it existed and ``if_not_exists`` was given."""
        if not self.database_exists(table.database):
            raise CatalogError(f"SCHEMA_NOT_FOUND: Schema '{table.database}' does not exist")
        with self._locked(table.database, table.name):
            path = self._table_path(table.database, table.name)
            if path.exists():
                if if_not_exists:
                    return False
                raise CatalogError(f"AlreadyExistsException: Table {table.name} already exists")
            self._write(path, table)
            return True

    def drop_table(self, database: str, name: str, if_exists: bool = False) -> None:
        with self._locked(database, name):
            path = self._table_path(database, name)
            if not path.exists():
                if if_exists:
                    return
                self.get_table(database, name)  # raises Athena's error
            path.unlink()

    def add_columns(self, database: str, name: str, columns: list[tuple[str, str]]) -> None:
        """Append columns to a table (Athena's ALTER TABLE ADD COLUMNS): files written before
        read them as null."""
        with self._locked(database, name):
            table = self.get_table(database, name)
            taken = set(table.column_names)
            added = tuple((c, t) for c, t in columns if c not in taken)
            self._write(self._table_path(database, name), replace(table, columns=table.columns + added))

    # -- partitions ------------------------------------------------------------------------
    def update_partitions(
        self,
        database: str,
        name: str,
        add: dict[tuple, str] | None = None,
        drop: list[tuple] | None = None,
        if_not_exists: bool = True,
    ) -> dict[tuple, str]:
        """Add or re-point partitions and drop others, in one atomic change of the table.

        Returns the locations the change replaced or dropped: the data a publisher may delete.
        """
        with self._locked(database, name):
            table = self.get_table(database, name)
            keys = [k for k, _ in table.partition_keys]
            for values in [*(add or {}), *(drop or [])]:
                if len(tuple(values)) != len(keys) or not all(v is None or isinstance(v, str) for v in values):
                    raise CatalogError(f"INVALID_PARTITION: partition {list(values)} does not match the partition "
                                       f"keys {keys} of {database}.{name}")
            current = {p.values: p.location for p in table.partitions}
            replaced: dict[tuple, str] = {}
            for values in drop or []:
                values = tuple(values)
                if values in current:
                    replaced[values] = current.pop(values)
            for values, location in (add or {}).items():
                values = tuple(values)
                old = current.get(values)
                if old is not None and if_not_exists:
                    continue
                if old is not None and old != location:
                    replaced[values] = old
                current[values] = location
            partitions = tuple(Partition(v, loc) for v, loc in sorted(current.items(), key=_sort_key))
            self._write(self._table_path(database, name), replace(table, partitions=partitions))
            return replaced

    # -- internals -------------------------------------------------------------------------
    def _table_path(self, database: str, name: str) -> Path:
        return self.root / database / f"{name}.json"

    @contextlib.contextmanager
    def _locked(self, database: str, name: str) -> Iterator[None]:
        lock_dir = self.root / database / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{name}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _write(path: Path, table: TableInfo) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(table.to_json(), handle, indent=1, sort_keys=True)
        os.replace(tmp, path)


def _sort_key(item: tuple[tuple, str]) -> tuple:
    return tuple((v is None, v or "") for v in item[0])
