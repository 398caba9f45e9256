"""Query results in Athena's shape: text cells with column types, and back to Python values.

Athena returns every cell as text (``VarCharValue``) with the column types beside it; the
embedded engine returns its results the same way, so the code that reads a result (checks, the
command line) is the same for both engines.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from decimal import Decimal

# Athena's result type names for the Hive types a table or a query has.
_RESULT_TYPES = {"string": "varchar", "int": "integer", "bigint": "bigint", "double": "double",
                 "float": "real", "boolean": "boolean", "timestamp": "timestamp", "date": "date",
                 "smallint": "smallint", "tinyint": "tinyint"}


def result_type(hive: str) -> str:
    if hive.startswith("array"):
        return "array"
    if hive.startswith("decimal"):
        return "decimal"
    return _RESULT_TYPES.get(hive, "varchar")


def athena_text(value: object) -> str | None:
    """A value as Athena's result text: ``2026-11-20 10:00:00.123``, ``[a, b]``, ``true``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join("null" if v is None else athena_text(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def result_set(columns: list[tuple[str, str]], rows: Iterable[tuple], header: bool) -> dict:
    """Athena's ``GetQueryResults`` ``ResultSet`` for ``rows``."""
    cells = [[{"VarCharValue": name} for name, _ in columns]] if header else []
    for row in rows:
        cells.append([{} if v is None else {"VarCharValue": athena_text(v)} for v in row])
    return {
        "Rows": [{"Data": c} for c in cells],
        "ResultSetMetadata": {
            "ColumnInfo": [
                {"Name": name, "Label": name, "Type": result_type(hive), "Nullable": "UNKNOWN",
                 "CatalogName": "hive", "SchemaName": "", "TableName": ""}
                for name, hive in columns
            ]
        },
    }


def parse_value(text: str | None, athena_type: str) -> object:
    """Athena's text for a cell back to a Python value."""
    if text is None:
        return None
    if athena_type in ("integer", "bigint", "smallint", "tinyint"):
        return int(text)
    if athena_type in ("double", "real", "float"):
        return float(text)
    if athena_type == "decimal":
        return Decimal(text)
    if athena_type == "boolean":
        return text == "true"
    if athena_type == "timestamp":
        return dt.datetime.fromisoformat(text)
    if athena_type == "date":
        return dt.date.fromisoformat(text)
    if athena_type == "array":
        inner = text[1:-1]
        return [] if not inner else [None if v == "null" else v for v in inner.split(", ")]
    return text


def iter_rows(pages: Iterable[dict]) -> Iterator[dict]:
    """Rows of ``GetQueryResults`` pages as dicts of Python values (header row skipped)."""
    columns = None
    first = True
    for page in pages:
        result = page["ResultSet"]
        if columns is None:
            columns = [(c["Name"], c["Type"]) for c in result["ResultSetMetadata"]["ColumnInfo"]]
        rows = result["Rows"]
        if first and rows and [d.get("VarCharValue") for d in rows[0]["Data"]] == [n for n, _ in columns]:
            rows = rows[1:]
        first = False
        for row in rows:
            yield {name: parse_value(cell.get("VarCharValue"), t)
                   for (name, t), cell in zip(columns, row["Data"])}


def json_line(row: dict) -> str:
    return json.dumps(row, default=_json_default, ensure_ascii=False)


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime):
        return athena_text(value)
    if isinstance(value, (dt.date, Decimal)):
        return str(value)
    raise TypeError(type(value))
