"""Hive partition folder names: values escaped as Hive, Athena and Glue write them.

Standard library only: the DAG's modules import it at parse time.
"""

from __future__ import annotations

import re

HIVE_DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
MAX_WRITE_PARTITIONS = 100  # Athena writes at most this many partitions in one CTAS or INSERT
_HIVE_ESCAPED = set('"#%\'*/:=?\\\x7f{[]^') | {chr(c) for c in range(1, 32)}


def escape_partition_value(value: str | None) -> str:
    if value is None or value == "":
        return HIVE_DEFAULT_PARTITION
    return "".join(f"%{ord(c):02X}" if c in _HIVE_ESCAPED else c for c in value)


def unescape_partition_value(text: str) -> str | None:
    if text == HIVE_DEFAULT_PARTITION:
        return None
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


def partition_path(keys: list[str], values: tuple) -> str:
    """``dt=2026-11-20/cluster_id=prod%2Feu/``: a partition's folder below its table."""
    return "".join(f"{k}={escape_partition_value(v)}/" for k, v in zip(keys, values))
