"""The pipeline's own SQL files and publish steps on the embedded engine, without Airflow.

Every table is compared row for row with tests/oracle.py, an independent pandas reading of the
contract run on the same raw files (tests/alert_fixtures.py: every evt.time form, duplicates
across files and gzip, odd cluster ids, bad lines). The DAG itself is exercised in test_dag.py.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

import oracle
from alert_fixtures import _base, _line, _ns, _write, iso, write_nasty_alerts
from local_pipeline import Pipeline, make_settings
from runtime_events import checks, planning, publish
from runtime_events.embedded.engine import EmbeddedEngine
from runtime_events.tables import AGGREGATES

DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
DATED = ["runtime_events_parquet", *(t.name for t in AGGREGATES)]
CURATED_TABLES = [*DATED, "rule_attack_techniques", "attack_techniques"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    write_nasty_alerts(tmp / "raw", DAYS)
    pipeline = Pipeline(make_settings(tmp))
    pipeline.run_day(DAYS[-1])
    return tmp, pipeline


@pytest.mark.parametrize("table", CURATED_TABLES)
def test_tables_equal_the_oracle(loaded, table):
    tmp, pipeline = loaded
    expected = oracle.expected_tables(tmp / "raw", DAYS)[table]
    got = pipeline.table(table)
    assert oracle.canonical(got[list(expected.columns)]).equals(oracle.canonical(expected))


def test_each_ocsf_finding_is_its_curated_alert(loaded):
    """The OCSF rows' uids are the curated table's event ids, one finding per alert, and a
    finding's fields are its own alert's."""
    _, pipeline = loaded
    table = pipeline.table("runtime_events_parquet").astype(object)
    curated = table.where(table.notna(), None).set_index("event_id")
    findings = pipeline.table("ocsf_detection_findings")
    uids = [m["uid"] for m in findings["metadata"]]
    assert uids == [f["uid"] for f in findings["finding_info"]]
    assert sorted(uids) == sorted(curated.index) and len(set(uids)) == len(uids) > 100
    for uid, info, message, unmapped, dt in zip(uids, findings["finding_info"], findings["message"],
                                                findings["unmapped"], findings["dt"]):
        alert = curated.loc[uid]
        assert (info["title"], info["desc"], dt) == (alert["rule_name"], alert["description"], alert["dt"])
        assert dict(unmapped)["source_file"] == alert["source_file"]
        assert message == (alert["description"] if alert["description"] is not None else alert["rule_name"])


def test_curated_columns_and_types(loaded):
    _, pipeline = loaded
    engine = EmbeddedEngine(Path(pipeline.settings.curated_location) / "_catalog")
    info = engine.metastore.get_table("runtime_security", "runtime_events_parquet")
    assert [(c, t) for c, t in info.columns + info.partition_keys] == [
        ("event_id", "string"), ("event_time", "timestamp"), ("container_id", "string"),
        ("namespace", "string"), ("pod_name", "string"), ("cmdline", "string"), ("pid", "int"),
        ("rule_name", "string"), ("description", "string"), ("severity", "string"),
        ("related_cves", "array<string>"), ("source_file", "string"), ("tags", "array<string>"),
        ("hostname", "string"), ("alert_format", "string"), ("dt", "string"), ("cluster_id", "string"),
    ]


def test_event_ids_are_unique_hex_digests_shared_by_equal_alerts(loaded):
    tmp, pipeline = loaded
    events = pipeline.table("runtime_events_parquet")
    assert events["event_id"].is_unique
    assert events["event_id"].str.fullmatch(r"[0-9a-f]{64}").all()
    # every published row comes from a file under the raw folder
    assert events["source_file"].map(lambda f: Path(f).is_relative_to(tmp / "raw")).all()


def test_load_audit_accounts_for_every_line(loaded):
    tmp, pipeline = loaded
    audit = pipeline.table("runtime_events_load_audit").set_index("dt", drop=False)
    expected = oracle.expected_counts(tmp / "raw")
    for _, row in expected.iterrows():
        if row["dt"] is not None and row["dt"] not in DAYS:
            continue
        got = audit.loc[row["dt"]] if row["dt"] is not None else audit[audit["dt"].isna()].iloc[0]
        assert got["alerts_loaded"] == row["loaded"]
        assert got["duplicates_dropped"] == row["duplicate"]
        for reason in oracle.REASONS:
            assert got[f"rejected_{reason}"] == row[f"rejected_{reason}"], reason
        assert got["lines_scanned"] == got["alerts_loaded"] + got["duplicates_dropped"] + got["lines_rejected"]
    assert sorted(audit["dt"].dropna()) == DAYS


def test_rerun_leaves_identical_tables_and_one_version(loaded):
    tmp, pipeline = loaded
    def tables():
        return {t: oracle.canonical(pipeline.table(t).query("dt in @DAYS") if t in DATED else pipeline.table(t))
                for t in CURATED_TABLES}

    before = tables()
    pipeline.run_day(DAYS[-1])
    pipeline.run_day(DAYS[1])  # an overlapping window, out of order
    for table, rows in tables().items():
        assert rows.equals(before[table]), table
    # replaced versions are kept for retention_days: one folder per partition and run that built
    # its day (windows 03-01..03-03 twice, then 02-28..03-02); the runs' stages are gone
    def folders():
        return {f.parent for f in (tmp / "curated" / "runtime_events_parquet").rglob("*.parquet")}

    events = pipeline.table("runtime_events_parquet")
    per_day = events.groupby("dt")["cluster_id"].nunique().to_dict()
    builds = {"2026-02-28": 1, "2026-03-01": 3, "2026-03-02": 3, "2026-03-03": 2}
    assert len(folders()) == sum(n * builds[day] for day, n in per_day.items())
    later = datetime.now(timezone.utc) + timedelta(days=pipeline.settings.retention_days, minutes=1)
    publish.clean_up(pipeline.lake, None, now=later)
    assert len(folders()) == events.groupby(["dt", "cluster_id"]).ngroups
    for table, rows in tables().items():
        assert rows.equals(before[table]), table
    assert not (tmp / "curated" / "runtime_events_parquet" / "_stage").exists() or not any(
        (tmp / "curated" / "runtime_events_parquet" / "_stage").iterdir())


def test_days_without_alerts_get_empty_aggregate_partitions(tmp_path):
    (tmp_path / "raw").mkdir()
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day("2026-05-10")
    engine = EmbeddedEngine(tmp_path / "curated" / "_catalog")
    for table in AGGREGATES:
        info = engine.metastore.get_table("runtime_security", table.name)
        assert sorted(p.values[0] for p in info.partitions) == ["2026-05-08", "2026-05-09", "2026-05-10"]
        assert pipeline.table(table.name).empty
    audit = pipeline.table("runtime_events_load_audit")
    assert sorted(audit["dt"].dropna()) == ["2026-05-08", "2026-05-09", "2026-05-10"]
    assert audit["lines_scanned"].sum() == 0


def test_reject_threshold_names_counts_reasons_and_files(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    good = '{"evt.time": "2026-05-10T10:00:00Z", "cluster_id": "c1", "rule_name": "r"}\n'
    (raw / "good.json").write_text(good * 10)
    (raw / "bad.json").write_text('{"evt.time": "nope", "cluster_id": "c1", "rule_name": "r"}\n' * 3 + "garbage\n")
    pipeline = Pipeline(make_settings(tmp_path, reject_threshold="0.2"))
    with pytest.raises(checks.DataQualityError) as failure:
        pipeline.run_day("2026-05-10")
    message = str(failure.value)
    assert "4 of 14 alert lines" in message
    assert "runtime_events_reject_threshold=0.2" in message
    assert "bad_event_time 3" in message and "malformed_json 1" in message
    assert str(raw / "bad.json") in message and "good.json" not in message
    # nothing was published
    engine = EmbeddedEngine(tmp_path / "curated" / "_catalog")
    assert engine.metastore.get_table("runtime_security", "runtime_events_parquet").partitions == ()


def test_reject_share_is_taken_over_every_scanned_line(tmp_path):
    """A quiet window over a long history: old garbage is a small share of what the run read."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "history.json").write_text("".join(
        f'{{"evt.time": "2026-01-{d:02d}T10:00:00Z", "cluster_id": "c1", "rule_name": "r{i}"}}\n'
        for d in range(1, 29) for i in range(4)))
    (raw / "garbage.json").write_text("not json\n" * 10)
    (raw / "today.json").write_text('{"evt.time": "2026-05-10T10:00:00Z", "cluster_id": "c1", "rule_name": "r"}\n' * 2)
    pipeline = Pipeline(make_settings(tmp_path, reject_threshold="0.1"))
    pipeline.run_day("2026-05-10")  # 10 of 124 lines rejected: 8%, under the threshold
    audit = pipeline.table("runtime_events_load_audit")
    assert audit.loc[audit["dt"].isna(), "rejected_malformed_json"].item() == 10
    assert audit.loc[audit["dt"] == "2026-05-10", "alerts_loaded"].item() == 1
    assert audit.loc[audit["dt"] == "2026-05-10", "duplicates_dropped"].item() == 1
    (raw / "garbage.json").write_text("not json\n" * 20)
    with pytest.raises(checks.DataQualityError, match="20 of 134 alert lines"):
        pipeline.run_day("2026-05-10")


