"""Falco's own alerts in (setting raw_format): Falcosidekick's S3 output read into the same
curated table and aggregates, alone (`falco`) and mixed with Panoptica's alerts (`auto`).

Every table is compared with tests/oracle.py, which reads Falco's shape on its own
(oracle.falco_view); tests/alert_fixtures.write_falco_alerts writes the edge cases.
"""

from __future__ import annotations

import pytest

import oracle
from alert_fixtures import write_falco_alerts, write_nasty_alerts
from local_pipeline import Pipeline, make_settings
from runtime_events.settings import Settings, SettingsError
from runtime_events.tables import AGGREGATES

DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
TABLES = ["runtime_events_parquet", *(t.name for t in AGGREGATES)]


@pytest.fixture(scope="module", params=["falco", "auto"])
def loaded(request, tmp_path_factory):
    fmt = request.param
    tmp = tmp_path_factory.mktemp(f"falco-{fmt}")
    if fmt == "falco":  # Falcosidekick's layout alone: <prefix>/<YYYY-MM-DD>/<time>.json
        write_falco_alerts(tmp / "raw", DAYS)
        settings = make_settings(tmp, raw_format="falco", raw_layout="{yyyy}-{MM}-{dd}/")
    else:  # both shapes in one bucket, told apart line by line
        write_nasty_alerts(tmp / "raw", DAYS)
        write_falco_alerts(tmp / "raw" / "falco", DAYS)
        settings = make_settings(tmp, raw_format="auto")
    pipeline = Pipeline(settings)
    pipeline.run_day(DAYS[-1])
    return tmp, pipeline, fmt


@pytest.mark.parametrize("table", TABLES)
def test_tables_equal_the_oracle(loaded, table):
    tmp, pipeline, fmt = loaded
    expected = oracle.expected_tables(tmp / "raw", DAYS, fmt)[table]
    got = pipeline.table(table)
    assert len(expected) > 0 or (table == "daily_cve_counts" and fmt == "falco")  # Falco names no CVEs
    assert oracle.canonical(got[list(expected.columns)]).equals(oracle.canonical(expected))


def test_falco_values_are_kept(loaded):
    tmp, pipeline, fmt = loaded
    events = pipeline.table("runtime_events_parquet")
    falco = events[events["source_file"].str.contains(r"/\d{4}-\d{2}-\d{2}T")]  # Falcosidekick names files by time
    assert len(falco) > 100
    assert set(falco["hostname"]) >= {"node-0", "node-1", "12345"}
    tags = {tuple(t) for t in falco["tags"]}
    assert ("T1098.004", "mitre_persistence") in tags  # the strings of an odd tags array, in order
    assert ("T1059", "container", "mitre_execution", "shell") in tags
    if fmt == "auto":
        panoptica = events[~events.index.isin(falco.index)]
        assert len(panoptica) > 100 and all(len(t) == 0 for t in panoptica["tags"])
        assert panoptica["hostname"].isna().all()


def test_an_alerts_own_tags_name_its_techniques(loaded):
    """A rule the reference does not list, tagged T1611, T1059 and mitre_privilege_escalation:
    T1611 under Privilege Escalation (ATT&CK lists it there); T1059 (Execution in ATT&CK) under
    the alert's only tactic tag, as the reference file pairs a rule's tags (Falco's claim)."""
    _, pipeline, _ = loaded
    attack = pipeline.table("daily_attack_counts")
    rows = attack[attack["cluster_id"] == "tagged-only"]
    assert sorted((r.tactic, r.technique_id, r.technique_name, r.event_count) for r in rows.itertuples()) == [
        ("Privilege Escalation", "T1059", "Command and Scripting Interpreter", 1),
        ("Privilege Escalation", "T1611", "Escape to Host", 1)]


def test_alerts_that_share_a_uuid_stay_two_rows(loaded):
    tmp, pipeline, _ = loaded
    events = pipeline.table("runtime_events_parquet")
    shared = events[events["description"].str.contains(r"\((?:908|909)\)", na=False)]
    assert sorted(zip(shared["dt"], shared["cluster_id"])) == [(DAYS[0], "staging"), (DAYS[-1], "prod-eu-1")]
    assert events["description"].str.contains(r"\(910\)", na=False).sum() == 1  # evt.time "soon": `time` used


