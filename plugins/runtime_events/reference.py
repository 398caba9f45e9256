"""Reference tables shipped with the package: a CSV file each, under ``reference/``.

The file is what people review and change; the DAG writes it into the table's folder as JSON
lines (``publish.place_reference_files``), which Athena and the embedded engine both read with
the JSON SerDe. Each file is checked when it is read: its header, no empty value, no repeated
row, and the form of every ATT&CK id.

Standard library only.
"""

from __future__ import annotations

import csv
import io
import json
import re
from functools import cache
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "reference"
COLUMNS = {
    "rule_attack_techniques": ("rule_name", "tactic", "technique_id", "technique_name", "source"),
}
KEYS = {"rule_attack_techniques": ("rule_name", "tactic", "technique_id")}
_FORMS = {"technique_id": re.compile(r"^T[0-9]{4}(\.[0-9]{3})?$"), "source": re.compile(r"^https://\S+$")}


class ReferenceError(ValueError):
    """A reference file that does not have the form its table needs."""


@cache
def rows(table: str) -> tuple[dict, ...]:
    path = FOLDER / f"{table}.csv"
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS[table]:
            raise ReferenceError(f"{path}: the header must be {','.join(COLUMNS[table])}, not {reader.fieldnames}")
        found = tuple(reader)
    seen = set()
    for number, row in enumerate(found, start=2):
        if any(not (value or "").strip() for value in row.values()) or None in row:
            raise ReferenceError(f"{path} line {number}: every column needs a value ({row})")
        for column, form in _FORMS.items():
            if column in row and not form.match(row[column]):
                raise ReferenceError(f"{path} line {number}: {column} {row[column]!r} is not of its form")
        key = tuple(row[k] for k in KEYS[table])
        if key in seen:
            raise ReferenceError(f"{path} line {number}: {key} is listed twice")
        seen.add(key)
    return found


def json_lines(table: str) -> str:
    """The table's rows as the JSON lines written to its folder: one object a line, in the file's order."""
    out = io.StringIO()
    for row in rows(table):
        out.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
    return out.getvalue()