def test_more_than_100_partitions_are_written_in_batches_of_at_most_100(tmp_path):
    # 3 days x 100 clusters = 300 partitions of the window: three INSERT batches, each a range of
    # partitions in (dt, cluster_id) order. Cluster ids that need quoting in SQL sit on the
    # batches' edges: the first and the last of each day.
    clusters = ["a'", "a''b"] + [f"m{i:03d}" for i in range(96)] + ["z é", "z\\'"]
    lines = []
    for day in DAYS:
        for n, cluster in enumerate(clusters):
            alert = _base(day, cluster=cluster, **{"evt.time": iso(_ns(day, 1 + n % 20, n % 60))})
            lines += [_line(alert), _line({**alert, "proc.pid": n})]
    _write(tmp_path / "raw" / "a.json", lines)
    _write(tmp_path / "raw" / "copy.json", lines[::7])  # duplicates in another file
    pipeline = Pipeline(make_settings(tmp_path))
    run = pipeline.write(DAYS[-1])
    batches = planning.write_batches(pipeline.rows("runtime_events_parquet/audit_stage.sql", run))
    edges = [(b["partitions"]["first_dt"], b["partitions"]["first_cluster_id"],
              b["partitions"]["last_dt"], b["partitions"]["last_cluster_id"]) for b in batches]
    everything = sorted((d, c) for d in DAYS for c in clusters)
    assert edges == [(day, "a'", day, "z\\'") for day in DAYS]
    assert edges == [(*everything[i], *everything[min(i + 99, len(everything) - 1)]) for i in range(0, 300, 100)]
    pipeline.run_day(DAYS[-1])
    expected = oracle.expected_tables(tmp_path / "raw", DAYS)["runtime_events_parquet"]
    got = pipeline.table("runtime_events_parquet")
    assert len(got) == len(expected) == 2 * 300
    assert oracle.canonical(got[list(expected.columns)]).equals(oracle.canonical(expected))