def test_a_redelivered_alert_is_one_row_and_every_line_is_accounted_for(loaded):
    tmp, pipeline, fmt = loaded
    audit = pipeline.table("runtime_events_load_audit").set_index("dt", drop=False)
    expected = oracle.expected_counts(tmp / "raw", fmt)
    assert expected.set_index("dt", drop=False).loc[DAYS[-1], "duplicate"] >= 2
    for _, row in expected.iterrows():
        if row["dt"] is not None and row["dt"] not in DAYS:
            continue
        got = audit.loc[row["dt"]] if row["dt"] is not None else audit[audit["dt"].isna()].iloc[0]
        assert got["alerts_loaded"] == row["loaded"], row["dt"]
        assert got["duplicates_dropped"] == row["duplicate"], row["dt"]
        for reason in oracle.REASONS:
            assert got[f"rejected_{reason}"] == row[f"rejected_{reason}"], (row["dt"], reason)


def test_the_cluster_can_come_from_another_output_field(tmp_path):
    write_falco_alerts(tmp_path / "raw", DAYS[-1:], per_day=20, cluster_field="k8smeta.cluster.name")
    pipeline = Pipeline(make_settings(tmp_path, raw_format="falco", falco_cluster_field="k8smeta.cluster.name"))
    pipeline.run_day(DAYS[-1])
    expected = oracle.expected_tables(tmp_path / "raw", DAYS[-1:], "falco", "k8smeta.cluster.name")
    got = pipeline.table("runtime_events_parquet")
    assert len(got) == len(expected["runtime_events_parquet"]) > 15
    assert set(got["cluster_id"]) == set(expected["runtime_events_parquet"]["cluster_id"]) >= {"prod-eu-1", "staging"}


@pytest.mark.parametrize("name, value", [("raw_format", "falcosidekick"), ("falco_cluster_field", "a'b"),
                                         ("falco_cluster_field", 'x"]')])
def test_bad_falco_settings_fail_naming_the_setting(name, value):
    with pytest.raises(SettingsError, match=f"runtime_events_{name}"):
        Settings.load(lambda key: {f"runtime_events_{name}": value}.get(key))


def test_a_lake_of_the_previous_release_gains_the_new_columns_and_keeps_its_rows(tmp_path):
    """runtime_events_parquet gained tags, hostname and alert_format: a table made before (its files and its
    catalogue entry without them) is brought up to the DDL by the next run, which appends the
    columns; the old partitions stay and read them as null, the new ones carry them."""
    from dataclasses import replace
    from pathlib import Path

    import pyarrow.parquet as pq

    from runtime_events.embedded.metastore import Metastore

    write_nasty_alerts(tmp_path / "raw", DAYS)
    pipeline = Pipeline(make_settings(tmp_path, lookback_days="0"))
    pipeline.run_day(DAYS[1])
    # the previous release's lake: files and catalogue without the three columns
    for file in (tmp_path / "curated" / "runtime_events_parquet").rglob("*.parquet"):
        table = pq.read_table(file)
        pq.write_table(table.drop_columns(["tags", "hostname", "alert_format"]), file)
    metastore = Metastore(Path(pipeline.settings.curated_location) / "_catalog")
    old = metastore.get_table("runtime_security", "runtime_events_parquet")
    metastore._write(metastore._table_path("runtime_security", "runtime_events_parquet"),
                     replace(old, columns=tuple(c for c in old.columns if c[0] not in ("tags", "hostname", "alert_format"))))
    before = pipeline.table("runtime_events_parquet")
    assert "tags" not in before.columns and len(before) > 100

    pipeline.run_day(DAYS[2])
    after = pipeline.table("runtime_events_parquet")
    columns = [c for c, _ in metastore.get_table("runtime_security", "runtime_events_parquet").columns]
    assert columns[-3:] == ["tags", "hostname", "alert_format"]
    old_rows, new_rows = after[after["dt"] == DAYS[1]], after[after["dt"] == DAYS[2]]
    assert old_rows["tags"].isna().all() and old_rows["hostname"].isna().all() and old_rows["alert_format"].isna().all()
    assert len(new_rows) > 100 and all(len(t) == 0 for t in new_rows["tags"])
    expected = oracle.expected_tables(tmp_path / "raw", DAYS[1:])["runtime_events_parquet"]
    assert set(new_rows["alert_format"]) == {"panoptica"}
    keep = [c for c in expected.columns if c not in ("tags", "hostname", "alert_format")]
    assert oracle.canonical(after[keep]).equals(oracle.canonical(expected[keep]))


