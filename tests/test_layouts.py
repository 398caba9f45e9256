"""Raw layouts and compaction: a dated layout reads only its window's folders; the curated copy
and the aggregates are written as one file per partition per run, whatever the input files."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

import oracle
from local_pipeline import Pipeline, make_settings
from runtime_events.simulate import generate_alerts

START = date(2026, 4, 1)
TABLES = ["runtime_events_parquet", "daily_rule_counts", "daily_severity_counts",
          "daily_workload_counts", "daily_cve_counts", "daily_attack_counts"]


def stage_bytes(pipeline: Pipeline) -> int:
    """Bytes the last stage_alerts statement read, as its query statistics report them."""
    infos = [json.loads(p.read_text()) for p in (Path(pipeline.settings.curated_location) / "_query_results").glob("*.json")]
    stages = [i for i in infos if "runtime_events_stage_" in i["Query"] and i["Query"].lstrip().startswith("--")
              and "CREATE TABLE" in i["Query"] and "runtime_events_lines" in i["Query"]]
    latest = max(stages, key=lambda i: i["Status"]["SubmissionDateTime"])
    return latest["Statistics"]["DataScannedInBytes"]


@pytest.mark.parametrize("layout", ["{yyyy}/{MM}/{dd}/", "dt={yyyy}-{MM}-{dd}/", "{yyyy}-{MM}-{dd}/"])
def test_dated_layout_gives_the_contract_tables(tmp_path, layout):
    generate_alerts(tmp_path / "raw", START, 6, clusters=2, events_per_day=80, seed=3, layout=layout)
    pipeline = Pipeline(make_settings(tmp_path, raw_layout=layout))
    day = START + timedelta(days=4)
    run = pipeline.run_day(day.isoformat())
    expected = oracle.expected_tables(tmp_path / "raw", run.day_strings)
    for name in TABLES:
        got = pipeline.table(name)
        assert oracle.canonical(got[list(expected[name].columns)]).equals(oracle.canonical(expected[name])), name


def test_dated_layout_reads_only_the_window(tmp_path):
    layout = "{yyyy}/{MM}/{dd}/"
    generate_alerts(tmp_path / "raw", START, 30, clusters=2, events_per_day=100, seed=4, layout=layout)
    dated = Pipeline(make_settings(tmp_path, raw_layout=layout, curated_location=str(tmp_path / "dated")))
    flat = Pipeline(make_settings(tmp_path, curated_location=str(tmp_path / "flat")))
    dated.run_day((START + timedelta(days=3)).isoformat())
    early = stage_bytes(dated)
    dated.run_day((START + timedelta(days=27)).isoformat())
    late = stage_bytes(dated)
    flat.run_day((START + timedelta(days=27)).isoformat())
    everything = stage_bytes(flat)
    total = sum(p.stat().st_size for p in (tmp_path / "raw").rglob("*") if p.is_file())
    window = sum(p.stat().st_size for d in range(24, 30)
                 for p in (tmp_path / "raw" / f"{START + timedelta(days=d):%Y/%m/%d}").glob("*"))
    assert everything == total
    assert late == window  # arrival folders D-lookback-1 .. D+lookback, nothing else
    assert abs(late - early) <= 0.2 * early  # the cost of a run does not grow with history
    # and both runs' curated tables are the same where their windows overlap
    assert oracle.canonical(dated.table("daily_rule_counts").query("dt >= '2026-04-26'")).equals(
        oracle.canonical(flat.table("daily_rule_counts").query("dt >= '2026-04-26'")))


def test_guide_table_still_reads_every_file_with_a_dated_layout(tmp_path):
    layout = "dt={yyyy}-{MM}-{dd}/"
    summary = generate_alerts(tmp_path / "raw", START, 5, clusters=2, events_per_day=50, seed=8, layout=layout)
    pipeline = Pipeline(make_settings(tmp_path, raw_layout=layout))
    pipeline.run_day((START + timedelta(days=4)).isoformat())
    assert len(pipeline.table("runtime_events")) == summary.alerts_written


def test_many_small_input_files_compact_to_one_file_per_partition(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(300):  # Falcosidekick writes one object per alert
        cluster = "c1" if i % 3 else "c2"
        (raw / f"alert-{i:04d}.json").write_text(json.dumps({
            "evt.time": f"2026-04-10T{i % 24:02d}:{i % 60:02d}:00Z", "cluster_id": cluster,
            "rule_name": "Terminal shell in container", "severity": "Notice", "k8s.pod.name": f"p{i % 7}",
        }) + "\n")
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day("2026-04-10")
    curated = Path(pipeline.settings.curated_location)
    for table, partitions in (("runtime_events_parquet", 2), ("daily_rule_counts", 1), ("daily_workload_counts", 1)):
        files = [p for p in (curated / table).rglob("*.parquet") if "dt=2026-04-10" in str(p)]
        assert len(files) == partitions, (table, files)
    assert len(pipeline.table("runtime_events_parquet")) == 300


def test_any_run_that_builds_a_day_gives_it_the_same_alerts(tmp_path):
    """Dated layout, lookback 2: alerts of 04-10 arrive on 04-09 (clock skew) .. 04-14 (too late).
    Runs for 04-10, 04-11 and 04-12 all build 04-10; each must publish the same alerts: those that
    arrived 04-09 .. 04-12, never the later ones a later run happens to read."""
    layout = "{yyyy}/{MM}/{dd}/"
    raw = tmp_path / "raw"
    for arrival in range(9, 15):
        folder = raw / f"2026/04/{arrival:02d}"
        folder.mkdir(parents=True)
        (folder / "alerts.json").write_text(json.dumps({
            "evt.time": "2026-04-10T12:00:00Z", "cluster_id": "c1", "rule_name": "Logs Removal",
            "k8s.pod.name": f"arrived-{arrival}"}) + "\n")
    published = []
    for order in (["2026-04-10", "2026-04-11", "2026-04-12"], ["2026-04-12", "2026-04-10", "2026-04-11"]):
        for day in order:
            pipeline = Pipeline(make_settings(tmp_path, raw_layout=layout, curated_location=str(tmp_path / day)))
            pipeline.run_day(day)
            published.append(sorted(pipeline.table("runtime_events_parquet").query("dt == '2026-04-10'")["pod_name"]))
    assert published == [sorted(f"arrived-{a}" for a in range(9, 13))] * 6
