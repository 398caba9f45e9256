"""The embedded engine's text SerDe: files of lines under a table location, as Athena reads them.

Athena lists a table's location recursively, skips names starting with ``.`` or ``_``, and
decompresses ``.gz`` files. This module does the same for local folders and hands DuckDB an
Arrow table with one row per line and Athena's ``$path`` pseudo-column.

A line that is not valid UTF-8 becomes its text with replacement characters, prefixed by U+FFFD:
no JSON parser accepts it, just as Athena's JSON functions refuse the raw bytes. A file that
cannot be read at all (a corrupt gzip stream) fails the whole query with the file's name, so no
part of it is ever loaded.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

INVALID_UTF8_MARK = "\ufffd"


class RawFileError(Exception):
    pass


def list_files(location: str | Path, folders: Iterable[str] | None = None) -> list[Path]:
    """Every visible file under ``location`` (or only under its sub-``folders``), sorted."""
    root = Path(location)
    tops = [root / f for f in folders] if folders is not None else [root]
    found: list[Path] = []
    for top in tops:
        if not top.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
            found.extend(Path(dirpath) / f for f in filenames if not f.startswith((".", "_")))
    return sorted(set(found))


def read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise RawFileError(
                f"HIVE_CURSOR_ERROR: cannot read {path}: corrupt gzip stream ({exc})"
            ) from None
    return data


def split_lines(data: bytes) -> list[str]:
    """The file's lines as text; empty lines are dropped, a trailing ``\\r`` is removed."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [_decode_line(raw) for raw in data.split(b"\n") if raw not in (b"", b"\r")]
    return [line.removesuffix("\r") for line in text.split("\n") if line not in ("", "\r")]


def split_lines_arrow(data: bytes) -> pa.Array:
    """:func:`split_lines` as an Arrow array, split and checked by Arrow's kernels: about four
    times faster than building Python strings. Text that is not valid UTF-8 takes the line-by-line
    path, so that only its bad lines are marked."""
    whole = pa.Array.from_buffers(
        pa.large_binary(), 1, [None, pa.py_buffer(struct.pack("<qq", 0, len(data))), pa.py_buffer(data)]
    )
    parts = pc.list_flatten(pc.split_pattern(whole, b"\n"))
    try:
        lines = parts.cast(pa.large_string())
    except pa.ArrowInvalid:
        return pa.array(split_lines(data), type=pa.large_string())
    if pc.any(pc.ends_with(lines, "\r")).as_py():
        lines = pc.replace_substring_regex(lines, "\r$", "", max_replacements=1)
    lengths = pc.binary_length(lines)
    empty = pc.sum(pc.equal(lengths, 0)).as_py() or 0
    if empty == 1 and lengths[-1].as_py() == 0:  # the usual case: the file ends with a newline
        return lines.slice(0, len(lines) - 1)
    return lines.filter(pc.not_equal(lengths, 0)) if empty else lines


def _decode_line(raw: bytes) -> str:
    raw = raw.removesuffix(b"\r")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return INVALID_UTF8_MARK + raw.decode("utf-8", errors="replace")


def read_lines(files: Iterable[Path]) -> tuple[pa.Table, int]:
    """All lines of ``files`` as an Arrow table (``line``, ``$path``), and the bytes read.

    Files are read and split on a few threads: reading, decompressing and Arrow's kernels
    release the GIL. The rows keep the order of ``files``."""
    files = list(files)
    if not files:
        return _empty(), 0
    with ThreadPoolExecutor(max_workers=min(len(files), os.cpu_count() or 1, 4)) as pool:
        lines = list(pool.map(lambda path: split_lines_arrow(read_bytes(path)), files))
    paths = [
        pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(len(file_lines), dtype=np.int32)), pa.array([str(path)], type=pa.large_string())
        )
        for path, file_lines in zip(files, lines)
    ]
    return (
        pa.table({
            "line": pa.chunked_array(lines, type=pa.large_string()),
            "$path": pa.chunked_array(paths),
        }),
        sum(path.stat().st_size for path in files),
    )


def _empty() -> pa.Table:
    return pa.table({
        "line": pa.array([], type=pa.large_string()),
        "$path": pa.array([], type=pa.large_string()).dictionary_encode(),
    })
