"""The embedded engine: Athena SQL executed by DuckDB over local folders.

A statement is parsed with sqlglot's ``athena`` dialect. DDL changes the file-based catalogue
(:mod:`runtime_events.embedded.metastore`); queries are translated to DuckDB, with every table
reference replaced by a view over the files the catalogue points at. Where Athena has a limit or
a quirk that the pipeline must live with, this engine has it too:

* a CREATE TABLE AS or INSERT INTO that writes more than 100 partitions fails with
  ``HIVE_TOO_MANY_OPEN_PARTITIONS``; a CTAS into a location that holds data fails with
  ``HIVE_PATH_ALREADY_EXISTS``;
* INSERT INTO always appends new files; DROP TABLE and DROP PARTITION never delete data;
* timestamps have millisecond precision;
* the JSON SerDe table reads a malformed line as a row of nulls and a non-integer in an ``int``
  column as null (the ``ignore.malformed.json`` behaviour the Panoptica guide asks for).

Every statement runs on a fresh in-memory DuckDB connection, so any number of processes can use
the engine at once without DuckDB's single-writer lock; the catalogue serialises its own changes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import re
import shutil
import tempfile
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from runtime_events.embedded import rawfiles
from runtime_events.embedded.metastore import CatalogError, Metastore, TableInfo
from runtime_events.partitions import (  # noqa: F401  (re-exported for the engine's users)
    HIVE_DEFAULT_PARTITION,
    MAX_WRITE_PARTITIONS,
    escape_partition_value,
    partition_path,
    unescape_partition_value,
)

MAX_FILE_BYTES = 128 * 1024 * 1024
ZSTD_LEVEL = 1
READ_ATTEMPTS = 3
JSON_SERDES = ("org.openx.data.jsonserde.JsonSerDe", "org.apache.hive.hcatalog.data.JsonSerDe")


class EngineError(Exception):
    """A statement failed; the message starts with Athena's error name where Athena has one."""


@dataclass
class QueryResult:
    columns: list[tuple[str, str]]  # (name, Athena/Hive type)
    table: pa.Table | None
    statement_type: str  # DDL, DML or UTILITY, as Athena reports it
    data_scanned_bytes: int = 0
    update_count: int = 0  # rows an INSERT or CTAS wrote


# --------------------------------------------------------------------------------------------
def hive_type(duckdb_type: str) -> str:
    """Athena's (Hive's) name for a DuckDB result type."""
    text = duckdb_type.upper()
    if text.startswith("TIMESTAMP"):
        return "timestamp"
    if text in ("HUGEINT", "UHUGEINT", "UBIGINT"):
        return "bigint"
    if text in ("JSON", '"NULL"', "NULL"):
        return "string"
    text = text.replace('"NULL"', "VARCHAR")  # an element of unknown type, as in MAP(ARRAY[], ARRAY[])
    return type_text(exp.DataType.build(text, dialect="duckdb")).replace("int128", "bigint")


def type_text(data_type: exp.DataType) -> str:
    """A Hive type as the catalogue keeps it: lower case, struct field names unquoted (as Glue
    shows them), so that a DDL's type and a query's result type compare as text."""
    data_type = data_type.copy()
    for identifier in data_type.find_all(exp.Identifier):
        identifier.set("quoted", False)
    return data_type.sql("hive").lower()


def duckdb_type(hive: str) -> str:
    if hive == "timestamp":
        return "TIMESTAMP_MS"
    return exp.DataType.build(hive, dialect="hive").sql("duckdb")


def _local(location: str) -> Path:
    if location.startswith("s3://"):
        raise EngineError(
            f"NOT_SUPPORTED: the embedded engine reads and writes local folders only, not {location}"
        )
    return Path(location.removeprefix("file://"))


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _visible_files(folder: Path, suffix: str = "") -> list[Path]:
    return [p for p in rawfiles.list_files(folder) if p.name.endswith(suffix)]


def _positions(columns: list) -> str:
    return ", ".join(f"__c{i}" for i in range(len(columns)))


def _duckdb_partition_value(folder_name: str) -> str | None:
    """The value of a ``key=value`` folder written by DuckDB's ``PARTITION_BY``."""
    text = folder_name.split("=", 1)[1]
    return None if text == HIVE_DEFAULT_PARTITION else urllib.parse.unquote(text)


