"""Published alerts are never lost to an operator's mistake (contract, sections 2, 5, 6 and 8).

Each test makes one mistake an operator makes (a missing raw folder, a dropped table, two
databases on one root, a publish rerun after clean-up, a partition pointed outside its table,
a format change, links and FIFOs in the raw folder, a damaged catalogue file) and checks that
every published day is still there, equal to what the independent oracle computed before.
The pipeline's own SQL and publish steps run on the embedded engine; the command line runs as
the real console script.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import oracle
from alert_fixtures import write_nasty_alerts
from local_pipeline import Pipeline, make_settings
from runtime_events import checks, publish
from runtime_events.catalogue import EmbeddedCatalogue
from runtime_events.embedded.engine import EmbeddedEngine
from runtime_events.ledger import Ledger
from runtime_events.settings import SettingsError
from runtime_events.storage import LocalStorage
from runtime_events.tables import AGGREGATES

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / ".venv" / "bin" / "runtime-events"
DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
TABLES = ["runtime_events_parquet", *(t.name for t in AGGREGATES)]


def snapshot(pipeline: Pipeline) -> dict:
    return {t: oracle.canonical(pipeline.table(t).query("dt in @DAYS")) for t in TABLES}


def assert_intact(pipeline: Pipeline, before: dict) -> None:
    after = snapshot(pipeline)
    for table in TABLES:
        assert after[table].equals(before[table]), table


def later(pipeline: Pipeline, days: int | None = None) -> datetime:
    """A clock past the retention period."""
    return datetime.now(timezone.utc) + timedelta(days=pipeline.settings.retention_days if days is None else days,
                                                  minutes=1)


def cli(tmp: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_VAR_RUNTIME_EVENTS_", "AIRFLOW"))}
    values = {"raw_location": str(tmp / "raw"), "curated_location": str(tmp / "curated"), **settings}
    env.update({f"AIRFLOW_VAR_RUNTIME_EVENTS_{k.upper()}": v for k, v in values.items()})
    env["RUNTIME_EVENTS_SKIP_AIRFLOW_VARIABLES"] = "1"
    return subprocess.run([str(CLI), *args], env=env, cwd=tmp, capture_output=True, text=True, timeout=120)


@pytest.fixture
def loaded(tmp_path):
    write_nasty_alerts(tmp_path / "raw", DAYS)
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day(DAYS[-1])
    expected = oracle.expected_tables(tmp_path / "raw", DAYS)
    before = snapshot(pipeline)
    for table in TABLES:  # what is published is what the contract says, before any mistake
        got = pipeline.table(table)
        assert oracle.canonical(got[list(expected[table].columns)]).equals(oracle.canonical(expected[table])), table
    return tmp_path, pipeline, before


# -- the raw location --------------------------------------------------------------------------
def test_a_missing_raw_location_fails_the_run_naming_it(loaded):
    tmp, pipeline, before = loaded
    shutil.move(tmp / "raw", tmp / "raw-unmounted")
    with pytest.raises(publish.PublishError, match=f"raw_location {tmp / 'raw'}/ is not a folder"):
        pipeline.run_day(DAYS[-1])
    assert_intact(pipeline, before)


def test_an_empty_raw_location_keeps_every_published_day(loaded):
    tmp, pipeline, before = loaded
    shutil.move(tmp / "raw", tmp / "raw-expired")
    (tmp / "raw").mkdir()  # an unmounted mount point, or files expired by a lifecycle rule
    pipeline.run_day(DAYS[-1])
    pipeline.run_day(DAYS[1])
    publish.clean_up(pipeline.lake, None, now=later(pipeline, 400))
    assert_intact(pipeline, before)
    audit = pipeline.table("runtime_events_load_audit")
    last = audit[audit["logical_date"] == DAYS[1]]
    assert last["lines_scanned"].sum() == 0


def test_a_raw_file_dropped_from_a_day_fails_the_audit_unless_allowed(loaded):
    tmp, pipeline, before = loaded
    victim = max((p for p in (tmp / "raw").rglob("*.json*")), key=lambda p: p.stat().st_size)
    shutil.move(victim, tmp / victim.name)
    with pytest.raises(checks.DataQualityError, match=r"dt=2026-03-0[123]: \d+ rows rebuilt against \d+ published"):
        pipeline.run_day(DAYS[-1])
    assert_intact(pipeline, before)


# -- the catalogue -----------------------------------------------------------------------------
def test_a_dropped_table_loses_nothing_and_comes_back(loaded):
    tmp, pipeline, before = loaded
    engine = EmbeddedEngine(tmp / "curated" / "_catalog")
    engine.execute("DROP TABLE runtime_events_parquet", "runtime_security")
    # a later run's window covers only some days: the others come back from the ledger
    pipeline.run_day("2026-03-05")
    for _ in range(2):
        publish.clean_up(pipeline.lake, None, now=later(pipeline, 400))
    assert_intact(pipeline, before)
    engine.execute("DROP TABLE runtime_events_parquet", "runtime_security")
    done = cli(tmp, "repair", "runtime_events_parquet")
    assert done.returncode == 0, done.stderr
    assert "partitions re-attached" in done.stdout
    assert_intact(pipeline, before)


def test_a_damaged_catalogue_file_names_itself_and_repair_mends_it(loaded):
    tmp, pipeline, before = loaded
    catalog = tmp / "curated" / "_catalog" / "runtime_security" / "daily_rule_counts.json"
    catalog.write_text(catalog.read_text()[:100])
    done = cli(tmp, "query", "SELECT count(*) FROM daily_rule_counts")
    assert done.returncode != 0
    assert str(catalog) in done.stderr and "runtime-events repair daily_rule_counts" in done.stderr
    done = cli(tmp, "repair", "daily_rule_counts")
    assert done.returncode == 0, done.stderr
    assert list(catalog.parent.glob(".daily_rule_counts.json.damaged-*"))  # kept aside, not deleted
    assert_intact(pipeline, before)


def test_two_databases_on_one_curated_root_are_refused(loaded):
    tmp, pipeline, before = loaded
    other = Pipeline(make_settings(tmp, database="other_security"))
    with pytest.raises(SettingsError, match="runtime_events_curated_location") as caught:
        other.run_day(DAYS[-1])
    assert "runtime_security" in str(caught.value)
    assert_intact(pipeline, before)


def test_publishing_a_finished_run_again_is_refused(loaded):
    tmp, pipeline, before = loaded
    run = pipeline.run_day(DAYS[-1])  # finished and cleaned up
    audit = {"days_with_lines": DAYS, "rows": []}
    with pytest.raises(publish.PublishError, match="has finished"):
        publish.publish(pipeline.lake, publish.table_named("runtime_events_parquet"), dataclasses.replace(run, allow_shrink=True),
                        audit["days_with_lines"])
    assert_intact(pipeline, before)


def test_a_partition_pointed_outside_its_table_folder_is_never_deleted(loaded):
    tmp, pipeline, before = loaded
    victim = tmp / "curated" / "victim"
    victim.mkdir()
    (victim / "precious.parquet").write_bytes(b"not ours")
    outside = f"{tmp}/curated/daily_severity_counts/../victim/"
    engine = EmbeddedEngine(tmp / "curated" / "_catalog")
    engine.execute(f"ALTER TABLE daily_severity_counts PARTITION (dt = '{DAYS[0]}') SET LOCATION '{outside}'",
                   "runtime_security")
    pipeline.run_day(DAYS[-1])  # replaces that partition, recording the outside location as replaced
    publish.clean_up(pipeline.lake, None, now=later(pipeline, 400))
    assert (victim / "precious.parquet").read_bytes() == b"not ours"
    assert_intact(pipeline, before)


def test_folders_the_ledger_does_not_name_are_left_alone(loaded, caplog):
    tmp, pipeline, before = loaded
    stranger = tmp / "curated" / "runtime_events_parquet" / "r20200101t000000_deadbeef"
    (stranger / "dt=2020-01-01").mkdir(parents=True)
    (stranger / "dt=2020-01-01" / "x.parquet").write_bytes(b"someone else's")
    publish.clean_up(pipeline.lake, None, now=later(pipeline, 4000))
    assert (stranger / "dt=2020-01-01" / "x.parquet").exists()
    assert "not in the ledger" in caplog.text
    assert_intact(pipeline, before)


# -- versions, retention, rollback ---------------------------------------------------------------
def test_replaced_versions_are_kept_for_retention_days_then_deleted(loaded):
    tmp, pipeline, before = loaded
    first = {v for v in LocalStorage().folders(str(tmp / "curated" / "runtime_events_parquet"))}
    pipeline.run_day(DAYS[-1])
    publish.clean_up(pipeline.lake, None, now=later(pipeline, pipeline.settings.retention_days - 1))
    assert first <= set(LocalStorage().folders(str(tmp / "curated" / "runtime_events_parquet")))
    publish.clean_up(pipeline.lake, None, now=later(pipeline))
    remaining = set(LocalStorage().folders(str(tmp / "curated" / "runtime_events_parquet")))
    assert not (first - {str(tmp / "curated" / "runtime_events_parquet" / "_stage") + "/"}) & remaining
    assert_intact(pipeline, before)


def test_versions_rollback_and_forward_through_the_command_line(loaded):
    tmp, pipeline, before = loaded
    first = pipeline.lake.ledger.history("daily_rule_counts").versions[(DAYS[1],)][-1].run_token
    # a second run takes in more alerts of DAYS[1]
    extra = tmp / "raw" / "late.json"
    extra.write_text(json.dumps({"evt.time": f"{DAYS[1]}T12:00:00Z", "cluster_id": "late-cluster",
                                 "rule_name": "Logs Removal", "severity": "High"}) + "\n")
    second = pipeline.run_day(DAYS[-1]).run_token
    grown = snapshot(pipeline)
    listed = cli(tmp, "versions", "daily_rule_counts", "--dt", DAYS[1], "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["run_token"] for r in rows] == [first, second]
    assert [r["current"] for r in rows] == [False, True]
    expected_rows = oracle.expected_tables(tmp / "raw", DAYS)["daily_rule_counts"].query("dt == @DAYS[1]")
    assert rows[1]["rows"] == len(expected_rows)
    back = cli(tmp, "rollback", "daily_rule_counts", "--dt", DAYS[1])
    assert back.returncode == 0, back.stderr
    assert snapshot(pipeline)["daily_rule_counts"].equals(before["daily_rule_counts"])
    forward = cli(tmp, "rollback", "daily_rule_counts", "--dt", DAYS[1], "--to", second)
    assert forward.returncode == 0, forward.stderr
    assert snapshot(pipeline)["daily_rule_counts"].equals(grown["daily_rule_counts"])
    nowhere = cli(tmp, "rollback", "daily_rule_counts", "--dt", DAYS[1], "--to", "r20990101t000000_00000000")
    assert nowhere.returncode == 2 and "no kept version" in nowhere.stderr


def test_a_rolled_back_version_is_not_deleted_by_retention(loaded):
    tmp, pipeline, before = loaded
    (tmp / "raw" / "late.json").write_text(json.dumps(
        {"evt.time": f"{DAYS[0]}T12:00:00Z", "cluster_id": "c-late", "rule_name": "r"}) + "\n")
    pipeline.run_day(DAYS[-1])
    publish.rollback(pipeline.lake, publish.table_named("runtime_events_parquet"), DAYS[0])
    publish.rollback(pipeline.lake, publish.table_named("daily_severity_counts"), DAYS[0])
    publish.clean_up(pipeline.lake, None, now=later(pipeline, 400))
    got = pipeline.table("runtime_events_parquet").query("dt == @DAYS[0]")
    assert oracle.canonical(got).equals(oracle.canonical(before["runtime_events_parquet"].query("dt == @DAYS[0]")))
    assert "c-late" not in set(got["cluster_id"])
    assert oracle.canonical(pipeline.table("daily_severity_counts").query("dt == @DAYS[0]")).equals(
        oracle.canonical(before["daily_severity_counts"].query("dt == @DAYS[0]")))


# -- bad input never blocks a run ------------------------------------------------------------------
def test_one_days_files_all_rejected_fail_the_run_despite_history(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    good = [json.dumps({"evt.time": f"2026-03-0{d}T{h:02d}:00:00Z", "cluster_id": "c1", "rule_name": "r",
                        "k8s.pod.name": f"p{i}"}) for d in (1, 2) for h in range(24) for i in range(40)]
    (raw / "history.json").write_text("\n".join(good) + "\n")
    # a format change on day 3: the cluster key is renamed in every line
    changed = [json.dumps({"evt.time": f"2026-03-03T{h:02d}:00:00Z", "cluster": "c1", "rule_name": "r"})
               for h in range(24) for _ in range(5)]
    (raw / "new-format.json").write_text("\n".join(changed) + "\n")
    pipeline = Pipeline(make_settings(tmp_path, reject_threshold="0.1"))
    with pytest.raises(checks.DataQualityError) as caught:
        pipeline.run_day("2026-03-03")
    message = str(caught.value)
    assert "120 of the 120 lines of dt=2026-03-03" in message
    assert f"120 of the 120 lines of {raw / 'new-format.json'}" in message
    assert "missing_cluster_id 120" in message


def test_bad_cluster_ids_are_rejected_lines_not_failed_runs(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    ids = {"nul\u0000byte": "bad", "tab\there": "bad", "x" * 241: "bad", "é" * 41: "bad", "é" * 40: "ok",
           "x" * 240: "ok", "é" * 39 + "x" * 6: "ok", "prod/eu:1": "ok"}
    lines = [json.dumps({"evt.time": "2026-03-03T01:00:00Z", "cluster_id": c, "rule_name": "r"}) for c in ids]
    (raw / "a.json").write_text("\n".join(lines) + "\n")
    (raw / "name-\udcff.json".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
     ).write_bytes(b'{"evt.time": "2026-03-03T02:00:00Z", "cluster_id": "c2", "rule_name": "r"}\n')
    pipeline = Pipeline(make_settings(tmp_path, reject_threshold="0.9"))
    pipeline.run_day("2026-03-03")
    events = pipeline.table("runtime_events_parquet")
    assert sorted(events["cluster_id"]) == sorted([c for c, v in ids.items() if v == "ok"] + ["c2"])
    assert any(f.endswith("name-\\xff.json") for f in events["source_file"])
    expected = oracle.expected_counts(raw).set_index("dt")
    audit = pipeline.table("runtime_events_load_audit").set_index("dt")
    assert audit.loc["2026-03-03", "rejected_bad_cluster_id"] == expected.loc["2026-03-03", "rejected_bad_cluster_id"] == 4


def test_a_curated_root_under_a_name_value_folder_does_not_fill_columns(tmp_path):
    write_nasty_alerts(tmp_path / "raw", DAYS)
    pipeline = Pipeline(make_settings(tmp_path, curated_location=str(tmp_path / "severity=High" / "cluster_id=x")))
    pipeline.run_day(DAYS[-1])
    expected = oracle.expected_tables(tmp_path / "raw", DAYS)
    for table in TABLES:
        got = pipeline.table(table)
        assert oracle.canonical(got[list(expected[table].columns)]).equals(oracle.canonical(expected[table])), table


# -- reading local raw folders ---------------------------------------------------------------------
def _alert(hour: int, cluster: str = "c1") -> str:
    return json.dumps({"evt.time": f"2026-03-03T{hour:02d}:00:00Z", "cluster_id": cluster, "rule_name": "r"}) + "\n"


def test_links_inside_the_raw_root_are_followed_for_files_and_folders(tmp_path):
    raw = tmp_path / "raw"
    (raw / "real").mkdir(parents=True)
    (raw / "real" / "a.json").write_text(_alert(1))
    (raw / "other").mkdir()
    (raw / "other" / "b.json").write_text(_alert(2))
    (raw / "linked-folder").symlink_to(raw / "other")
    (raw / "linked-file.json").symlink_to(raw / "real" / "a.json")
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day("2026-03-03")
    audit = pipeline.table("runtime_events_load_audit").set_index("dt")
    # a.json twice (itself and its link, one alert and one duplicate), b.json once (one folder, read once)
    assert audit.loc["2026-03-03", "lines_scanned"] == 3
    assert audit.loc["2026-03-03", "alerts_loaded"] == 2


@pytest.mark.parametrize("kind", ["link_out_file", "link_out_folder", "broken_link", "fifo"])
def test_entries_that_cannot_be_read_fail_the_run_naming_them(loaded, kind):
    tmp, pipeline, before = loaded
    raw = tmp / "raw"
    outside = tmp / "elsewhere"
    outside.mkdir()
    (outside / "secret.json").write_text(_alert(3))
    entry = raw / "entry"
    if kind == "link_out_file":
        entry.symlink_to(outside / "secret.json")
    elif kind == "link_out_folder":
        entry.symlink_to(outside)
    elif kind == "broken_link":
        entry.symlink_to(tmp / "nowhere")
    else:
        os.mkfifo(entry)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(_run_and_catch(pipeline)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the run hung"  # a FIFO must not block the reader for ever
    assert result and str(entry) in str(result[0]), result
    assert_intact(pipeline, before)


def _run_and_catch(pipeline: Pipeline):
    try:
        pipeline.run_day(DAYS[-1])
    except Exception as exc:  # noqa: BLE001  (returned to the test)
        return exc
    return None


# -- settings that change ----------------------------------------------------------------------
def test_a_changed_raw_location_and_layout_take_effect_at_the_next_run(tmp_path):
    first, second = tmp_path / "raw-a", tmp_path / "raw-b"
    first.mkdir()
    (first / "a.json").write_text(_alert(1, "from-a"))
    (second / "2026" / "03" / "03").mkdir(parents=True)
    (second / "2026" / "03" / "03" / "b.json").write_text(_alert(1, "from-a") + _alert(2, "from-b"))
    Pipeline(make_settings(tmp_path, raw_location=str(first))).run_day("2026-03-03")
    pipeline = Pipeline(make_settings(tmp_path, raw_location=str(second), raw_layout="{yyyy}/{MM}/{dd}/",
                                      reject_threshold="0.5"))
    pipeline.run_day("2026-03-03")
    assert sorted(pipeline.table("runtime_events")["cluster_id"]) == ["from-a", "from-b"]
    assert set(pipeline.table("runtime_events_parquet")["source_file"]) == {str(second / "2026/03/03/b.json")}
    assert sorted(pipeline.table("runtime_events_parquet")["cluster_id"]) == ["from-a", "from-b"]
    assert (first / "a.json").exists()  # re-creating an external table never touches its files


def test_ledger_records_are_one_object_each_and_never_overwritten(loaded):
    tmp, pipeline, _ = loaded
    ledger = Ledger(pipeline.settings, LocalStorage())
    before = {p: p.read_bytes() for p in (tmp / "curated" / "_ledger" / "tables").rglob("*.json")}
    pipeline.run_day(DAYS[-1])
    after = {p: p.read_bytes() for p in (tmp / "curated" / "_ledger" / "tables").rglob("*.json")}
    assert all(after[p] == content for p, content in before.items())
    assert len(after) > len(before)
    assert ledger.history("runtime_events_parquet").latest() == EmbeddedCatalogue(
        pipeline.settings).partitions("runtime_events_parquet")


def test_a_lost_or_damaged_owner_file_never_hands_the_root_to_another_database(loaded):
    tmp, pipeline, before = loaded
    owner = tmp / "curated" / "_ledger" / "owner.json"
    owner.write_text("")
    with pytest.raises(Exception, match=r'damaged: it names the database.*\{"database": "runtime_security"\}'):
        pipeline.run_day(DAYS[-1])
    owner.unlink()  # moved aside by an operator
    other = Pipeline(make_settings(tmp, database="other_security", retention_days="0"))
    with pytest.raises(SettingsError, match="runtime_events_curated_location") as caught:
        other.run_day(DAYS[-1])
    assert "database 'runtime_security'" in str(caught.value)
    assert not owner.exists()
    pipeline.run_day(DAYS[-1])  # the owner itself claims it again
    assert json.loads(owner.read_text()) == {"database": "runtime_security"}
    publish.clean_up(pipeline.lake, None, now=later(pipeline, 400))
    assert_intact(pipeline, before)


def test_a_copied_lake_refuses_to_run_instead_of_reading_the_old_one(loaded):
    tmp, pipeline, before = loaded
    shutil.copytree(tmp / "curated", tmp / "copy", symlinks=True)
    copied = Pipeline(make_settings(tmp, curated_location=str(tmp / "copy")))
    with pytest.raises(Exception, match="the lake was copied or moved"):
        copied.run_day(DAYS[-1])
    assert_intact(pipeline, before)


def test_rolling_back_the_curated_copy_takes_the_days_aggregates_along(loaded):
    tmp, pipeline, before = loaded
    (tmp / "raw" / "late.json").write_text(json.dumps(
        {"evt.time": f"{DAYS[2]}T12:00:00Z", "cluster_id": "c-late", "rule_name": "r", "severity": "high"}) + "\n")
    pipeline.run_day(DAYS[-1])
    assert not snapshot(pipeline)["daily_severity_counts"].equals(before["daily_severity_counts"])
    done = cli(tmp, "rollback", "runtime_events_parquet", "--dt", DAYS[2])
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1 + len(AGGREGATES)
    assert_intact(pipeline, before)
    again = cli(tmp, "rollback", "daily_rule_counts", "--dt", DAYS[2], "--to",
                pipeline.lake.ledger.history("daily_rule_counts").versions[(DAYS[2],)][0].run_token)
    assert again.returncode == 2 and "already reads the version" in again.stderr