def test_the_falco_events_table_reads_falcosidekicks_objects(loaded):
    """falco_events, the raw table for ad-hoc queries, exists when Falco's shape is read and
    gives each object's values (compared with the files read by json)."""
    import json
    from pathlib import Path

    from runtime_events.embedded.engine import EmbeddedEngine

    tmp, pipeline, fmt = loaded
    engine = EmbeddedEngine(Path(pipeline.settings.curated_location) / "_catalog")
    got = engine.execute("SELECT uuid, rule, output_fields['k8s.pod.name'] AS pod, output_fields['evt.time'] AS t, "
                         "tags, hostname FROM falco_events WHERE rule IS NOT NULL AND uuid IS NOT NULL",
                         "runtime_security").table.to_pylist()
    files = sorted((tmp / "raw").rglob("*T*.json"))
    expected = []
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except ValueError:
            continue
        if isinstance(doc.get("uuid"), str) and isinstance(doc.get("rule"), str):
            of = doc["output_fields"] if isinstance(doc.get("output_fields"), dict) else {}
            expected.append((doc["uuid"], doc["rule"], of.get("k8s.pod.name"),
                             None if of.get("evt.time") is None else str(of["evt.time"])))
    assert len(expected) > 100
    assert sorted((r["uuid"], r["rule"], r["pod"], r["t"]) for r in got) == sorted(expected)


def test_falco_events_is_not_created_for_panoptica_alone(tmp_path):
    from pathlib import Path

    from runtime_events.embedded.metastore import Metastore

    write_nasty_alerts(tmp_path / "raw", DAYS[-1:])
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day(DAYS[-1])
    tables = Metastore(Path(pipeline.settings.curated_location) / "_catalog").list_tables("runtime_security")
    assert "runtime_events" in tables and "falco_events" not in tables


def test_the_simulators_falco_output_loads_like_its_panoptica_output(tmp_path):
    """`generate --format falco` writes the same simulated alerts in Falcosidekick's layout and
    shape; read with raw_format=falco they give the curated rows the oracle computes, and as
    many alerts a day as the Panoptica files of the same seed."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    env = {"PATH": str(repo / ".venv" / "bin"), "RUNTIME_EVENTS_SKIP_AIRFLOW_VARIABLES": "1",
           "AIRFLOW_VAR_RUNTIME_EVENTS_RAW_LOCATION": str(tmp_path / "raw"),
           "AIRFLOW_VAR_RUNTIME_EVENTS_CURATED_LOCATION": str(tmp_path / "curated")}
    said = {}
    for fmt, out in (("falco", tmp_path / "raw"), ("panoptica", tmp_path / "panoptica")):
        done = subprocess.run([sys.executable, "-m", "runtime_events.cli", "generate", "--start", DAYS[0], "--days", "3",
                               "--events-per-day", "120", "--format", fmt, "--out", str(out)],
                              env=env, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        said[fmt] = done.stderr
    # the settings still read Panoptica's shape: the command says which settings read Falco's
    assert "runtime_events_raw_format=falco" in said["falco"] and "raw_format" not in said["panoptica"]
    folders = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert folders[:3] == DAYS
    pipeline = Pipeline(make_settings(tmp_path, raw_format="falco", raw_layout="{yyyy}-{MM}-{dd}/"))
    pipeline.run_day(DAYS[1])
    got = pipeline.table("runtime_events_parquet")
    expected = oracle.expected_tables(tmp_path / "raw", DAYS[:2], "falco")["runtime_events_parquet"]
    assert oracle.canonical(got[list(expected.columns)]).equals(oracle.canonical(expected))
    panoptica = oracle.expected_tables(tmp_path / "panoptica", DAYS[:2])["runtime_events_parquet"]
    assert got.groupby("dt").size().to_dict() == panoptica.groupby("dt").size().to_dict() == {DAYS[0]: 120, DAYS[1]: 120}
    assert {t for tags in got["tags"] for t in tags} >= {"mitre_execution", "T1059", "container"}


def test_an_upgrade_refuses_a_column_of_another_type_naming_it(tmp_path):
    from dataclasses import replace
    from pathlib import Path

    from runtime_events import publish
    from runtime_events.embedded.metastore import Metastore

    write_nasty_alerts(tmp_path / "raw", DAYS[-1:])
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day(DAYS[-1])
    metastore = Metastore(Path(pipeline.settings.curated_location) / "_catalog")
    table = metastore.get_table("runtime_security", "runtime_events_parquet")
    metastore._write(metastore._table_path("runtime_security", "runtime_events_parquet"), replace(
        table, columns=tuple((c, "string" if c == "tags" else t) for c, t in table.columns)))
    with pytest.raises(publish.PublishError, match="runtime_events_parquet has the column tags as string where "
                                                   r"this release's create_table.sql has array<string>"):
        publish.add_new_columns(pipeline.lake)


def test_lines_read_in_the_wrong_shape_say_which_setting_reads_them(tmp_path):
    from runtime_events import checks

    write_falco_alerts(tmp_path / "raw", DAYS[-1:], per_day=120)
    pipeline = Pipeline(make_settings(tmp_path, reject_threshold="0.05"))  # raw_format panoptica
    with pytest.raises(checks.DataQualityError, match="runtime_events_raw_format=panoptica"):
        pipeline.run_day(DAYS[-1])