def test_the_readme_weekly_technique_query_answers_what_pandas_does(loaded):
    """README "Tables and columns": which techniques hit which clusters this week, run as Athena
    SQL on the published table (the week ending on the fixture's last day)."""
    import re

    import sqlglot

    tmp, pipeline = loaded
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    query = re.search(r"Which techniques hit which clusters this week:\n\n```sql\n(.*?)```", readme, re.S).group(1)
    sqlglot.parse_one(query, read="athena")
    query = query.replace("current_date", f"DATE '{DAYS[-1]}'")
    engine = EmbeddedEngine(tmp / "curated" / "_catalog")
    got = engine.execute(query, "runtime_security").table.to_pandas()
    # the week's published days (a rerun of another test may have published 02-28 too), each
    # compared with the oracle by test_tables_equal_the_oracle
    week = sorted(set(pipeline.table("daily_attack_counts")["dt"]) & {
        (date.fromisoformat(DAYS[-1]) - timedelta(days=n)).isoformat() for n in range(7)})
    daily = oracle.expected_tables(tmp / "raw", week)["daily_attack_counts"]
    rank = ["Unknown", "Info", "Low", "Medium", "High", "Critical"]
    rows = []
    for key, g in daily.groupby(["cluster_id", "tactic", "technique_id", "technique_name"]):
        rows.append((*key, int(g["event_count"].sum()), max(g["max_severity"], key=rank.index)))
    assert len(rows) > 3
    assert sorted(rows) == sorted(zip(got["cluster_id"], got["tactic"], got["technique_id"], got["technique_name"],
                                      got["alerts"].astype(int), got["worst"]))
