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
    "attack_techniques": ("technique_id", "technique_name", "tactic", "tactic_tag", "source"),
}
KEYS = {"rule_attack_techniques": ("rule_name", "tactic", "technique_id"),
        "attack_techniques": ("technique_id", "tactic")}
_FORMS = {"technique_id": re.compile(r"T[0-9]{4}(\.[0-9]{3})?"), "source": re.compile(r"https://\S+")}
# MITRE ATT&CK Enterprise's tactics, as https://attack.mitre.org/tactics/enterprise/ names them.
TACTICS = frozenset({
    "Reconnaissance", "Resource Development", "Initial Access", "Execution", "Persistence",
    "Privilege Escalation", "Defense Evasion", "Credential Access", "Discovery", "Lateral Movement",
    "Collection", "Command and Control", "Exfiltration", "Impact"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ReferenceError(ValueError):
    """A reference file that does not have the form its table needs."""


@cache
def rows(table: str) -> tuple[dict, ...]:
    """The rows of the reference table shipped with the package, checked."""
    return read(FOLDER / f"{table}.csv", table)


def read(path: Path, table: str) -> tuple[dict, ...]:
    """The rows of reference file ``path`` for ``table``; ReferenceError naming the line when a
    row is not of the table's form."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # a spreadsheet's BOM is allowed
            reader = csv.DictReader(f, strict=True)
            if tuple(reader.fieldnames or ()) != COLUMNS[table]:
                raise ReferenceError(f"{path}: the header must be {','.join(COLUMNS[table])}, not "
                                     f"{','.join(reader.fieldnames or ()) or 'missing'}")
            found = tuple(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ReferenceError(f"{path}: not a UTF-8 CSV file ({exc})") from None
    if not found:
        raise ReferenceError(f"{path}: no rows (a reference table that maps nothing empties what it feeds)")
    seen = set()
    for number, row in enumerate(found, start=2):
        if None in row or None in row.values():
            raise ReferenceError(f"{path} line {number}: {len(COLUMNS[table])} columns expected")
        for column, value in row.items():
            if not value or value != value.strip() or _CONTROL.search(value):
                raise ReferenceError(f"{path} line {number}: {column} {value!r} is empty, has spaces around it "
                                     "or control characters")
        for column, form in _FORMS.items():
            if column in row and not form.fullmatch(row[column]):
                raise ReferenceError(f"{path} line {number}: {column} {row[column]!r} is not of its form")
        if "tactic" in row and row["tactic"] not in TACTICS:
            raise ReferenceError(f"{path} line {number}: tactic {row['tactic']!r} is not an ATT&CK Enterprise "
                                 f"tactic ({', '.join(sorted(TACTICS))})")
        if "tactic_tag" in row and row["tactic_tag"] != "mitre_" + row["tactic"].lower().replace(" ", "_"):
            raise ReferenceError(f"{path} line {number}: tactic_tag {row['tactic_tag']!r} is not Falco's tag of "
                                 f"{row['tactic']!r}")
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
