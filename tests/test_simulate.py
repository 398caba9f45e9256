"""The simulated alert files: what the pipeline and the `generate` command rely on."""
from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from runtime_events.simulate import ATTACK_RULES, KEYS, generate_alerts

START = date(2026, 11, 20)


def read_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return [line for line in data.split(b"\n") if line.strip()]


def parse(line: bytes) -> dict | None:
    """The alert object a line holds, or None when the line is malformed (contract, section 3)."""
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def utc_day(evt_time: int | str) -> date:
    """Event day per the contract's evt.time rules, written independently of the generator."""
    if isinstance(evt_time, int) or evt_time.isdigit():
        value = int(evt_time)
        scale = next(s for limit, s in ((1e17, 10**9), (1e14, 10**6), (1e11, 10**3), (0, 1)) if value >= limit)
        return date(1970, 1, 1) + timedelta(days=value // scale // 86400)
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.\d{1,9})?(Z|[+-]\d\d:?\d\d)?", evt_time.strip())
    assert m, f"unparseable evt.time {evt_time!r}"
    zone = (m.group(3) or "Z").replace("Z", "+00:00")
    local = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}{zone[:3]}:{zone[-2:]}")
    return local.astimezone(timezone.utc).date()


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_byte_identical_files_and_reruns_overwrite(tmp_path):
    args = dict(start=START, days=2, seed=7, gzip_every=3, bad_line_ratio=0.02)
    generate_alerts(tmp_path / "a", **args)
    generate_alerts(tmp_path / "b", **args)
    first = snapshot(tmp_path / "a")
    assert first and first == snapshot(tmp_path / "b")
    generate_alerts(tmp_path / "a", **args)  # same folder again: replaced, not appended
    assert snapshot(tmp_path / "a") == first
    generate_alerts(tmp_path / "c", **{**args, "seed": 8})
    assert snapshot(tmp_path / "c") != first


def test_every_line_is_an_alert_object_with_the_eleven_keys(tmp_path):
    summary = generate_alerts(tmp_path, START, days=2, gzip_every=2)
    assert any(p.name.endswith(".json.gz") for p in summary.files)
    alerts = [parse(line) for path in summary.files for line in read_lines(path)]
    assert len(alerts) == summary.alerts_written == 400
    for alert in alerts:
        assert alert is not None and set(alert) == set(KEYS)
        assert isinstance(alert["cluster_id"], str) and alert["cluster_id"]
        assert isinstance(alert["rule_name"], str) and alert["rule_name"]
    assert len({a["cluster_id"] for a in alerts}) == 3
    times = [a["evt.time"] for a in alerts]
    assert sum(isinstance(t, int) for t in times) > len(times) / 2  # mostly Falco's nanoseconds
    assert any(isinstance(t, str) and t.endswith("Z") for t in times)
    assert any(isinstance(t, str) and re.search(r"[+-]\d\d:?\d\d$", t) for t in times)


def test_a_week_on_three_clusters_shows_all_six_attack_simulations(tmp_path):
    summary = generate_alerts(tmp_path, START, days=7, clusters=3, events_per_day=200)
    rules = Counter(parse(line)["rule_name"] for path in summary.files for line in read_lines(path))
    assert set(ATTACK_RULES) <= set(rules)
    assert rules["Terminal shell in container"] > max(rules[r] for r in ATTACK_RULES)  # noise dominates


def test_per_day_counts_match_the_files(tmp_path):
    messages: list[str] = []
    summary = generate_alerts(tmp_path, START, days=3, events_per_day=150, clusters=2, progress=messages.append)
    by_event_day: Counter[date] = Counter()
    for path in tmp_path.rglob("alerts-*"):
        file_day = datetime.strptime(path.name.split("-")[1], "%Y%m%d").date()
        for line in read_lines(path):
            assert utc_day(parse(line)["evt.time"]) == file_day
            by_event_day[file_day] += 1
    assert dict(by_event_day) == summary.per_day == {START + timedelta(days=i): 150 for i in range(3)}
    assert summary.alerts_written == 450
    assert messages[0].startswith("2026-11-20: 150 alerts in 8 files")


@pytest.mark.parametrize("layout, folders", [
    ("flat", [".", "."]),
    ("{yyyy}/{MM}/{dd}/", ["2026/11/30", "2026/12/01"]),
    ("dt={yyyy}-{MM}-{dd}/", ["dt=2026-11-30", "dt=2026-12-01"]),
])
def test_layout_puts_files_in_their_arrival_day_folder(tmp_path, layout, folders):
    summary = generate_alerts(tmp_path, date(2026, 11, 30), days=2, clusters=1, layout=layout)
    expected = {"20261130": folders[0], "20261201": folders[1]}
    found = Counter()
    for path in tmp_path.rglob("alerts-*"):
        assert path.parent.relative_to(tmp_path).as_posix() == expected[path.name.split("-")[1]]
        found[path.name.split("-")[1]] += 1
    assert found == {"20261130": 4, "20261201": 4}
    assert sorted(summary.files) == sorted(tmp_path.rglob("alerts-*"))


@pytest.mark.parametrize("layout", ["{yyyy}/{week}/", "/abs/{yyyy}/", "../{yyyy}/", "_tmp/{yyyy}/", ""])
def test_bad_layout_is_refused_before_writing(tmp_path, layout):
    with pytest.raises(ValueError, match="layout"):
        generate_alerts(tmp_path, START, days=1, layout=layout)
    assert not any(tmp_path.iterdir())


def test_bad_line_ratio_adds_that_many_malformed_lines(tmp_path):
    summary = generate_alerts(tmp_path, START, days=2, bad_line_ratio=0.05, gzip_every=2)
    lines = [line for path in summary.files for line in read_lines(path)]
    malformed = sum(parse(line) is None for line in lines)
    # a day's 200 alerts are 67 + 67 + 66 on the three clusters; 5% of each rounds to 3
    assert summary.bad_lines == malformed == 2 * (3 + 3 + 3)
    assert len(lines) - malformed == summary.alerts_written == 400
