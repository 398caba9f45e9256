"""The local command line (contract, section 7), run as the real console script in a subprocess.

Expected results are computed here from the generated files with json, independently of the
project's code.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / ".venv" / "bin" / "runtime-events"
GENERATE = ["generate", "--start", "2026-11-20", "--days", "2", "--clusters", "2",
            "--events-per-day", "50", "--seed", "7"]
COLUMNS = ["container.id", "evt.time", "k8s.ns.name", "k8s.pod.name", "proc.cmdline", "proc.pid",
           "cluster_id", "rule_name", "description", "severity", "related_cves"]

# The Panoptica guide's queries, verbatim (contract, section 4).
Q_RULES = ("SELECT rule_name, severity, COUNT(rule_name) as count_rules FROM runtime_events "
           "GROUP BY rule_name, severity ORDER BY count_rules;")
Q_HIGH = ('SELECT rule_name, "proc.cmdline", "evt.time" FROM runtime_events WHERE severity=\'High\' '
          'ORDER BY "evt.time" DESC limit 8;')
Q_MINER = "SELECT * FROM runtime_events WHERE rule_name='Detect Outbound Connections To Common Miner Pool Ports';"
MISSING = "SELECT * FROM no_such_table"
MINER = "Detect Outbound Connections To Common Miner Pool Ports"

pytestmark = pytest.mark.skipif(not CLI.exists(), reason="run setup first: .venv/bin/runtime-events is missing")


def cli_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_VAR_RUNTIME_EVENTS_")}
    env.update({
        "AIRFLOW_VAR_RUNTIME_EVENTS_RAW_LOCATION": str(root / "raw"),
        "AIRFLOW_VAR_RUNTIME_EVENTS_CURATED_LOCATION": str(root / "curated"),
        "RUNTIME_EVENTS_SKIP_AIRFLOW_VARIABLES": "1",
    })
    env.update(extra)
    return env


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(CLI), *args], env=env or cli_env(root), cwd=root, capture_output=True,
                          text=True, timeout=120)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def alert_lines(folder: Path) -> list[str]:
    """Non-blank lines of every alert file under ``folder`` (hidden and _ names skipped)."""
    lines = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).parts
        if not path.is_file() or any(part.startswith((".", "_")) for part in rel):
            continue
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        lines += [line for line in data.decode("utf-8").split("\n") if line.strip()]
    return lines


def raw_row(alert: dict) -> dict:
    """The runtime_events row for one alert: strings as text (non-strings as compact JSON), pid int."""
    row = {}
    for column in COLUMNS:
        value = alert.get(column)
        if column == "proc.pid":
            if isinstance(value, str) and value.lstrip("+-").isascii() and value.lstrip("+-").isdigit():
                value = int(value)
            value = value if type(value) is int and -2**31 <= value < 2**31 else None
        elif value is not None and not isinstance(value, str):
            value = json.dumps(value, separators=(",", ":"))
        row[column] = value
    return row


def cell(value) -> str:
    return "" if value is None else str(value)


def parse_csv(text: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows, "no header row"
    return rows[0], rows[1:]


def parse_json_lines(text: str) -> list[dict]:
    lines = text.splitlines()
    assert all(line.strip() for line in lines)
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) for o in objects)
    return objects


# --- generate ----------------------------------------------------------------------------------

def test_generate_writes_the_requested_alerts_into_raw_location(tmp_path):
    result = ok(run(tmp_path, *GENERATE))
    raw = tmp_path / "raw"
    assert raw.is_dir() and not (tmp_path / "curated").exists()
    lines = alert_lines(raw)
    assert len(lines) == 100
    alerts = [json.loads(line) for line in lines]
    assert all(isinstance(a, dict) for a in alerts)
    assert len({a["cluster_id"] for a in alerts}) == 2
    assert {a["rule_name"] for a in alerts} & {"Modify Password Files", "Dump Process Memory",
                                                "Modify SSH Authorized Keys", "Logs Removal",
                                                "Mount Cgroups Into Container", MINER}
    assert "100" in result.stderr  # says what it wrote
    # a second run into the same folder replaces, never appends
    before = snapshot(raw)
    ok(run(tmp_path, *GENERATE))
    assert snapshot(raw) == before


def test_generate_is_deterministic(tmp_path):
    ok(run(tmp_path / "a", *GENERATE, env=cli_env(tmp_path / "a")))
    ok(run(tmp_path / "b", *GENERATE, env=cli_env(tmp_path / "b")))
    first = snapshot(tmp_path / "a" / "raw")
    assert first and first == snapshot(tmp_path / "b" / "raw")


def test_generate_out_writes_there_instead(tmp_path):
    out = tmp_path / "elsewhere"
    ok(run(tmp_path, *GENERATE, "--out", str(out)))
    assert not (tmp_path / "raw").exists()
    assert len(alert_lines(out)) == 100
    ok(run(tmp_path / "x", *GENERATE, env=cli_env(tmp_path / "x")))
    assert snapshot(out) == snapshot(tmp_path / "x" / "raw")


# --- bad settings ------------------------------------------------------------------------------

@pytest.mark.parametrize(("command", "name", "value"), [
    *[pytest.param(command, name, value, id=f"{cid}-{name}")
      for cid, command in (("generate", GENERATE), ("query", ["query", "SELECT 1"]))
      for name, value in (("database", "x;y"), ("raw_location", "/tmp/a'; DROP TABLE x; --"),
                          ("lookback_days", "-1"))],
    pytest.param(GENERATE, "raw_layout", "../{yyyy}/{MM}/{dd}/", id="generate-raw_layout"),
])
def test_a_bad_setting_exits_non_zero_naming_it(tmp_path, command, name, value):
    env = cli_env(tmp_path, **{f"AIRFLOW_VAR_RUNTIME_EVENTS_{name.upper()}": value})
    result = run(tmp_path, *command, env=env)
    assert result.returncode != 0
    assert f"runtime_events_{name}" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").rglob("*"))


# --- query -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Generated alerts, with the database and the guide's runtime_events table created through
    the CLI itself. Returns (root, the expected rows of runtime_events, {query args: its result})."""
    root = tmp_path_factory.mktemp("lake")
    ok(run(root, *GENERATE))
    ddl = (REPO / "include/sql/runtime_events/create_table.sql").read_text()
    ddl = "\n".join(line for line in ddl.splitlines() if not line.startswith("--"))
    assert "{{ params.database }}" in ddl and "{{ params.raw_location }}" in ddl
    ddl = ddl.replace("{{ params.database }}", "runtime_security").replace(
        "{{ params.raw_location }}", f"{root / 'raw'}/")
    ok(run(root, "query", "CREATE DATABASE IF NOT EXISTS runtime_security"))
    ok(run(root, "query", ddl))
    rows = [raw_row(json.loads(line)) for line in alert_lines(root / "raw")]
    assert len(rows) == 100
    # Each query process spends seconds importing; run them all at once (read-only, concurrent).
    commands = [(sql, *fmt) for sql in (Q_RULES, Q_HIGH, Q_MINER) for fmt in ((), ("--format", "json"))]
    commands.append((MISSING,))
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        outputs = dict(zip(commands, pool.map(lambda c: run(root, "query", *c), commands)))
    return root, rows, outputs