def _move_files(staging: Path, folder: Path) -> None:
    """Move the Parquet files written under ``staging`` into ``folder``, each appearing whole."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in sorted(staging.glob("*.parquet")):
        try:
            os.replace(file, folder / file.name)
        except OSError:  # another file system: copy beside the target first, then rename
            partial = folder / f".{file.name}.partial"
            shutil.copyfile(file, partial)
            os.replace(partial, folder / file.name)


class EmbeddedEngine:
    """Runs one Athena statement at a time against the catalogue under ``catalog_root``."""

    def __init__(self, catalog_root: Path, warehouse: Path | None = None, threads: int | None = None,
                 memory_limit: str | None = None) -> None:
        self.metastore = Metastore(Path(catalog_root))
        self.warehouse = Path(warehouse) if warehouse else Path(catalog_root).parent
        self.threads = threads or int(os.environ.get("RUNTIME_EVENTS_DUCKDB_THREADS", "0")) or None
        self.memory_limit = memory_limit or os.environ.get("RUNTIME_EVENTS_DUCKDB_MEMORY_LIMIT")
        # Raw lines reach DuckDB as a stream (never all in memory) unless a plan must scan twice.
        self._streaming = threading.local()

    # -- entry point -----------------------------------------------------------------------
    def execute(self, sql: str, database: str, query_id: str | None = None) -> QueryResult:
        query_id = query_id or str(uuid.uuid4())
        try:
            statements = [s for s in sqlglot.parse(sql, read="athena") if s is not None]
        except sqlglot.errors.ParseError as exc:
            raise EngineError(f"SYNTAX_ERROR: {exc}") from None
        if len(statements) != 1:
            raise EngineError("INVALID_QUERY: Only one sql statement is allowed")
        statement = statements[0]
        self._streaming.enabled = True
        failed_reads = 0
        while True:
            self._streaming.failures = []
            try:
                return self._dispatch(statement, database, query_id)
            except (duckdb.Error, FileNotFoundError) as exc:
                if self._streaming.failures:  # a raw file could not be read: name it, not the stream
                    raise EngineError(str(self._streaming.failures[0])) from None
                if (isinstance(exc, duckdb.InvalidInputException) and "already been consumed" in str(exc)
                        and self._streaming.enabled):
                    # The plan scans a raw table twice: read its lines into memory and run it again.
                    self._streaming.enabled = False
                    continue
                if not isinstance(exc, (duckdb.IOException, FileNotFoundError)):
                    raise EngineError(f"GENERIC_INTERNAL_ERROR: {exc}") from None
                # A publish re-pointed a partition and deleted its old files between reading the
                # catalogue and reading the files: read the catalogue again.
                failed_reads += 1
                if failed_reads == READ_ATTEMPTS or not isinstance(statement, exp.Query):
                    raise EngineError(f"HIVE_CANNOT_OPEN_SPLIT: {exc}") from None
            except CatalogError as exc:
                raise EngineError(str(exc)) from None
            except rawfiles.RawFileError as exc:
                raise EngineError(str(exc)) from None

    def _dispatch(self, statement: exp.Expression, database: str, query_id: str) -> QueryResult:
        if isinstance(statement, exp.Create):
            kind = (statement.args.get("kind") or "").upper()
            if kind in ("DATABASE", "SCHEMA"):
                self.metastore.create_database(statement.this.name, bool(statement.args.get("exists")))
                return QueryResult([], None, "DDL")
            if kind == "TABLE" and isinstance(statement.expression, exp.Query):
                return self._create_table_as(statement, database, query_id)
            if kind == "TABLE":
                return self._create_external_table(statement, database)
        if isinstance(statement, exp.Insert):
            return self._insert(statement, database, query_id)
        if isinstance(statement, exp.Alter):
            return self._alter(statement, database)
        if isinstance(statement, exp.Drop) and (statement.args.get("kind") or "").upper() == "TABLE":
            for table in statement.args.get("tables") or [statement.this]:
                db, name = self._qualified(table, database)
                self.metastore.drop_table(db, name, bool(statement.args.get("exists")))
            return QueryResult([], None, "DDL")
        if isinstance(statement, exp.Command) and statement.name.upper() == "MSCK REPAIR":
            return self._repair(statement.expression.name, database)
        if isinstance(statement, exp.Query):
            return self._query(statement, database)
        raise EngineError(f"NOT_SUPPORTED: the embedded engine does not run {statement.key.upper()}")

    # -- DDL -------------------------------------------------------------------------------
    @staticmethod
    def _qualified(table: exp.Table, database: str) -> tuple[str, str]:
        return (table.db or database).lower(), table.name.lower()

    def _create_external_table(self, statement: exp.Create, database: str) -> QueryResult:
        schema = statement.this
        db, name = self._qualified(schema.this, database)
        columns = tuple((c.name, type_text(c.args["kind"])) for c in schema.expressions)
        props = statement.args.get("properties")
        partition_keys: tuple = ()
        location = None
        fmt = "text"
        properties: dict = {}
        for prop in props.expressions if props else []:
            if isinstance(prop, exp.PartitionedByProperty):
                partition_keys = tuple(
                    (c.name, c.args["kind"].sql("hive").lower()) for c in prop.this.expressions
                )
            elif isinstance(prop, exp.LocationProperty):
                location = prop.this.name
            elif isinstance(prop, exp.FileFormatProperty):
                fmt = {"PARQUET": "parquet", "TEXTFILE": "text"}.get(prop.this.name.upper(), prop.this.name.lower())
            elif isinstance(prop, exp.RowFormatSerdeProperty):
                if prop.this.name in JSON_SERDES:
                    fmt = "json"
                for sp in (prop.args.get("serde_properties") or exp.Tuple()).expressions:
                    properties[sp.name] = sp.args["value"].name
            elif isinstance(prop, exp.Property) and prop.args.get("value") is not None:
                properties[prop.name] = prop.args["value"].name
        if fmt not in ("json", "text", "parquet"):
            raise EngineError(f"NOT_SUPPORTED: the embedded engine reads JSON, text or Parquet, not {fmt}")
        if location is None:
            raise EngineError("INVALID_TABLE_PROPERTY: an external table needs a LOCATION")
        if not location.endswith("/"):
            location += "/"
        table = TableInfo(db, name, columns, partition_keys, location, fmt, properties)
        created = self.metastore.create_table(table, if_not_exists=bool(statement.args.get("exists")))
        if not created and not statement.args.get("exists"):
            raise EngineError(f"ALREADY_EXISTS: Table {db}.{name} already exists")
        return QueryResult([], None, "DDL")

    def _alter(self, statement: exp.Alter, database: str) -> QueryResult:
        target = statement.this
        db, name = self._qualified(target, database)
        table = self.metastore.get_table(db, name)
        keys = [k for k, _ in table.partition_keys]

        def values_of(partition: exp.Partition) -> tuple:
            given = {eq.this.name.lower(): eq.expression.name for eq in partition.expressions}
            if set(given) != set(keys):
                raise EngineError(f"INVALID_PARTITION: partition must name {', '.join(keys)}")
            return tuple(given[k] for k in keys)

        current = {p.values for p in table.partitions}
        for action in statement.args.get("actions") or []:
            if isinstance(action, exp.AddPartition) or action.key == "addpartition":
                values = values_of(action.this)
                exists = bool(action.args.get("exists"))
                if values in current and not exists:
                    raise EngineError(f"ALREADY_EXISTS: Partition already exists: {name} {values}")
                location = action.args.get("location")
                location = (location.name if isinstance(location, exp.Expression)
                            else table.location + partition_path(keys, values))
                self.metastore.update_partitions(db, name, add={values: location}, if_not_exists=True)
            elif isinstance(action, exp.DropPartition):
                drop = [values_of(p) for p in action.expressions]
                missing = [v for v in drop if v not in current]
                if missing and not action.args.get("exists"):
                    raise EngineError(f"PARTITION_NOT_FOUND: Partition not found: {name} {missing[0]}")
                self.metastore.update_partitions(db, name, drop=drop)
            elif isinstance(action, exp.AlterSet) and target.args.get("partition") is not None:
                values = values_of(target.args["partition"])
                if values not in current:
                    raise EngineError(f"PARTITION_NOT_FOUND: Partition not found: {name} {values}")
                location = action.args["location"].name
                self.metastore.update_partitions(db, name, add={values: location}, if_not_exists=False)
            else:
                raise EngineError(f"NOT_SUPPORTED: ALTER TABLE {action.sql('athena')}")
        return QueryResult([], None, "DDL")

    def _repair(self, text: str, database: str) -> QueryResult:
        table_name = text.split()[-1]
        db, _, name = table_name.rpartition(".")
        db, name = (db or database).lower(), name.lower()
        table = self.metastore.get_table(db, name)
        keys = [k for k, _ in table.partition_keys]
        root = _local(table.location)
        found: dict[tuple, str] = {}
        for folder in root.glob("/".join("*" for _ in keys)):
            parts = folder.relative_to(root).parts
            if all(p.startswith(f"{k}=") for p, k in zip(parts, keys)):
                values = tuple(unescape_partition_value(p.split("=", 1)[1]) for p in parts)
                found[values] = str(folder) + "/"
        self.metastore.update_partitions(db, name, add=found, if_not_exists=True)
        return QueryResult([], None, "DDL")

    # -- writes ----------------------------------------------------------------------------
    def _create_table_as(self, statement: exp.Create, database: str, query_id: str) -> QueryResult:
        db, name = self._qualified(statement.this, database)
        if self.metastore.table_exists(db, name):
            if statement.args.get("exists"):
                return QueryResult([], None, "DDL")
            raise EngineError(f"ALREADY_EXISTS: Table {db}.{name} already exists")
        options: dict = {"format": "parquet", "partitioned_by": [], "write_compression": "snappy"}
        with_data = True
        props = statement.args.get("properties")
        for prop in props.expressions if props else []:
            if isinstance(prop, exp.PartitionedByProperty):
                options["partitioned_by"] = [e.name for e in prop.this.expressions]
            elif isinstance(prop, exp.FileFormatProperty):
                options["format"] = prop.this.name.lower()
            elif isinstance(prop, exp.WithDataProperty):
                with_data = not prop.args.get("no")
            elif isinstance(prop, exp.LocationProperty):
                options["external_location"] = prop.this.name
            elif isinstance(prop, exp.Property) and prop.args.get("value") is not None:
                options[prop.name.lower()] = prop.args["value"].name
        if options["format"] != "parquet":
            raise EngineError("NOT_SUPPORTED: the embedded engine writes Parquet tables only")
        location = options.get("external_location") or str(self.warehouse / db / name) + "/"
        location = location if location.endswith("/") else location + "/"
        if _visible_files(_local(location)):
            raise EngineError(
                f"HIVE_PATH_ALREADY_EXISTS: Target directory for table '{db}.{name}' already exists: {location}"
            )
        with self._connect() as con:
            query, scanned = self._prepare(con, statement.expression, database)
            columns = self._describe(con, query)
            keys = options["partitioned_by"]
            names = [c for c, _ in columns]
            if keys and names[-len(keys):] != keys:
                raise EngineError(
                    "HIVE_COLUMN_ORDER_MISMATCH: Partition keys must be the last columns in the table "
                    "and in the same order as the table properties: " + ", ".join(keys)
                )
            data_columns = [c for c in columns if c[0] not in keys]
            part_columns = [c for c in columns if c[0] in keys]
            partitions: dict[tuple, str] = {}
            if with_data:  # WITH NO DATA wants the columns only: the query is never run
                select = ", ".join(
                    (f"CAST(s.__c{i} AS {duckdb_type(t)})" if c not in keys else f"s.__c{i}") + f" AS {_ident(c)}"
                    for i, (c, t) in enumerate(columns)
                )
                partitions, _ = self._write(con, f"SELECT {select} FROM ({query}) AS s({_positions(columns)})",
                                            location, keys, options["write_compression"], query_id, existing={})
            table = TableInfo(db, name, tuple(data_columns), tuple(part_columns), location, "parquet",
                              {"write_compression": options["write_compression"]})
            self.metastore.create_table(table)
            if partitions:
                self.metastore.update_partitions(db, name, add=partitions)
        return QueryResult([], None, "DDL", scanned)

    def _insert(self, statement: exp.Insert, database: str, query_id: str) -> QueryResult:
        target = statement.this
        column_list = None
        if isinstance(target, exp.Schema):
            column_list = [c.name for c in target.expressions]
            target = target.this
        db, name = self._qualified(target, database)
        table = self.metastore.get_table(db, name)
        if table.format != "parquet":
            raise EngineError("NOT_SUPPORTED: the embedded engine inserts into Parquet tables only")
        all_columns = list(table.columns + table.partition_keys)
        with self._connect() as con:
            query, scanned = self._prepare(con, statement.expression, database)
            produced = self._describe(con, query)
            wanted = column_list or [c for c, _ in all_columns]
            if len(produced) != len(wanted):
                raise EngineError(
                    f"TYPE_MISMATCH: Insert query has {len(produced)} columns, table has {len(wanted)}"
                )
            position = {c: i for i, c in enumerate(wanted)}
            select = ", ".join(
                (f"CAST(s.__c{position[c]} AS {duckdb_type(t)})" if c in position
                 else f"CAST(NULL AS {duckdb_type(t)})") + f" AS {_ident(c)}"
                for c, t in all_columns
            )
            keys = [k for k, _ in table.partition_keys]
            existing = {p.values: p.location for p in table.partitions}
            partitions, rows = self._write(
                con, f"SELECT {select} FROM ({query}) AS s({_positions(produced)})", table.location, keys,
                table.properties.get("write_compression") or table.properties.get("parquet.compression", "snappy"),
                query_id, existing)
            new = {v: loc for v, loc in partitions.items() if v not in existing}
            if new:
                self.metastore.update_partitions(db, name, add=new)
        return QueryResult([], None, "DML", scanned, update_count=rows)

    def _write(self, con, select: str, location: str, keys: list[str], compression: str,
               query_id: str, existing: dict[tuple, str]) -> tuple[dict[tuple, str], int]:
        """Run ``select`` (data columns, then the partition keys) into Parquet under ``location``,
        one folder a partition, streaming: the rows are never held in memory as a whole. Each
        partition gets one file per write, more only when it exceeds ``MAX_FILE_BYTES``. Returns
        the partitions written (values -> folder) and the rows. New files never replace old ones."""
        compression = {"gzip": "gzip", "zstd": "zstd", "snappy": "snappy", "none": "uncompressed"}.get(
            compression.lower(), "snappy")
        options = (f"FORMAT parquet, COMPRESSION {compression}, FILE_SIZE_BYTES {MAX_FILE_BYTES}, "
                   f"FILENAME_PATTERN {_literal(query_id + '_{i}')}, OVERWRITE_OR_IGNORE true")
        if compression == "zstd":
            # ZSTD's fastest level: files about 2% larger than at DuckDB's default level 3, written
            # in about two thirds of the time (the day's Parquet writes are most of a run's cost).
            options += f", COMPRESSION_LEVEL {ZSTD_LEVEL}"
        if keys:
            options += f", PARTITION_BY ({', '.join(_ident(k) for k in keys)})"
        root = _local(location)
        root.mkdir(parents=True, exist_ok=True)
        # Write beside the table's folders, then move in: readers never see a half-written file.
        staging = Path(tempfile.mkdtemp(prefix=f".{query_id}.", dir=root))
        try:
            (rows,) = con.execute(f"COPY ({select}) TO {_literal(str(staging))} ({options})").fetchone()
            if not keys:
                _move_files(staging, root)
                return {}, rows
            # DuckDB names the folders key=value with the value percent-encoded; this engine
            # (like Hive) escapes fewer characters, so each partition moves to its own name.
            folders = sorted({f.parent for f in staging.rglob("*.parquet")})
            if len(folders) > MAX_WRITE_PARTITIONS:
                raise EngineError(
                    f"HIVE_TOO_MANY_OPEN_PARTITIONS: Exceeded limit of {MAX_WRITE_PARTITIONS} open writers "
                    f"for partitions/buckets ({len(folders)} partitions in one write)"
                )
            written: dict[tuple, str] = {}
            for folder in folders:
                values = tuple(_duckdb_partition_value(part) for part in folder.relative_to(staging).parts)
                target = existing.get(values) or location + partition_path(keys, values)
                _move_files(folder, _local(target))
                written[values] = target
            return written, rows
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # -- queries ---------------------------------------------------------------------------
    def _query(self, query: exp.Query, database: str) -> QueryResult:
        if isinstance(query, exp.Select):
            # Athena names an unnamed result column _col<position>.
            query = query.copy()
            query.set("expressions", [
                e if isinstance(e, (exp.Alias, exp.Column, exp.Star)) else exp.alias_(e, f"_col{i}")
                for i, e in enumerate(query.expressions)
            ])
        with self._connect() as con:
            scanned = self._materialize(con, query, database)
            columns = self._result_columns(con)
            ms = ", ".join(
                (f"CAST({_ident(c)} AS TIMESTAMP_MS)" if t == "timestamp" else _ident(c)) + f" AS {_ident(c)}"
                for c, t in columns
            )
            table = con.sql(f"SELECT {ms} FROM __result").to_arrow_table() if columns else pa.table({})
        return QueryResult(columns, table, "DML", scanned)

    def _prepare(self, con, query: exp.Query, database: str) -> tuple[str, int]:
        """``query`` as DuckDB SQL over views of the catalogue's tables; and the bytes of files read."""
        query = query.copy()
        scanned = self._bind_tables(con, query, database)
        return _translate(query).sql(dialect="duckdb"), scanned

    def _materialize(self, con, query: exp.Query, database: str) -> int:
        """Run ``query`` into the temp table ``__result``; returns the bytes of files read."""
        duck, scanned = self._prepare(con, query, database)
        con.execute(f"CREATE TEMP TABLE __result AS {duck}")
        return scanned

    @staticmethod
    def _describe(con, query: str) -> list[tuple[str, str]]:
        """The result columns of ``query`` (name, Hive type), without running it."""
        rows = con.execute(f"DESCRIBE {query}").fetchall()
        return [(name, hive_type(dtype)) for name, dtype, *_ in rows]

    @staticmethod
    def _result_columns(con) -> list[tuple[str, str]]:
        rows = con.execute("DESCRIBE __result").fetchall()
        return [(name, hive_type(dtype)) for name, dtype, *_ in rows]

    @contextlib.contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # A spill folder of its own: DuckDB names its temporary files the same in every process.
        spill = tempfile.mkdtemp(prefix="runtime_events_duckdb_")
        con = duckdb.connect(config={"threads": self.threads} if self.threads else {})
        try:
            yield self._configure(con, spill)
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)

    def _configure(self, con: duckdb.DuckDBPyConnection, spill: str) -> duckdb.DuckDBPyConnection:
        if self.memory_limit:
            con.execute(f"SET memory_limit = {_literal(self.memory_limit)}")
        con.execute(f"SET temp_directory = {_literal(spill)}")
        con.execute("SET TimeZone = 'UTC'")
        # Athena promises no row order without ORDER BY; keeping it costs DuckDB memory on writes.
        con.execute("SET preserve_insertion_order = false")
        # A partitioned write buffers this many rows per thread before handing them to the files
        # (DuckDB's default, 524,288 rows, holds about 1 GB of alerts; at 65,536 the nested rows
        # of a million OCSF findings still took 1.6 GB, at 16,384 0.9 GB, in the same time).
        con.execute("SET partitioned_write_flush_threshold = 16384")
        # Trino divides integers as integers (truncating); DuckDB's "/" would give a double.
        con.execute("SET integer_division = true")
        for macro in _MACROS:
            con.execute(macro)
        return con

    # -- binding catalogue tables to DuckDB views -------------------------------------------
    def _bind_tables(self, con, query: exp.Query, database: str) -> int:
        cte_names = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
        counter = itertools.count()
        scanned = 0
        for table in list(query.find_all(exp.Table)):
            if not table.db and table.name.lower() in cte_names:
                continue
            if isinstance(table.parent, (exp.Create, exp.Insert, exp.Schema)):
                continue
            db, name = self._qualified(table, database)
            info = self.metastore.get_table(db, name)
            view = f"__t{next(counter)}"
            wants_path = any(
                c.name == "$path" for c in query.find_all(exp.Column)
            )
            scanned += self._create_view(con, view, info, wants_path, self._pruning(table, info))
            alias = table.alias or table.name
            table.replace(exp.Table(this=exp.to_identifier(view), alias=exp.TableAlias(this=exp.to_identifier(alias))))
        return scanned

    @staticmethod
    def _pruning(table: exp.Table, info: TableInfo) -> list[exp.Expression]:
        """Conjuncts of the WHERE beside ``table`` that use only its partition keys."""
        keys = {k for k, _ in info.partition_keys}
        select = table.find_ancestor(exp.Select)
        if not keys or select is None or select.args.get("where") is None:
            return []
        from_tables = [t for t in select.find_all(exp.Table) if t.find_ancestor(exp.Select) is select]
        alias = table.alias_or_name
        conjuncts = []
        for conjunct in select.args["where"].this.flatten() if isinstance(select.args["where"].this, exp.And) else [select.args["where"].this]:
            if conjunct.find(exp.Subquery, exp.Select):
                continue
            cols = list(conjunct.find_all(exp.Column))
            if cols and all(
                c.name in keys and (c.table == alias or (not c.table and len(from_tables) == 1)) for c in cols
            ):
                pruned = conjunct.copy()
                for c in pruned.find_all(exp.Column):
                    c.set("table", None)
                conjuncts.append(pruned)
        return conjuncts

    def _create_view(self, con, view: str, info: TableInfo, wants_path: bool,
                     pruning: list[exp.Expression]) -> int:
        if info.format == "parquet":
            return self._parquet_view(con, view, info, wants_path, pruning)
        keys = [k for k, _ in info.partition_keys]
        if keys:
            partitions = self._prune(con, view, info, self._text_partitions(info), pruning)
            parts = [(rawfiles.list_files(_local(location)), values[0]) for values, location in partitions]
            partition_sql = f", {_ident(keys[0])}"
        else:
            parts = [(rawfiles.list_files(_local(info.location)), None)]
            partition_sql = ""
        failures = getattr(self._streaming, "failures", None)
        lines, scanned = rawfiles.stream_lines(parts, keys[0] if keys else None, failures)
        if not getattr(self._streaming, "enabled", True):
            lines = lines.read_all()
        con.register(f"{view}_lines", lines)
        path = ', "$path"' if wants_path else ""
        if info.format == "text":
            if len(info.columns) != 1 or len(keys) > 1:
                raise EngineError("NOT_SUPPORTED: the embedded engine reads one-column text tables only")
            column = _ident(info.columns[0][0])
            con.execute(f"CREATE TEMP VIEW {view} AS SELECT line AS {column}{partition_sql}{path} FROM {view}_lines")
            return scanned
        # The JSON SerDe: a column per top-level key; a malformed line is a row of nulls.
        selects = []
        for name, hive in info.columns:
            value = f"__doc ->> {_literal('$.' + _json_key(name))}"
            if hive in ("int", "bigint", "smallint", "tinyint"):
                value = f"CASE WHEN regexp_full_match({value}, '[+-]?[0-9]+') THEN TRY_CAST({value} AS {duckdb_type(hive)}) END"
            elif hive.startswith(("map<", "array<", "struct<")):
                # a nested value: from its JSON (a map's or array's scalars read as their text)
                value = f"TRY_CAST(json_extract(__doc, {_literal('$.' + _json_key(name))}) AS {duckdb_type(hive)})"
            elif hive != "string":
                value = f"TRY_CAST({value} AS {duckdb_type(hive)})"
            selects.append(f"{value} AS {_ident(name)}")
        con.execute(
            f"CREATE TEMP VIEW {view} AS SELECT {', '.join(selects)}{partition_sql}{path} FROM "
            f"(SELECT CASE WHEN json_type(trino_json_parse(line)) = 'OBJECT' THEN trino_json_parse(line) END AS __doc, "
            f"\"$path\"{partition_sql} FROM {view}_lines)"
        )
        return scanned

    def _text_partitions(self, info: TableInfo) -> list[tuple[tuple, str]]:
        """Registered partitions, or with partition projection every day of the projected range
        (Athena computes them the same way instead of asking the catalogue)."""
        props = info.properties
        if props.get("projection.enabled", "").lower() != "true":
            return [(p.values, p.location) for p in info.partitions]
        (key, _), = info.partition_keys
        if props.get(f"projection.{key}.type") != "date":
            raise EngineError("NOT_SUPPORTED: the embedded engine projects date partitions only")
        fmt = _java_to_strftime(props[f"projection.{key}.format"])
        first, last = props[f"projection.{key}.range"].split(",")
        parse = lambda text: dt.date.today() if text.strip().upper() == "NOW" else dt.datetime.strptime(text.strip(), fmt).date()  # noqa: E731
        day, end = parse(first), parse(last)
        template = props.get("storage.location.template") or info.location + "${" + key + "}/"
        partitions = []
        while day <= end:
            value = day.strftime(fmt)
            partitions.append(((value,), template.replace("${" + key + "}", value)))
            day += dt.timedelta(days=1)
        return partitions

    @staticmethod
    def _prune(con, view: str, info: TableInfo, partitions: list, pruning: list[exp.Expression]) -> list:
        """The partitions whose values satisfy the query's conditions on partition keys."""
        if not pruning or not partitions:
            return partitions
        keys = [k for k, _ in info.partition_keys]
        rows = pa.table({"__idx": list(range(len(partitions))),
                         **{k: [v[i] for v, _ in partitions] for i, k in enumerate(keys)}})
        con.register(f"{view}_parts", rows)
        where = " AND ".join(c.sql(dialect="duckdb") for c in pruning)
        typed = ", ".join(f"CAST({_ident(k)} AS {duckdb_type(t)}) AS {_ident(k)}" for k, t in info.partition_keys)
        keep = con.execute(
            f"SELECT __idx FROM (SELECT __idx, {typed} FROM {view}_parts) WHERE {where}"
        ).fetchall()
        return [partitions[i] for (i,) in keep]

    def _parquet_view(self, con, view: str, info: TableInfo, wants_path: bool,
                      pruning: list[exp.Expression]) -> int:
        keys = [k for k, _ in info.partition_keys]
        if keys:
            partitions = self._prune(con, view, info, [(p.values, p.location) for p in info.partitions], pruning)
        else:
            partitions = [((), info.location)]
        files: list[tuple[str, tuple]] = []
        for values, location in partitions:
            files.extend((str(f), values) for f in _visible_files(_local(location), ".parquet"))
        keys_sql = "".join(
            f", CAST(m.{_ident(k)} AS {duckdb_type(t)}) AS {_ident(k)}" for k, t in info.partition_keys
        )
        path = ', p.filename AS "$path"' if wants_path else ""
        if not files:
            empty = ", ".join(
                f"CAST(NULL AS {duckdb_type(t)}) AS {_ident(c)}" for c, t in info.columns + info.partition_keys
            )
            path = ', CAST(NULL AS VARCHAR) AS "$path"' if wants_path else ""
            con.execute(f"CREATE TEMP VIEW {view} AS SELECT {empty}{path} WHERE false")
            return 0
        mapping = pa.table({
            "filename": [f for f, _ in files],
            **{k: [v[i] for _, v in files] for i, k in enumerate(keys)},
        })
        con.register(f"{view}_files", mapping)
        file_list = "[" + ", ".join(_literal(f) for f, _ in files) + "]"
        # hive_partitioning off: partition values come from the catalogue alone, never from a
        # name=value folder that happens to be in the path (a curated root under /env=prod/).
        source = f"read_parquet({file_list}, filename = true, union_by_name = true, hive_partitioning = false)"
        # Athena reads Parquet by column name: a column the files do not have (added to the table
        # after they were written) reads as null.
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        columns = ", ".join(
            (f"CAST(p.{_ident(c)} AS {duckdb_type(t)})" if c in present else f"CAST(NULL AS {duckdb_type(t)})")
            + f" AS {_ident(c)}" for c, t in info.columns
        )
        con.execute(
            f"CREATE TEMP VIEW {view} AS SELECT {columns}{keys_sql}{path} "
            f"FROM {source} p JOIN {view}_files m ON p.filename = m.filename"
        )
        return sum(os.path.getsize(f) for f, _ in files)


