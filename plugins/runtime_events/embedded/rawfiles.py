"""The embedded engine's text SerDe: files of lines under a table location, as Athena reads them.

Athena lists a table's location recursively, skips names starting with ``.`` or ``_``, and
decompresses ``.gz`` files. This module does the same for local folders and hands DuckDB a
stream of Arrow record batches with one row per line and Athena's ``$path`` pseudo-column.

A line that is not valid UTF-8 becomes its text with replacement characters, prefixed by U+FFFD:
no JSON parser accepts it, just as Athena's JSON functions refuse the raw bytes. A file that
cannot be read at all (a corrupt gzip stream) fails the whole query with the file's name, so no
part of it is ever loaded.
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

INVALID_UTF8_MARK = "\ufffd"


class RawFileError(Exception):
    pass


def list_files(location: str | Path, folders: Iterable[str] | None = None) -> list[Path]:
    """Every visible file under ``location`` (or only under its sub-``folders``), sorted.

    Names starting with ``.`` or ``_`` are skipped, as Athena does. Every other entry is read or
    fails the listing with :class:`RawFileError` naming it: a folder that cannot be listed, a
    special file (a FIFO would block the reader for ever), a link that leads outside
    ``location`` or nowhere. Links inside it are followed, to files and folders alike."""
    root = Path(location)
    real_root = os.path.realpath(root)
    tops = [root / f for f in folders] if folders is not None else [root]
    found: list[Path] = []
    seen: set[str] = set()
    for top in tops:
        if top.is_dir():
            _walk(top, real_root, seen, found)
    return sorted(set(found))


def display_path(path: Path | str) -> str:
    """A path as text that is valid UTF-8 whatever bytes its name has (``\\xff`` escapes)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def _walk(folder: Path, real_root: str, seen: set[str], found: list[Path]) -> None:
    real = os.path.realpath(folder)
    if real in seen:  # reached twice through links: read once
        return
    seen.add(real)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise RawFileError(f"HIVE_CANNOT_OPEN_SPLIT: cannot list the raw folder {display_path(folder)}: "
                           f"{exc.strerror}") from None
    for entry in entries:
        if entry.name.startswith((".", "_")):
            continue
        path = Path(entry.path)
        if entry.is_symlink():
            target = os.path.realpath(path)
            if not (target == real_root or target.startswith(real_root.rstrip(os.sep) + os.sep)):
                raise RawFileError(f"HIVE_CANNOT_OPEN_SPLIT: {display_path(path)} is a link to "
                                   f"{display_path(target)}, outside the raw location {display_path(real_root)}")
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise RawFileError(f"HIVE_CANNOT_OPEN_SPLIT: cannot read {display_path(path)}: {exc.strerror}") from None
        if stat.S_ISDIR(mode):
            _walk(path, real_root, seen, found)
        elif stat.S_ISREG(mode):
            found.append(path)
        else:
            raise RawFileError(f"HIVE_CANNOT_OPEN_SPLIT: {display_path(path)} is not a regular file (a FIFO, "
                               "socket or device): move it out of the raw location")


def read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RawFileError(f"HIVE_CANNOT_OPEN_SPLIT: cannot read {display_path(path)}: {exc.strerror}") from None
    if path.name.endswith(".gz"):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise RawFileError(
                f"HIVE_CURSOR_ERROR: cannot read {display_path(path)}: corrupt gzip stream ({exc})"
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


def stream_lines(parts: list[tuple[list[Path], str | None]], key: str | None = None,
                 failures: list | None = None) -> tuple[pa.RecordBatchReader, int]:
    """The lines of every file of ``parts`` (files, and the value of the partition column ``key``
    they belong to) as a stream of record batches, one a file, and the bytes the files hold.

    Files are read a few ahead on threads while the consumer works on earlier ones, so that at
    no time are all lines in memory: DuckDB frees each batch once it has scanned it. A stream can
    be scanned only once. A file that cannot be read ends the stream with :class:`RawFileError`,
    also appended to ``failures``: the consumer may report it in its own words."""
    fields = [pa.field("line", pa.large_string()), pa.field("$path", pa.large_string())]
    if key is not None:
        fields.append(pa.field(key, pa.large_string()))
    schema = pa.schema(fields)
    jobs = [(path, value) for files, value in parts for path in files]
    scanned = sum(path.stat().st_size for path, _ in jobs)
    workers = min(len(jobs), os.cpu_count() or 1, 4) or 1

    def batch(path: Path, value: str | None, lines: pa.Array) -> pa.RecordBatch:
        repeat = pa.array(np.zeros(len(lines), dtype=np.int32))
        columns = [lines, pa.DictionaryArray.from_arrays(repeat, pa.array([display_path(path)], pa.large_string()))
                   .cast(pa.large_string())]
        if key is not None:
            columns.append(pa.DictionaryArray.from_arrays(repeat, pa.array([value], pa.large_string()))
                           .cast(pa.large_string()))
        return pa.RecordBatch.from_arrays(columns, schema=schema)

    def batches() -> Iterator[pa.RecordBatch]:
        pending: deque = deque()
        todo = iter(jobs)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            def submit() -> None:
                job = next(todo, None)
                if job is not None:
                    pending.append((job, pool.submit(lambda path: split_lines_arrow(read_bytes(path)), job[0])))
            for _ in range(2 * workers):
                submit()
            while pending:
                (path, value), future = pending.popleft()
                submit()
                try:
                    lines = future.result()
                except RawFileError as exc:
                    if failures is not None:
                        failures.append(exc)
                    raise
                yield batch(path, value, lines)

    return pa.RecordBatchReader.from_batches(schema, batches()), scanned