def test_guide_query_rule_counts(lake):
    _, rows, outputs = lake
    counts = Counter((r["rule_name"], r["severity"]) for r in rows)
    expected = {(rule, sev): sum(1 for r in rows if (r["rule_name"], r["severity"]) == (rule, sev)
                                 and r["rule_name"] is not None) for rule, sev in counts}
    header, got = parse_csv(ok(outputs[(Q_RULES,)]).stdout)
    assert header == ["rule_name", "severity", "count_rules"]
    assert Counter(map(tuple, got)) == Counter((cell(k[0]), cell(k[1]), str(n)) for k, n in expected.items())
    assert [int(r[2]) for r in got] == sorted(int(r[2]) for r in got)  # ORDER BY count_rules
    assert sum(int(r[2]) for r in got) == 100

    objects = parse_json_lines(ok(outputs[(Q_RULES, "--format", "json")]).stdout)
    assert all(list(o) == header for o in objects)
    assert all(type(o["count_rules"]) is int for o in objects)
    assert Counter((o["rule_name"], o["severity"], o["count_rules"]) for o in objects) == Counter(
        (k[0], k[1], n) for k, n in expected.items())
    assert Counter(tuple(cell(v) for v in o.values()) for o in objects) == Counter(map(tuple, got))


def test_guide_query_latest_high_severity(lake):
    _, rows, outputs = lake
    high = [(r["rule_name"], r["proc.cmdline"], r["evt.time"]) for r in rows if r["severity"] == "High"]
    assert high, "the simulation should produce High alerts"
    # ORDER BY a varchar DESC: code-point order, nulls last (Athena/Trino default), then LIMIT 8
    ordered = sorted(high, key=lambda h: (h[2] is not None, h[2] or ""), reverse=True)[:8]
    header, got = parse_csv(ok(outputs[(Q_HIGH,)]).stdout)
    assert header == ["rule_name", "proc.cmdline", "evt.time"]
    assert len(got) == len(ordered)
    assert [r[2] for r in got] == [cell(h[2]) for h in ordered]
    assert not Counter(map(tuple, got)) - Counter(tuple(cell(v) for v in h) for h in high)
    if len(high) <= 8:
        assert Counter(map(tuple, got)) == Counter(tuple(cell(v) for v in h) for h in high)

    objects = parse_json_lines(ok(outputs[(Q_HIGH, "--format", "json")]).stdout)
    assert all(list(o) == header for o in objects)
    assert [o["evt.time"] for o in objects] == [h[2] for h in ordered]
    assert not Counter(tuple(o.values()) for o in objects) - Counter(high)
    assert Counter(tuple(cell(v) for v in o.values()) for o in objects) == Counter(map(tuple, got))


def test_guide_query_miner_pool_alerts(lake):
    _, rows, outputs = lake
    expected = [r for r in rows if r["rule_name"] == MINER]
    assert expected, "the simulation should produce miner-pool alerts"
    header, got = parse_csv(ok(outputs[(Q_MINER,)]).stdout)
    assert header == COLUMNS
    assert Counter(map(tuple, got)) == Counter(tuple(cell(r[c]) for c in COLUMNS) for r in expected)

    objects = parse_json_lines(ok(outputs[(Q_MINER, "--format", "json")]).stdout)
    assert all(list(o) == COLUMNS for o in objects)
    assert Counter(json.dumps(o, sort_keys=True) for o in objects) == Counter(
        json.dumps(r, sort_keys=True) for r in expected)
    assert all(o["proc.pid"] is None or type(o["proc.pid"]) is int for o in objects)


def test_a_failing_query_exits_1_with_athenas_error(lake):
    result = lake[2][(MISSING,)]
    assert result.returncode == 1
    assert "TABLE_NOT_FOUND" in result.stderr
    assert "no_such_table" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
