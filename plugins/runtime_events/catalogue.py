"""The catalogue of each engine: which partitions a table has and where each one's files are.

``GlueCatalogue`` is the AWS Glue Data Catalog behind Athena (through the Amazon provider's
hook); ``EmbeddedCatalogue`` is the embedded engine's metastore of JSON files. Both change a
table's partitions in one call and refuse partition values that do not match the table's keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from runtime_events.settings import Settings

Values = tuple[str | None, ...]


class PartitionKeysError(ValueError):
    """Partition values that do not match the table's partition keys."""


def check_values(table: str, keys: list[str], values: list[Values]) -> None:
    for v in values:
        if len(v) != len(keys) or not all(x is None or isinstance(x, str) for x in v):
            raise PartitionKeysError(f"partition {list(v)} does not match the keys {keys} of table {table}")


# The fields of Glue's GetTable answer that UpdateTable takes back.
_TABLE_INPUT = ("Name", "Description", "Owner", "LastAccessTime", "LastAnalyzedTime", "Retention",
                "StorageDescriptor", "PartitionKeys", "ViewOriginalText", "ViewExpandedText", "TableType",
                "Parameters", "TargetTable")


class GlueRefused(Exception):
    """Glue answered a partition change with errors (a concurrent change, throttling): retried."""


class Catalogue(Protocol):
    def partitions(self, table: str) -> dict[Values, str]: ...
    def replace_partitions(self, table: str, new: dict[Values, str], drop: list[Values]) -> dict[Values, str]: ...
    def drop_table(self, table: str) -> None: ...
    def tables(self) -> list[str]: ...
    def definition(self, table: str) -> dict | None: ...
    def set_aside_damaged(self, table: str) -> str | None: ...
    def add_columns(self, table: str, columns: list[tuple[str, str]]) -> None: ...


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

    def add_columns(self, table: str, columns: list[tuple[str, str]]) -> None:
        self.metastore.add_columns(self.database, table, columns)

    def set_aside_damaged(self, table: str) -> str | None:
        """Move a catalogue file that cannot be read aside (``repair`` then re-creates the table)."""
        from runtime_events.embedded.metastore import CatalogError

        try:
            self.definition(table)
            return None
        except CatalogError:
            return str(self.metastore.set_aside(self.database, table))

    def definition(self, table: str) -> dict | None:
        if not self.metastore.table_exists(self.database, table):
            return None
        info = self.metastore.get_table(self.database, table)
        return {"location": info.location, "parameters": info.properties,
                "columns": [c for c, _ in info.columns], "column_types": dict(info.columns),
                "partition_keys": [k for k, _ in info.partition_keys]}


# -- AWS: Glue through the Amazon provider's hook ---------------------------------------------
class GlueCatalogue:
    def __init__(self, settings: Settings) -> None:
        from airflow.providers.amazon.aws.hooks.glue_catalog import GlueCatalogHook

        from runtime_events.engines import AWS_CLIENT_CONFIG

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
        check_values(table, keys, [*new, *drop])
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

    def add_columns(self, table: str, columns: list[tuple[str, str]]) -> None:
        """Glue's UpdateTable with the columns appended (what ALTER TABLE ADD COLUMNS does)."""
        found = self.client.get_table(DatabaseName=self.database, Name=table)["Table"]
        table_input = {key: found[key] for key in _TABLE_INPUT if key in found}
        descriptor = dict(table_input["StorageDescriptor"])
        taken = {c["Name"] for c in descriptor.get("Columns", [])} | {k["Name"] for k in found.get("PartitionKeys", [])}
        descriptor["Columns"] = [*descriptor.get("Columns", []),
                                 *({"Name": c, "Type": t} for c, t in columns if c not in taken)]
        self.client.update_table(DatabaseName=self.database, TableInput={**table_input, "StorageDescriptor": descriptor})

    def set_aside_damaged(self, table: str) -> str | None:
        return None  # Glue keeps no files of its own to damage

    def definition(self, table: str) -> dict | None:
        try:
            found = self.client.get_table(DatabaseName=self.database, Name=table)["Table"]
        except self.client.exceptions.EntityNotFoundException:
            return None
        return {"location": found["StorageDescriptor"].get("Location"), "parameters": found.get("Parameters", {}),
                "columns": [c["Name"] for c in found["StorageDescriptor"].get("Columns", [])],
                "column_types": {c["Name"]: c.get("Type", "") for c in found["StorageDescriptor"].get("Columns", [])},
                "partition_keys": [k["Name"] for k in found.get("PartitionKeys", [])]}

    @staticmethod
    def _check(response: dict) -> None:
        errors = response.get("Errors") or []
        if errors:
            raise GlueRefused(f"Glue refused partition changes: {errors[:3]}")
