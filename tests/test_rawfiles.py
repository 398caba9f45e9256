"""The raw-file reader against a line-by-line reading written here: Athena's text SerDe splits on
``\\n``, drops a trailing ``\\r`` and (for this pipeline) blank lines; bad UTF-8 is marked."""

from __future__ import annotations

import gzip
import random

import pytest

from runtime_events.embedded import rawfiles


def expected_lines(data: bytes) -> list[str]:
    out = []
    for raw in data.split(b"\n"):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw:
            continue
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            out.append("\ufffd" + raw.decode("utf-8", errors="replace"))
    return out


PIECES = [b"{\"a\": 1}", b"\n", b"\r\n", b"\r", b"", b"\xc3\xa9", b"\xff", b"\xe2\x82", b" ", b"\n\n", b"x" * 300,
          b"\r\r\n", b"\x00", "\u2028".encode()]


def random_files(count: int) -> list[bytes]:
    rng = random.Random(20261127)
    files = [b"", b"\n", b"\r\n", b"one", b"one\n", b"one\r", b"a\n\nb\r\n\r\n", b"\xff\n", b"ok\n\xff\xfe\nok\n"]
    for _ in range(count):
        files.append(b"".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 40))))
    return files


@pytest.mark.parametrize("data", random_files(300))
def test_arrow_split_equals_line_by_line_reading(data: bytes) -> None:
    assert rawfiles.split_lines_arrow(data).to_pylist() == expected_lines(data)


def test_stream_keeps_each_files_path_and_partition_and_counts_its_bytes(tmp_path) -> None:
    plain = tmp_path / "a.json"
    plain.write_bytes(b"x\ny\r\n\n")
    packed = tmp_path / "b.json.gz"
    packed.write_bytes(gzip.compress(b"z\n\xff\n"))
    empty = tmp_path / "c.json"
    empty.write_bytes(b"")
    files = [tmp_path / f"{n:02d}.json" for n in range(12)]  # more files than read-ahead slots
    for n, path in enumerate(files):
        path.write_bytes(b"".join(b"%d-%d\n" % (n, i) for i in range(n)))
    stream, scanned = rawfiles.stream_lines([([plain, packed], "d1"), ([empty], "d2"), (files, "d3")], "arrival")
    table = stream.read_all()
    assert table.column("line").to_pylist() == ["x", "y", "z", "\ufffd\ufffd"] + [
        f"{n}-{i}" for n in range(12) for i in range(n)]
    assert table.column("$path").to_pylist() == [str(plain)] * 2 + [str(packed)] * 2 + [
        str(path) for n, path in enumerate(files) for _ in range(n)]
    assert table.column("arrival").to_pylist() == ["d1"] * 4 + ["d3"] * sum(range(12))
    assert scanned == sum(p.stat().st_size for p in [plain, packed, empty, *files])


def test_an_unreadable_file_ends_the_stream_and_is_reported(tmp_path) -> None:
    good = tmp_path / "a.json"
    good.write_bytes(b"x\n")
    bad = tmp_path / "b.json.gz"
    bad.write_bytes(gzip.compress(b"y\n" * 100)[:-10])
    failures: list = []
    stream, _ = rawfiles.stream_lines([([good, bad], None)], failures=failures)
    with pytest.raises(rawfiles.RawFileError, match="b.json.gz"):
        stream.read_all()
    assert len(failures) == 1 and str(bad) in str(failures[0])


def test_a_folder_that_cannot_be_listed_fails_naming_it(tmp_path, monkeypatch):
    """Root (CI) reads every folder whatever its mode, so the refusal is the operating system's
    answer played back: PermissionError from os.scandir for one folder."""
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.json").write_text("{}\n")
    (tmp_path / "locked").mkdir()
    real_scandir = rawfiles.os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(rawfiles.os, "scandir", scandir)
    with pytest.raises(rawfiles.RawFileError, match=f"cannot list the raw folder {tmp_path / 'locked'}: Permission denied"):
        rawfiles.list_files(tmp_path)


def test_hidden_names_are_skipped_and_every_other_entry_is_listed(tmp_path):
    for name in ("a.json", "_SUCCESS", ".tmp.json", "sub/b.json.gz", "_temporary/c.json", ".hidden/d.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    (tmp_path / "loop").symlink_to(tmp_path)  # a link back to the root: read once, no endless walk
    assert rawfiles.list_files(tmp_path) == [tmp_path / "a.json", tmp_path / "sub" / "b.json.gz"]