# Trino functions whose DuckDB namesake differs in what it accepts.
_MACROS = (
    # json_parse is strict (Jackson): NaN, Infinity and trailing commas are not JSON. DuckDB's
    # json() accepts them, so they are looked for outside string literals first; blanking the
    # string literals costs as much as the parse, so only lines that contain them at all do it.
    r"""CREATE MACRO trino_json_parse(s) AS CASE
        WHEN NOT (contains(s, 'NaN') OR contains(s, 'Infinity') OR regexp_matches(s, ',\s*[\]}]'))
        THEN TRY(json(s))
        WHEN NOT regexp_matches(
            regexp_replace(s, '"(?:[^"\\]|\\.)*"', '""', 'g'), '(?:NaN|Infinity|,\s*[\]}])')
        THEN TRY(json(s)) END""",
)


def _translate(query: exp.Expression) -> exp.Expression:
    """Rewrite what sqlglot's DuckDB output would otherwise compute differently from Trino."""

    def rewrite(node: exp.Expression) -> exp.Expression:
        if _is_json_text(node):
            # coalesce(json_extract_scalar(j, '$'), nullif(json_format(j), 'null')): a string as
            # it is, any other value as its JSON text, null for JSON null. DuckDB's
            # json_extract_string is exactly that, in one parse of j instead of three calls.
            return exp.Anonymous(this="json_extract_string", expressions=[
                node.this.this.transform(rewrite), exp.Literal.string("$")])
        if isinstance(node, exp.ParseJSON):
            return exp.Anonymous(this="trino_json_parse", expressions=[node.this])
        if isinstance(node, exp.GenerateSeries) and node.args.get("step") is None and _is_date(node.args.get("start")):
            # sequence(date, date) steps a day at a time; DuckDB wants timestamps and a step.
            days = exp.Anonymous(this="generate_series", expressions=[
                exp.cast(node.args["start"], "TIMESTAMP"), exp.cast(node.args["end"], "TIMESTAMP"),
                exp.Interval(this=exp.Literal.string("1"), unit=exp.var("DAY"))])
            return exp.cast(days, exp.DataType.build("DATE[]", dialect="duckdb"))
        if isinstance(node, exp.JSONExtractScalar) and isinstance(node.expression, exp.JSONPath):
            # Trino's json_extract_scalar gives null for an array or object; DuckDB's ->> its text.
            value = node.this.transform(rewrite)
            path = sqlglot.parse_one(node.expression.sql(dialect="duckdb"), read="duckdb")
            kind = exp.Anonymous(this="json_type", expressions=[value.copy(), path.copy()])
            return exp.Case(ifs=[exp.If(this=exp.In(this=kind, expressions=[exp.Literal.string("OBJECT"),
                                                                          exp.Literal.string("ARRAY")]),
                                        true=exp.null())],
                            default=exp.JSONExtractScalar(this=value, expression=node.expression.copy()))
        if isinstance(node, exp.JSONFormat) and node.args.get("is_json") and not node.args.get("options"):
            # json_format(json): DuckDB's JSON values are already compact JSON text; to_json()
            # would parse and print each one again.
            return exp.cast(node.this.transform(rewrite), exp.DataType.build("TEXT"))
        if (isinstance(node, exp.LowerHex) and isinstance(node.this, exp.SHA2Digest)
                and str(node.this.args.get("length") or "256") == "256" and isinstance(node.this.this, exp.Encode)
                and node.this.this.args.get("charset", exp.Literal.string("utf-8")).name.lower() in ("utf-8", "utf8")):
            # lower(to_hex(sha256(to_utf8(s)))): DuckDB's sha256(s) is that hex digest already.
            return exp.Anonymous(this="sha256", expressions=[node.this.this.this.transform(rewrite)])
        if (isinstance(node, exp.ArrayToString) and node.args.get("null") is None
                and isinstance(node.expression, exp.Literal)
                and isinstance(node.this, exp.Transform) and isinstance(node.this.this, exp.Array)
                and isinstance(node.this.expression, exp.Lambda) and len(node.this.expression.expressions) == 1):
            # array_join(transform(ARRAY[a, b, ...], v -> f(v)), sep) is concat_ws(sep, f(a), f(b), ...):
            # both skip nulls; DuckDB then builds no list and calls no lambda per row.
            lam = node.this.expression
            var = lam.expressions[0].name
            parts = [lam.this.copy().transform(
                lambda n, e=element: e.copy() if isinstance(n, (exp.Identifier, exp.Column)) and n.name == var
                and not isinstance(n.parent, exp.Column) else n)
                for element in node.this.this.expressions]
            return exp.Anonymous(this="concat_ws", expressions=[node.expression.copy(), *parts])
        if (isinstance(node, exp.Anonymous) and node.name.lower() == "map_filter" and len(node.expressions) == 2
                and isinstance(node.expressions[1], exp.Lambda) and len(node.expressions[1].expressions) == 2):
            # map_filter(m, (k, v) -> p): DuckDB has no map_filter; its map_entries are (key, value)
            # structs, filtered as a list and made a map again (entries keep their order).
            lam = node.expressions[1]
            key, value = (e.name for e in lam.expressions)
            entry = "__entry"
            body = lam.this.copy().transform(
                lambda n: exp.Dot(this=exp.column(entry), expression=exp.to_identifier("key" if n.name == key else "value"))
                if isinstance(n, (exp.Identifier, exp.Column)) and n.name in (key, value)
                and not isinstance(n.parent, exp.Column) and not (isinstance(n, exp.Column) and n.table) else n)
            kept = exp.Anonymous(this="list_filter", expressions=[
                _map_entries(node.expressions[0], rewrite),
                exp.Lambda(this=body.transform(rewrite), expressions=[exp.to_identifier(entry)])])
            return exp.Anonymous(this="map_from_entries", expressions=[kept])
        if (isinstance(node, exp.ArrayAgg) and isinstance(node.this, exp.Order) and _ascending(node.this)
                and not isinstance(node.this.this, exp.Distinct) and not isinstance(node.parent, (exp.Filter, exp.Window))):
            # array_agg(x ORDER BY k, ...): DuckDB keeps a sorted buffer per group, several times
            # slower than collecting (k, ..., x) and sorting each list once. The keys sort
            # ascending with nulls last, as Trino's do (a flag before each key); the elements then
            # read back in that order. (DISTINCT, a FILTER clause or OVER keep DuckDB's own.)
            order = node.this
            fields = []
            for number, ordered in enumerate(order.expressions):
                key = ordered.this.transform(rewrite)
                fields.append(exp.PropertyEQ(this=exp.to_identifier(f"n{number}"), expression=exp.Is(
                    this=key.copy(), expression=exp.null())))
                fields.append(exp.PropertyEQ(this=exp.to_identifier(f"k{number}"), expression=key))
            fields.append(exp.PropertyEQ(this=exp.to_identifier("v"), expression=order.this.transform(rewrite)))
            collected = exp.ArrayAgg(this=exp.Struct(expressions=fields))
            element = exp.to_identifier("__sorted")
            return exp.Transform(
                this=exp.Anonymous(this="list_sort", expressions=[collected]),
                expression=exp.Lambda(this=exp.Dot(this=exp.column(element), expression=exp.to_identifier("v")),
                                      expressions=[element.copy()]))
        if isinstance(node, exp.Length) and isinstance(node.this, exp.Encode):
            # length(varbinary) counts bytes in Trino; DuckDB's length() takes no BLOB.
            return exp.Anonymous(this="octet_length", expressions=[node.this.transform(rewrite)])
        if isinstance(node, exp.RegexpReplace) and isinstance(node.args.get("replacement"), exp.Literal):
            # Trino writes group references as $1, RE2 (DuckDB) as \1.
            text = re.sub(r"\$(\d)", r"\\\1", node.args["replacement"].name)
            node.set("replacement", exp.Literal.string(text))
        return node

    translated = query.transform(rewrite)
    for select in list(translated.find_all(exp.Select)):
        _extract_json_once(select)
    return translated


