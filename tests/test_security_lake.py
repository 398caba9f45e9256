"""The OCSF export (issue 13): ocsf_detection_findings copied into AWS Security Lake's
custom-source layout, checked as Security Lake and its users would.

- Every exported row, read back from the Parquet files under
  ``region=<region>/accountId=<account>/eventDay=<YYYYMMDD>/``, is a valid OCSF 1.1.0 Detection
  Finding by the JSON Schema generated from OCSF's own files (tests/ocsf), for Panoptica's alerts
  and Falco's (mixed, ``raw_format=auto``); each day's folder holds exactly that day's findings,
  one per curated alert.
- Reruns replace a day's files (copy first, then delete), never duplicate; a retry of the same
  run writes nothing; files the export did not write, and starts of exports still running, are
  never deleted; an abandoned start is cleaned up by the next export of its day.
- The settings: on by default on the embedded engine, off on Athena; ``off``; a bad region,
  account or location fails naming the setting.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq
import pytest

from alert_fixtures import write_falco_alerts, write_nasty_alerts
from local_pipeline import Pipeline, make_settings
from ocsf.ocsf_jsonschema import class_schema
from runtime_events import security_lake
from runtime_events.settings import Settings, SettingsError

DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
FILE = re.compile(r"region=us-east-1/accountId=([0-9]{12})/eventDay=([0-9]{8})/(r[0-9a-z_]+)-[0-9]{5}\.parquet")


def exported_files(settings) -> dict[str, list[Path]]:
    """The export's files per eventDay, every file under the location checked against the layout."""
    root = Path(settings.security_lake_location)
    days: dict[str, list[Path]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        match = FILE.fullmatch(path.relative_to(root).as_posix())
        assert match, f"{path} is not in Security Lake's layout"
        assert match.group(1) == settings.security_lake_account_id
        days.setdefault(match.group(2), []).append(path)
    return days


def rows_of(files: list[Path]) -> list[dict]:
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def without_nulls(value):
    """A row as OCSF's JSON has it: a null attribute is an absent one (Parquet has no absence)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        if value and all(isinstance(x, tuple) and len(x) == 2 for x in value):  # a map, as pyarrow gives it
            return {k: v for k, v in value}
        return [without_nulls(v) for v in value]
    return value


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("security-lake")
    write_nasty_alerts(tmp / "raw", DAYS)
    write_falco_alerts(tmp / "raw" / "falco", DAYS)
    pipeline = Pipeline(make_settings(tmp, raw_format="auto"))
    pipeline.run_day(DAYS[-1])
    return tmp, pipeline


def test_every_exported_row_is_a_valid_ocsf_detection_finding(exported):
    _, pipeline = exported
    validator = jsonschema.Draft202012Validator(class_schema())
    rows = rows_of([f for files in exported_files(pipeline.settings).values() for f in files])
    products = set()
    for row in rows:
        document = without_nulls(row)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
        assert not errors, (errors[:5], document)
        products.add(document["metadata"]["product"]["name"])
    assert products == {"Panoptica", "Falco"} and len(rows) > 500
    # what the validator is asked to judge has the parts the issue names
    with_attacks = [r for r in rows if r["finding_info"]["attacks"]]
    assert with_attacks and any(r["evidences"] for r in rows)
    assert {r["type"] for row in rows for r in row["resources"]} == {
        "kubernetes_cluster", "kubernetes_namespace", "kubernetes_pod", "container"}


def test_each_day_folder_holds_that_days_findings_one_per_curated_alert(exported):
    _, pipeline = exported
    files = exported_files(pipeline.settings)
    assert sorted(files) == [d.replace("-", "") for d in DAYS]
    curated = pipeline.table("runtime_events_parquet")
    for day in DAYS:
        rows = rows_of(files[day.replace("-", "")])
        uids = sorted(r["metadata"]["uid"] for r in rows)
        assert uids == sorted(curated.loc[curated["dt"] == day, "event_id"])
        start = datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp() * 1000
        assert all(start <= r["time"] < start + 86_400_000 for r in rows)
        assert all("dt" not in r for r in rows)  # the day is the folder's, as Security Lake partitions


def test_a_rerun_replaces_each_days_files_and_a_retry_writes_nothing(tmp_path):
    write_nasty_alerts(tmp_path / "raw", DAYS)
    pipeline = Pipeline(make_settings(tmp_path))
    first = pipeline.run_day(DAYS[-1])
    before = {day: rows_of(files) for day, files in exported_files(pipeline.settings).items()}
    mine = Path(pipeline.settings.security_lake_location) / "region=us-east-1" / "notes.txt"
    mine.write_text("a file the export did not write")

    second = pipeline.run_day(DAYS[-1])
    files = exported_files_except(pipeline.settings, mine)
    assert {FILE.search(f.as_posix()).group(3) for fs in files.values() for f in fs} == {second.run_token}
    after = {day: rows_of(fs) for day, fs in files.items()}
    key = lambda r: r["metadata"]["uid"]  # noqa: E731
    assert {d: sorted(rows, key=key) for d, rows in after.items()} == {d: sorted(rows, key=key) for d, rows in before.items()}
    assert mine.exists()
    assert first.run_token != second.run_token

    snapshot = {p: p.stat().st_mtime_ns for fs in files.values() for p in fs}
    again = security_lake.export(pipeline.lake, second.run_token, DAYS)
    assert {d: s["outcome"] for d, s in again["days"].items()} == dict.fromkeys(DAYS, "unchanged")
    assert {p: p.stat().st_mtime_ns for fs in exported_files_except(pipeline.settings, mine).values()
            for p in fs} == snapshot


def exported_files_except(settings, *others: Path) -> dict[str, list[Path]]:
    hidden = [(p, p.read_bytes()) for p in others]
    for p, _ in hidden:
        p.unlink()
    try:
        return exported_files(settings)
    finally:
        for p, data in hidden:
            p.write_bytes(data)


def test_starts_of_running_exports_are_kept_and_abandoned_ones_cleaned_up(tmp_path):
    write_nasty_alerts(tmp_path / "raw", DAYS)
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day(DAYS[0])
    lake, day = pipeline.lake, DAYS[0]
    folder = Path(security_lake.day_folder(pipeline.settings, day))
    running, abandoned = folder / "r20260301t000000_aaaaaaaa-00000.parquet", folder / "r20260301t000000_bbbbbbbb-00000.parquet"
    for path, token in ((running, "r20260301t000000_aaaaaaaa"), (abandoned, "r20260301t000000_bbbbbbbb")):
        path.write_bytes(b"PAR1 copy in progress")
        lake.ledger.record(security_lake.RECORDS, "export_started", token, day=day, source="elsewhere",
                           files=[str(path)])
    # the abandoned one started long ago
    records = Path(pipeline.settings.curated_location) / "_ledger" / "tables" / security_lake.RECORDS
    for path in records.glob("*bbbbbbbb*"):
        record = json.loads(path.read_text())
        record["at"] = (datetime.now(timezone.utc) - timedelta(hours=7)).isoformat()
        path.write_text(json.dumps(record))

    rerun = pipeline.run_day(DAYS[0])
    assert running.exists() and not abandoned.exists()
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([running.name, *(f"{rerun.run_token}-{n:05d}.parquet" for n in range(len(names) - 1))])


def test_a_day_folder_outside_the_location_is_never_deleted(tmp_path):
    """A record that names a file elsewhere (a damaged or hand-edited ledger) deletes nothing there."""
    write_nasty_alerts(tmp_path / "raw", DAYS)
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day(DAYS[0])
    outside = tmp_path / "raw" / "precious.json"
    outside.write_text("{}")
    pipeline.lake.ledger.record(security_lake.RECORDS, "exported", "r20200101t000000_cccccccc", day=DAYS[0],
                                source="elsewhere", files=[str(outside)])
    pipeline.run_day(DAYS[0])
    assert outside.exists()


def test_off_exports_nothing(tmp_path):
    write_nasty_alerts(tmp_path / "raw", DAYS[:1])
    pipeline = Pipeline(make_settings(tmp_path, security_lake_location="off"))
    pipeline.run_day(DAYS[0])
    assert pipeline.settings.security_lake_location == "" and pipeline.exported["days"] == {}
    assert not (tmp_path / "security_lake").exists()


def test_the_default_location_is_beside_the_curated_folder_and_on_athena_off():
    values = {"raw_location": "/srv/lake/raw", "curated_location": "/srv/lake/curated"}
    settings = Settings.load(lambda k: values.get(k.removeprefix("runtime_events_")))
    assert settings.security_lake_location == "/srv/lake/security_lake/ext/runtime_events/"
    assert (settings.security_lake_region, settings.security_lake_account_id) == ("us-east-1", "000000000000")
    athena = {"engine": "athena", "raw_location": "s3://raw-bucket/alerts/", "curated_location": "s3://lake-bucket/curated/"}
    assert Settings.load(lambda k: athena.get(k.removeprefix("runtime_events_"))).security_lake_location == ""


@pytest.mark.parametrize(("values", "setting"), [
    ({"security_lake_region": "US East"}, "security_lake_region"),
    ({"security_lake_account_id": "12345"}, "security_lake_account_id"),
    ({"security_lake_location": "relative/folder"}, "security_lake_location"),
    ({"security_lake_location": "/srv/lake/curated/sl/"}, "security_lake_location"),  # inside curated
    ({"security_lake_location": "/srv/lake/"}, "security_lake_location"),  # holds raw and curated
    ({"security_lake_location": "s3://sl-bucket/ext/x/"}, "security_lake_location"),  # S3 on the embedded engine
    ({"engine": "athena", "raw_location": "s3://raw-bucket/a/", "curated_location": "s3://lake-bucket/c/",
      "security_lake_location": "s3://sl-bucket/ext/x/"}, "security_lake_account_id"),  # which account?
    ({"engine": "athena", "raw_location": "s3://raw-bucket/a/", "curated_location": "s3://lake-bucket/c/",
      "security_lake_location": "/srv/sl/", "security_lake_account_id": "123456789012"}, "security_lake_location"),
])
def test_bad_security_lake_settings_fail_naming_the_setting(values, setting):
    values = {"raw_location": "/srv/lake/raw", "curated_location": "/srv/lake/curated", **values}
    with pytest.raises(SettingsError, match=f"runtime_events_{setting}="):
        Settings.load(lambda k: values.get(k.removeprefix("runtime_events_")))


def test_the_cli_exports_history_published_before_the_export_was_on(tmp_path):
    """A lake built with the export off: `runtime-events export-security-lake` copies the
    published days of a range; run again, it finds them there and writes nothing."""
    import os
    import subprocess

    write_nasty_alerts(tmp_path / "raw", DAYS)
    Pipeline(make_settings(tmp_path, security_lake_location="off")).run_day(DAYS[-1])
    target = tmp_path / "sl" / "ext" / "runtime_events"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_VAR_RUNTIME_EVENTS_")} | {
        "AIRFLOW_VAR_RUNTIME_EVENTS_RAW_LOCATION": str(tmp_path / "raw"),
        "AIRFLOW_VAR_RUNTIME_EVENTS_CURATED_LOCATION": str(tmp_path / "curated"),
        "AIRFLOW_VAR_RUNTIME_EVENTS_SECURITY_LAKE_LOCATION": str(target),
        "AIRFLOW_VAR_RUNTIME_EVENTS_SECURITY_LAKE_ACCOUNT_ID": "111122223333",
        "RUNTIME_EVENTS_SKIP_AIRFLOW_VARIABLES": "1"}
    cli = [str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "runtime-events"), "export-security-lake"]
    done = subprocess.run([*cli, "--from", DAYS[1], "--to", "2026-03-31"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == [f"dt={DAYS[1]}: exported (1 files)", f"dt={DAYS[2]}: exported (1 files)"]
    settings = make_settings(tmp_path, security_lake_location=str(target), security_lake_account_id="111122223333")
    assert sorted(exported_files(settings)) == [d.replace("-", "") for d in DAYS[1:]]
    again = subprocess.run([*cli, "--from", DAYS[0], "--to", DAYS[2]], env=env, capture_output=True, text=True)
    assert again.stdout.splitlines()[:3] == [f"dt={DAYS[0]}: exported (1 files)", f"dt={DAYS[1]}: unchanged (1 files)",
                                             f"dt={DAYS[2]}: unchanged (1 files)"]
    off = subprocess.run([*cli, "--from", DAYS[0], "--to", DAYS[2]], capture_output=True, text=True,
                         env=env | {"AIRFLOW_VAR_RUNTIME_EVENTS_SECURITY_LAKE_LOCATION": "off"})
    assert off.returncode == 2 and "runtime_events_security_lake_location" in off.stderr


# -- found by a hostile review: crashes, concurrency, damaged files ----------------------------------
def _day_files(pipeline, day: str) -> list[Path]:
    folder = Path(security_lake.day_folder(pipeline.settings, day))
    return sorted(p for p in folder.iterdir()) if folder.is_dir() else []


def test_a_crash_between_the_record_and_the_deletes_is_tidied_by_the_next_look_at_the_day(tmp_path):
    write_nasty_alerts(tmp_path / "raw", DAYS)
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day(DAYS[0])
    (old,) = _day_files(pipeline, DAYS[0])
    # what a kill after the "exported" record of a new export leaves: its file and the old one
    lake = pipeline.lake
    source = lake.catalogue.partitions(security_lake.TABLE)[(DAYS[0],)]
    new = old.with_name("r20991231t000000_dddddddd-00000.parquet")
    new.write_bytes(old.read_bytes())
    lake.ledger.record(security_lake.RECORDS, "exported", "r20991231t000000_dddddddd", day=DAYS[0], source=source,
                       files=[str(new)], sizes=[new.stat().st_size])
    done = security_lake.export(lake, "r20991231t000001_eeeeeeee", [DAYS[0]])
    assert done["days"][DAYS[0]] == {"outcome": "unchanged", "files": 1, "replaced": 1}
    assert _day_files(pipeline, DAYS[0]) == [new]


def test_a_truncated_export_is_copied_again(tmp_path):
    write_nasty_alerts(tmp_path / "raw", DAYS)
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day(DAYS[0])
    (file,) = _day_files(pipeline, DAYS[0])
    rows = pq.read_table(file).num_rows
    file.write_bytes(file.read_bytes()[:100])
    done = security_lake.export(pipeline.lake, "r20991231t000000_ffffffff", [DAYS[0]])
    assert done["days"][DAYS[0]]["outcome"] == "exported"
    (again,) = _day_files(pipeline, DAYS[0])
    assert pq.read_table(again).num_rows == rows > 0


def test_a_published_version_whose_files_are_gone_does_not_empty_the_day(tmp_path):
    write_nasty_alerts(tmp_path / "raw", DAYS)
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day(DAYS[0])
    before = _day_files(pipeline, DAYS[0])
    # a newer version published while the export was off, whose files then went missing
    Pipeline(make_settings(tmp_path, security_lake_location="off")).run_day(DAYS[0])
    source = Path(pipeline.lake.catalogue.partitions(security_lake.TABLE)[(DAYS[0],)])
    assert before and str(source) not in "".join(str(p) for p in before)
    aside = tmp_path / "aside"
    source.rename(aside)
    with pytest.raises(security_lake.ExportError, match="has no data files"):
        security_lake.export(pipeline.lake, "r20991231t000000_aaaaaaab", [DAYS[0]])
    assert _day_files(pipeline, DAYS[0]) == before
    aside.rename(source)


def test_hidden_partial_copies_of_an_earlier_export_are_removed(tmp_path):
    write_nasty_alerts(tmp_path / "raw", DAYS)
    pipeline = Pipeline(make_settings(tmp_path))
    first = pipeline.run_day(DAYS[0])
    (file,) = _day_files(pipeline, DAYS[0])
    partial = file.with_name(f".{file.name}.abc123.tmp")
    partial.write_bytes(b"PAR1 half")
    stranger = file.with_name(".someone-elses.tmp")
    stranger.write_bytes(b"x")
    pipeline.run_day(DAYS[0])
    names = [p.name for p in _day_files(pipeline, DAYS[0])]
    assert partial.name not in names and stranger.name in names and first.run_token not in "".join(names)


def test_a_location_that_is_a_file_is_a_clear_refusal(tmp_path):
    import os
    import subprocess

    write_nasty_alerts(tmp_path / "raw", DAYS[:1])
    Pipeline(make_settings(tmp_path, security_lake_location="off")).run_day(DAYS[0])
    (tmp_path / "a-file").write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_VAR_RUNTIME_EVENTS_")} | {
        "AIRFLOW_VAR_RUNTIME_EVENTS_RAW_LOCATION": str(tmp_path / "raw"),
        "AIRFLOW_VAR_RUNTIME_EVENTS_CURATED_LOCATION": str(tmp_path / "curated"),
        "AIRFLOW_VAR_RUNTIME_EVENTS_SECURITY_LAKE_LOCATION": str(tmp_path / "a-file"),
        "RUNTIME_EVENTS_SKIP_AIRFLOW_VARIABLES": "1"}
    done = subprocess.run([str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "runtime-events"),
                           "export-security-lake", "--from", DAYS[0], "--to", DAYS[0]], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "runtime_events_security_lake_location" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_root_folder_is_never_a_location():
    for name in ("security_lake_location", "curated_location", "raw_location"):
        values = {"raw_location": "/srv/lake/raw", "curated_location": "/srv/lake/curated", name: "/"}
        with pytest.raises(SettingsError):
            Settings.load(lambda k: values.get(k.removeprefix("runtime_events_")))
