"""Never lose, double or half-publish an alert: readers during rebuilds, crashes, late alerts,
secrets in command lines. Runs the pipeline's own SQL and publish steps on the embedded engine;
expected values come from the independent oracle."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import oracle
from alert_fixtures import write_nasty_alerts
from local_pipeline import Pipeline, make_settings
from runtime_events import checks, planning, publish
from runtime_events.embedded.engine import EmbeddedEngine
from runtime_events.tables import AGGREGATES

DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
TABLES = ["runtime_events_parquet", *(t.name for t in AGGREGATES)]


def snapshot(pipeline: Pipeline) -> dict:
    return {t: oracle.canonical(pipeline.table(t).query("dt in @DAYS")) for t in TABLES}


@pytest.fixture
def loaded(tmp_path):
    write_nasty_alerts(tmp_path / "raw", DAYS)
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day(DAYS[-1])
    return tmp_path, pipeline


def test_readers_see_old_or_new_partitions_never_empty_or_doubled(loaded):
    tmp, pipeline = loaded
    expected = oracle.expected_tables(tmp / "raw", DAYS)
    per_partition = Counter(zip(expected["runtime_events_parquet"]["dt"], expected["runtime_events_parquet"]["cluster_id"]))
    per_day = expected["daily_severity_counts"].groupby("dt")["event_count"].sum().to_dict()
    engine = EmbeddedEngine(tmp / "curated" / "_catalog")
    failures: list[BaseException] = []

    def rebuild() -> None:
        try:
            for day in (DAYS[-1], DAYS[1], DAYS[-1]):
                pipeline.run_day(day)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    writer = threading.Thread(target=rebuild)
    writer.start()
    reads = 0
    while writer.is_alive() or reads < 3:
        events = engine.execute(
            "SELECT dt, cluster_id, count(*) AS n FROM runtime_events_parquet GROUP BY dt, cluster_id",
            "runtime_security").table.to_pylist()
        seen = {(r["dt"], r["cluster_id"]): r["n"] for r in events if r["dt"] in DAYS}
        assert seen == dict(per_partition)
        severities = engine.execute(
            "SELECT dt, sum(event_count) AS n FROM daily_severity_counts GROUP BY dt", "runtime_security"
        ).table.to_pylist()
        assert {r["dt"]: r["n"] for r in severities if r["dt"] in DAYS} == per_day
        reads += 1
    writer.join()
    assert not failures, failures
    assert reads >= 3


def test_a_run_that_died_before_publishing_is_invisible_and_cleaned_up(loaded):
    tmp, pipeline = loaded
    before = snapshot(pipeline)
    crashed = pipeline.write(DAYS[-1])  # staged and written, never published, no teardown
    during = snapshot(pipeline)
    assert all(during[t].equals(before[t]) for t in TABLES)
    stage = tmp / "curated" / "runtime_events_parquet" / "_stage" / crashed.run_token
    version = tmp / "curated" / "runtime_events_parquet" / crashed.run_token
    assert stage.is_dir() and version.is_dir()

    pipeline.run_day(DAYS[-1])  # the next run completes normally
    after = snapshot(pipeline)
    for table in TABLES:
        assert after[table].equals(before[table]), table

    # the dead run's work is swept once it is old enough that it cannot still be running
    publish.clean_up(pipeline.lake, None, now=datetime.now(timezone.utc) + planning.STALE_AFTER + timedelta(minutes=1))
    assert not stage.exists() and not version.exists()
    leftovers = [t for t in EmbeddedEngine(tmp / "curated" / "_catalog").metastore.list_tables("runtime_security")
                 if crashed.run_token in t]
    assert leftovers == []
    for table in TABLES:
        assert snapshot(pipeline)[table].equals(before[table]), table


def test_a_recent_run_in_progress_is_not_swept(loaded):
    tmp, pipeline = loaded
    in_progress = pipeline.write(DAYS[-1])
    publish.clean_up(pipeline.lake, None)
    assert (tmp / "curated" / "runtime_events_parquet" / "_stage" / in_progress.run_token).is_dir()


def test_late_alerts_within_lookback_are_in_the_next_run(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    alert = '{{"evt.time": "{t}", "cluster_id": "c1", "rule_name": "Logs Removal", "severity": "High", "k8s.pod.name": "p{i}"}}\n'
    (raw / "on-time.json").write_text("".join(alert.format(t=f"2026-06-10T0{i}:00:00Z", i=i) for i in range(5)))
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day("2026-06-10")
    # two alerts of June 9th and one of June 7th arrive after the June 10th run
    (raw / "late.json").write_text(alert.format(t="2026-06-09T23:59:59.999Z", i=7)
                                   + alert.format(t="2026-06-09T12:00:00+02:00", i=8)
                                   + alert.format(t="2026-06-07T12:00:00Z", i=9))
    pipeline.run_day("2026-06-11")  # window 06-09 .. 06-11
    events = pipeline.table("runtime_events_parquet")
    assert sorted(events["dt"].value_counts().items()) == [("2026-06-09", 2), ("2026-06-10", 5)]
    counts = pipeline.table("daily_rule_counts").set_index("dt")["event_count"].to_dict()
    assert counts == {"2026-06-09": 2, "2026-06-10": 5}


def test_redact_cmdline_masks_secrets_in_the_curated_copy_only(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    cmdlines = {
        "mysql -u root --password=hunter2 db": "mysql -u root --password=**** db",
        "app --token s3cr3t-value --verbose": "app --token **** --verbose",
        "curl -H Authorization: Bearer eyJhbGciOi.abc-def_ghi https://x": "curl -H Authorization: Bearer **** https://x",
        "aws configure set aws_access_key_id AKIAIOSFODNN7EXAMPLE": "aws configure set aws_access_key_id AKIA****************",
        "env DB_PASSWORD=topsecret ./run": "env DB_PASSWORD=**** ./run",
        "ls -la /tmp": "ls -la /tmp",
    }
    lines = [f'{{"evt.time": "2026-06-10T0{i}:00:00Z", "cluster_id": "c1", "rule_name": "r", "proc.cmdline": "{c}", '
             f'"description": "shell ran ({c}) in c1"}}\n' for i, c in enumerate(cmdlines)]
    (raw / "alerts.json").write_text("".join(lines))
    pipeline = Pipeline(make_settings(tmp_path, redact_cmdline="true"))
    pipeline.run_day("2026-06-10")
    curated = pipeline.table("runtime_events_parquet")
    assert sorted(curated["cmdline"]) == sorted(cmdlines.values())
    # the description (Falco's output quotes the command line) is masked too, and so is the OCSF export
    assert sorted(curated["description"]) == sorted(f"shell ran ({c}) in c1" for c in cmdlines.values())
    findings = pipeline.table("ocsf_detection_findings")
    assert sorted(findings["message"]) == sorted(f"shell ran ({c}) in c1" for c in cmdlines.values())
    raw_table = sorted(pipeline.table("runtime_events")["proc.cmdline"])
    assert raw_table == sorted(cmdlines)


def test_partitions_of_days_whose_alerts_disappeared_are_dropped(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.json").write_text('{"evt.time": "2026-06-10T01:00:00Z", "cluster_id": "gone", "rule_name": "r"}\n'
                                '{"evt.time": "2026-06-10T01:00:00Z", "cluster_id": "kept", "rule_name": "r"}\n')
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day("2026-06-10")
    (raw / "a.json").write_text('{"evt.time": "2026-06-10T01:00:00Z", "cluster_id": "kept", "rule_name": "r"}\n')
    with pytest.raises(checks.DataQualityError, match=r"dt=2026-06-10: 1 rows rebuilt against 2 published, fewer in cluster_id=gone \(1 -> 0\)"):
        pipeline.run_day("2026-06-10")  # fewer alerts than published: only on purpose
    assert sorted(pipeline.table("runtime_events_parquet")["cluster_id"]) == ["gone", "kept"]
    pipeline.run_day("2026-06-10", allow_shrink=True)
    assert list(pipeline.table("runtime_events_parquet")["cluster_id"]) == ["kept"]
    # the dropped partition's files are kept for retention_days, then deleted
    gone = list(Path(tmp_path / "curated" / "runtime_events_parquet").rglob("cluster_id=gone"))
    assert len(gone) == 1
    later = datetime.now(timezone.utc) + timedelta(days=pipeline.settings.retention_days, minutes=1)
    publish.clean_up(pipeline.lake, None, now=later)
    assert not any(Path(tmp_path / "curated" / "runtime_events_parquet").rglob("cluster_id=gone"))