def _map_entries(node: exp.Expression, rewrite) -> exp.Expression:
    """A map's (key, value) entries as DuckDB's list of structs. ``MAP(ARRAY[k...], ARRAY[v...])``
    with distinct literal keys gives them without building the map first (DuckDB's map
    constructor checks its keys, which costs more than all the rest of a map_filter); any other
    map through ``map_entries``, so that a null or repeated key fails as Trino's MAP does."""
    keys = node.args.get("keys")
    if (isinstance(node, exp.Map) and isinstance(keys, exp.Array) and isinstance(node.args.get("values"), exp.Array)
            and len(keys.expressions) == len(node.args["values"].expressions)
            and all(isinstance(k, exp.Literal) for k in keys.expressions)
            and len({(k.is_string, k.name) for k in keys.expressions}) == len(keys.expressions)):
        return exp.Array(expressions=[
            exp.Struct(expressions=[
                exp.PropertyEQ(this=exp.to_identifier("key"), expression=k.transform(rewrite)),
                exp.PropertyEQ(this=exp.to_identifier("value"), expression=v.transform(rewrite))])
            for k, v in zip(node.args["keys"].expressions, node.args["values"].expressions)])
    return exp.Anonymous(this="map_entries", expressions=[node.transform(rewrite)])


def _is_json_text(node: exp.Expression) -> bool:
    """``coalesce(json_extract_scalar(j, '$'), nullif(json_format(j), 'null'))``, one j twice."""
    if not (isinstance(node, exp.Coalesce) and len(node.expressions) == 1):
        return False
    scalar, fallback = node.this, node.expressions[0]
    return (isinstance(scalar, exp.JSONExtractScalar) and isinstance(scalar.expression, exp.JSONPath)
            and scalar.expression.sql(dialect="duckdb") == "'$'"
            and isinstance(fallback, exp.Nullif) and isinstance(fallback.this, exp.JSONFormat)
            and fallback.this.args.get("is_json") and not fallback.this.args.get("options")
            and fallback.expression == exp.Literal.string("null") and fallback.this.this == scalar.this)


def _ascending(order: exp.Order) -> bool:
    """Whether every key of an aggregate's ORDER BY sorts ascending with nulls last (Trino's default)."""
    return bool(order.expressions) and all(
        isinstance(o, exp.Ordered) and not o.args.get("desc") and not o.args.get("nulls_first")
        for o in order.expressions)


def _extract_json_once(select: exp.Select) -> None:
    """Take several ``json_extract(col, path)`` of one SELECT out of a single parse of ``col``.

    DuckDB parses the JSON text again for every extraction; ``json_extract(col, [paths])`` parses
    it once and returns the values as a list. The FROM source becomes a subquery that adds that
    list, and each extraction an element of it. Only a SELECT with one source, no joins and no
    ``*`` is rewritten, so that the added column can neither be ambiguous nor show in the result.
    """
    source = select.args.get("from_")
    if source is None or select.args.get("joins") or any(select.find_all(exp.Star)):
        return
    source = source.this
    alias = source.alias_or_name
    calls: dict[str, list[exp.JSONExtract]] = {}
    for node in select.find_all(exp.JSONExtract):
        column, path = node.this, node.expression
        if (node.find_ancestor(exp.Select) is not select or not isinstance(column, exp.Column)
                or not isinstance(path, exp.JSONPath) or column.table not in ("", alias)):
            continue
        calls.setdefault(column.name, []).append(node)
    wanted = {name: nodes for name, nodes in calls.items() if len(nodes) > 1}
    if not wanted:
        return
    inner = exp.select("*").from_(source.copy())
    for number, (name, nodes) in enumerate(wanted.items()):
        paths = list(dict.fromkeys(n.expression.sql(dialect="duckdb") for n in nodes))
        values = f"__json_values_{number}"
        inner = inner.select(exp.alias_(
            exp.Anonymous(this="json_extract", expressions=[
                exp.column(name), exp.Array(expressions=[sqlglot.parse_one(p, read="duckdb") for p in paths])]),
            values), copy=False)
        for node in nodes:
            index = paths.index(node.expression.sql(dialect="duckdb"))  # sqlglot counts from 0
            node.replace(exp.Bracket(this=exp.column(values, table=alias if node.this.table else None),
                                     expressions=[exp.Literal.number(index)]))
    select.set("from_", exp.From(this=inner.subquery(alias)))


def _is_date(node: exp.Expression | None) -> bool:
    return isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.DATE


def _java_to_strftime(pattern: str) -> str:
    """A Java date pattern of partition projection ("yyyy/MM/dd", "'dt='yyyy-MM-dd") for strftime."""
    out, i = [], 0
    tokens = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H"}
    while i < len(pattern):
        if pattern[i] == "'":
            end = pattern.index("'", i + 1)
            out.append(pattern[i + 1:end].replace("%", "%%") or "'")
            i = end + 1
            continue
        token = next((t for t in tokens if pattern.startswith(t, i)), None)
        if token:
            out.append(tokens[token])
            i += len(token)
        else:
            out.append(pattern[i].replace("%", "%%"))
            i += 1
    return "".join(out)


def _json_key(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'
