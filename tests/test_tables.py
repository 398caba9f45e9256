"""A table is its folder: the catalogue, the shared templates and publishing for any partition keys.

- Each aggregate's ``select.sql``, wrapped by the shared write-audit-publish template and run
  WITH NO DATA on the embedded engine, gives exactly the columns and types of its DDL (and a
  drifted SELECT is caught).
- No statement file repeats the write-audit-publish or the Parquet DDL boilerplate.
- A table partitioned by ``dt`` and ``cluster_id`` is published, kept, shrunk only when allowed,
  listed, rolled back and cleaned up by the same code as the project's own tables; the metastore
  refuses partition values that do not match a table's keys.
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from local_pipeline import Pipeline, make_settings
from runtime_events import planning, publish, reference, sql
from runtime_events.embedded.engine import EmbeddedEngine
from runtime_events.embedded.metastore import CatalogError
from runtime_events.paths import SQL_DIR
from runtime_events.tables import AGGREGATES, TABLES, Table

DB = "runtime_security"


@pytest.fixture(scope="module")
def created(tmp_path_factory):
    """Every table created by its own DDL, and a run planned, on an empty lake."""
    tmp = tmp_path_factory.mktemp("tables")
    (tmp / "raw").mkdir()
    pipeline = Pipeline(make_settings(tmp))
    run = planning.plan_window(pipeline.settings, date(2026, 3, 3))
    publish.prepare_run(pipeline.lake, run)
    pipeline.statement("create_database.sql", run)
    for table in TABLES:
        pipeline.statement(table.create_sql, run)
    return tmp, pipeline, run


def schema(pipeline: Pipeline, name: str) -> list[tuple[str, str]]:
    info = EmbeddedEngine(Path(pipeline.settings.curated_location) / "_catalog").metastore.get_table(DB, name)
    return [*info.columns, *info.partition_keys]


@pytest.mark.parametrize("table", [t.name for t in AGGREGATES])
def test_each_select_gives_exactly_its_ddl_columns_and_types(created, table):
    _, pipeline, run = created
    pipeline.statement("build_version.sql", run, table=table, no_data=True)
    declared = schema(pipeline, table)
    keys = next(t.partition_keys for t in AGGREGATES if t.name == table)
    assert declared and declared[-len(keys):] == [(k, "string") for k in keys]
    assert schema(pipeline, run.version_table(table)) == declared


def test_a_select_that_drifts_from_its_ddl_is_caught(created, tmp_path):
    _, pipeline, run = created
    drifted = tmp_path / "sql"
    shutil.copytree(SQL_DIR, drifted)
    select = drifted / "daily_severity_counts" / "select.sql"
    select.write_text(select.read_text().replace("count(*) AS event_count", "CAST(count(*) AS integer) AS event_count"))
    later = dataclasses.replace(run, run_token=planning.new_run_token())
    text = sql.render("build_version.sql", sql.sql_params(pipeline.settings, later, {
        "table": "daily_severity_counts", "no_data": True}), sql_dir=drifted)
    query_id = pipeline.hook.run_query(text, {"Database": DB})
    assert pipeline.hook.poll_query_status(query_id) == "SUCCEEDED"
    got = dict(schema(pipeline, later.version_table("daily_severity_counts")))
    assert got["event_count"] == "int" != dict(schema(pipeline, "daily_severity_counts"))["event_count"]


def test_no_statement_repeats_the_shared_boilerplate():
    shared = ("external_location", "partitioned_by", "WITH NO DATA", "STORED AS PARQUET",
              "'parquet.compression'", "CREATE TABLE ")
    for path in SQL_DIR.rglob("*.sql"):
        if path.name == "_macros.sql":
            continue
        text = path.read_text()
        for phrase in shared:
            assert phrase not in text, f"{path.relative_to(SQL_DIR)} repeats {phrase!r}: use _macros.sql"
    for table in AGGREGATES:
        select = (SQL_DIR / table.select_sql).read_text()
        assert "{{ params.dt_from }}" in select and "{{ params.dt_to }}" in select, table.name


def test_the_reference_file_is_checked_when_read():
    rows = reference.rows("rule_attack_techniques")
    assert len(rows) == len({(r["rule_name"], r["tactic"], r["technique_id"]) for r in rows}) > 50
    with pytest.raises(ValueError, match="published table is partitioned by dt"):
        Table("no_day", "aggregate", ("cluster_id",))


# -- publish for any partition keys ------------------------------------------------------------
CLUSTER_DAYS = Table("cluster_day_counts", "aggregate", ("dt", "cluster_id"))


def write_version(pipeline: Pipeline, run: planning.RunPlan, rows: list[tuple[str, str, int]]) -> None:
    """A version of CLUSTER_DAYS written through the shared write-audit-publish macro, recorded
    in the ledger as the run's, as the DAG's runs record theirs."""
    settings, name = pipeline.settings, CLUSTER_DAYS.name
    location = planning.version_location(settings.table_location(name), run.run_token)
    pipeline.lake.ledger.start_run(run.run_token, [{"table": name, "kind": "version", "location": location}])
    values = ", ".join(f"('{d}', '{c}', {n})" for d, c, n in rows)
    template = ('{% from "_macros.sql" import create_work_table %}{% call create_work_table(work) %}'
                "SELECT CAST(n AS bigint) AS event_count, dt, cluster_id FROM (VALUES " + values
                + ") AS t (dt, cluster_id, n){% endcall %}")
    work = {"table": f"{DB}.{run.version_table(name)}", "location": location, "partition_keys": ["dt", "cluster_id"]}
    text = sql.template_environment().from_string(template).render(work=work)
    for statement in (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {DB}.{name} (`event_count` bigint) PARTITIONED BY "
        f"(`dt` string, `cluster_id` string) STORED AS PARQUET LOCATION '{settings.table_location(name)}'",
        text,
    ):
        query_id = pipeline.hook.run_query(statement, {"Database": DB})
        assert pipeline.hook.poll_query_status(query_id) == "SUCCEEDED", pipeline.hook.get_state_change_reason(query_id)


def published(pipeline: Pipeline) -> dict[tuple[str, str], int]:
    engine = EmbeddedEngine(Path(pipeline.settings.curated_location) / "_catalog")
    table = engine.execute(f"SELECT dt, cluster_id, event_count FROM {CLUSTER_DAYS.name}", DB).table.to_pylist()
    return {(r["dt"], r["cluster_id"]): r["event_count"] for r in table}


def test_a_table_partitioned_by_dt_and_cluster_id_is_published_kept_and_rolled_back(tmp_path):
    (tmp_path / "raw").mkdir()
    pipeline = Pipeline(make_settings(tmp_path))
    lake = pipeline.lake
    lake.ledger.claim()
    pipeline.statement("create_database.sql", None)
    day = date(2026, 3, 2)
    runs = [planning.plan_window(pipeline.settings, day, now=datetime(2026, 3, 2, 1, i, tzinfo=timezone.utc))
            for i in range(4)]

    def publish_run(run, rows, days, allow_shrink=False):
        write_version(pipeline, run, rows)
        counts = {(d, c): n for d, c, n in rows}
        return publish.publish(lake, CLUSTER_DAYS, dataclasses.replace(run, allow_shrink=allow_shrink), days,
                               {k: 1 for k in counts})

    first = publish_run(runs[0], [("2026-03-01", "a", 3), ("2026-03-01", "b", 2), ("2026-03-02", "a", 1)],
                        ["2026-03-01", "2026-03-02"])
    assert first["partitions_published"] == 3
    assert published(pipeline) == {("2026-03-01", "a"): 3, ("2026-03-01", "b"): 2, ("2026-03-02", "a"): 1}
    # a day never published and without rows gets no partition: with two keys there is none to give
    assert {v for v in lake.catalogue.partitions(CLUSTER_DAYS.name)} == {
        ("2026-03-01", "a"), ("2026-03-01", "b"), ("2026-03-02", "a")}

    # cluster b is gone from 03-01: refused unless the run allows shrinking; nothing changed
    with pytest.raises(publish.PublishError, match="would drop 1 partitions of cluster_day_counts"):
        publish_run(runs[1], [("2026-03-01", "a", 4), ("2026-03-02", "a", 1)], ["2026-03-01", "2026-03-02"])
    assert published(pipeline)[("2026-03-01", "b")] == 2
    second = publish_run(runs[2], [("2026-03-01", "a", 4), ("2026-03-02", "a", 1)], ["2026-03-01", "2026-03-02"],
                         allow_shrink=True)
    assert second["partitions_dropped"] == 1
    assert published(pipeline) == {("2026-03-01", "a"): 4, ("2026-03-02", "a"): 1}

    # a run with lines for 03-02 only keeps 03-01 as published
    third = publish_run(runs[3], [("2026-03-02", "a", 5), ("2026-03-02", "c", 1)], ["2026-03-02"])
    assert third["days_kept"] == ["2026-03-01"]  # 02-28 was never published: rebuilt, still empty
    assert published(pipeline) == {("2026-03-01", "a"): 4, ("2026-03-02", "a"): 5, ("2026-03-02", "c"): 1}

    kept = publish.versions(lake, CLUSTER_DAYS, "2026-03-01")
    assert [(v["cluster_id"], v["run_token"], v["current"]) for v in kept] == [
        ("a", runs[0].run_token, False), ("a", runs[2].run_token, True), ("b", runs[0].run_token, False)]

    rolled = publish.rollback(lake, CLUSTER_DAYS, "2026-03-01")
    assert rolled["to_run"] == runs[0].run_token
    assert published(pipeline) == {("2026-03-01", "a"): 3, ("2026-03-01", "b"): 2, ("2026-03-02", "a"): 5,
                                   ("2026-03-02", "c"): 1}

    # retention: what was replaced (run 2's 03-01, run 0's 03-02) goes; what is published stays
    root = tmp_path / "curated" / CLUSTER_DAYS.name
    later = datetime.now(timezone.utc) + timedelta(days=pipeline.settings.retention_days, minutes=1)
    publish.clean_up(lake, None, now=later, extra_tables=(CLUSTER_DAYS,))
    assert published(pipeline) == {("2026-03-01", "a"): 3, ("2026-03-01", "b"): 2, ("2026-03-02", "a"): 5,
                                   ("2026-03-02", "c"): 1}
    folders = {p.parent.relative_to(root).as_posix() for p in root.rglob("*.parquet")}
    assert folders == {f"{runs[0].run_token}/dt=2026-03-01/cluster_id=a", f"{runs[0].run_token}/dt=2026-03-01/cluster_id=b",
                       f"{runs[3].run_token}/dt=2026-03-02/cluster_id=a", f"{runs[3].run_token}/dt=2026-03-02/cluster_id=c"}


def test_the_metastore_refuses_partitions_that_do_not_match_the_keys(created):
    _, pipeline, _ = created
    catalogue = pipeline.lake.catalogue
    location = pipeline.settings.table_location("runtime_events_parquet") + "elsewhere/"
    for values in [("2026-03-01",), ("2026-03-01", "a", "extra"), ("2026-03-01", 7)]:
        with pytest.raises(CatalogError, match="INVALID_PARTITION"):
            catalogue.replace_partitions("runtime_events_parquet", {values: location}, [])
    assert catalogue.partitions("runtime_events_parquet") == {}


# -- the README's recipe, followed as written ----------------------------------------------------
README = Path(__file__).resolve().parent.parent / "README.md"


def readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def sql_blocks(section: str) -> list[str]:
    import re
    import textwrap

    return [textwrap.dedent(b) for b in re.findall(r"```sql\n(.*?)```", section, re.S)]


def test_the_readme_recipe_adds_a_table_that_equals_its_oracle(tmp_path):
    """"Adding a table", followed as written: its DDL and SELECT in a copy of include/sql, its
    catalogue line, and the table built and published by the project's own templates and publish
    step; the rows equal a pandas count of the published curated copy."""
    import re

    import pandas as pd

    from alert_fixtures import write_nasty_alerts

    section = readme_section("Adding a table")
    ddl, select = sql_blocks(section)
    line = re.search(r'`(Table\("daily_namespace_counts".*?\)),`', section).group(1)
    table = eval(line, {"Table": Table})  # the catalogue line as the README gives it
    assert table == Table("daily_namespace_counts", "aggregate", ("dt",))
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    (sql_dir / table.name).mkdir(exist_ok=True)  # (a reader who followed the recipe has it already)
    (sql_dir / table.create_sql).write_text(ddl)
    (sql_dir / table.select_sql).write_text(select)

    write_nasty_alerts(tmp_path / "raw", ["2026-03-01", "2026-03-02", "2026-03-03"])
    pipeline = Pipeline(make_settings(tmp_path))
    run = pipeline.run_day("2026-03-03")
    later = dataclasses.replace(run, run_token=planning.new_run_token())
    pipeline.lake.ledger.start_run(later.run_token, [])
    params = sql.sql_params(pipeline.settings, later)
    params["partition_keys"][table.name] = list(table.partition_keys)
    params |= {"table": table.name, "version": {
        "table": f"{DB}.{later.version_table(table.name)}", "partition_keys": list(table.partition_keys),
        "location": planning.version_location(pipeline.settings.table_location(table.name), later.run_token)}}
    for name in (table.create_sql, "build_version.sql"):
        query_id = pipeline.hook.run_query(sql.render(name, params, sql_dir=sql_dir), {"Database": DB})
        assert pipeline.hook.poll_query_status(query_id) == "SUCCEEDED", pipeline.hook.get_state_change_reason(query_id)
    assert schema(pipeline, later.version_table(table.name)) == schema(pipeline, table.name)
    publish.publish(pipeline.lake, table, later, later.day_strings)

    got = pipeline.table(table.name)
    events = pipeline.table("runtime_events_parquet")
    expected = (events.assign(namespace=events["namespace"].astype(object))
                .groupby(["cluster_id", "namespace", "dt"], dropna=False).size().rename("event_count").reset_index())
    key = ["dt", "cluster_id", "namespace"]
    got = got[key + ["event_count"]].astype(object).sort_values(key, key=lambda c: c.astype(str)).reset_index(drop=True)
    expected = expected[key + ["event_count"]].astype(object).sort_values(key, key=lambda c: c.astype(str)).reset_index(drop=True)
    assert len(got) > 3
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_a_version_without_the_tables_columns_is_refused_before_anything_is_published(tmp_path, monkeypatch):
    """A select.sql whose column is misnamed would publish nulls on Athena (Parquet is read by
    name): the run's publish step refuses it, naming the columns, and publishes no aggregate."""
    from alert_fixtures import write_nasty_alerts
    from runtime_events import tasks

    write_nasty_alerts(tmp_path / "raw", ["2026-03-01", "2026-03-02", "2026-03-03"])
    pipeline = Pipeline(make_settings(tmp_path))
    pipeline.run_day("2026-03-03")
    before = {t.name: pipeline.lake.catalogue.partitions(t.name) for t in AGGREGATES}
    run = pipeline.write("2026-03-03")
    events = publish.publish(pipeline.lake, publish.table_named("runtime_events_parquet"), run, [])
    drifted = tmp_path / "sql"
    shutil.copytree(SQL_DIR, drifted)
    select = drifted / "daily_severity_counts" / "select.sql"
    select.write_text(select.read_text().replace("count(*) AS event_count", "count(*) AS events"))
    for table in AGGREGATES:
        text = sql.render("build_version.sql", sql.sql_params(pipeline.settings, run, {"table": table.name}),
                          sql_dir=drifted)
        query_id = pipeline.hook.run_query(text, {"Database": DB})
        assert pipeline.hook.poll_query_status(query_id) == "SUCCEEDED"
    settings = {"runtime_events_raw_location": str(tmp_path / "raw"), "runtime_events_reject_threshold": "0.5",
                "runtime_events_curated_location": str(tmp_path / "curated")}
    monkeypatch.setattr(tasks, "airflow_lookup", lambda: settings.get)  # the Variables a worker would read
    with pytest.raises(Exception, match=r"version of daily_severity_counts does not have the table's columns "
                                        r"\(missing: event_count; not in the table: events\)"):
        tasks.publish_aggregates(run.as_xcom(), events, {}, outlet_events={})
    assert {t.name: pipeline.lake.catalogue.partitions(t.name) for t in AGGREGATES} == before


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace("\n", ",extra\n", 2).replace("source,extra", "source", 1), "5 columns expected"),
    (lambda t: t.splitlines()[0] + "\n", "no rows"),
    (lambda t: t.replace("\nLogs Removal,", "\n Logs Removal,"), "has spaces around it"),
    (lambda t: t.replace(",Persistence,", ",Persistance,", 1), "not an ATT&CK Enterprise tactic"),
    (lambda t: t.replace(",T1070,", ",t1070,", 1), "technique_id 't1070' is not of its form"),
    (lambda t: t.replace("rule_name,tactic", "rule,tactic", 1), "the header must be"),
    (lambda t: t + t.splitlines()[1] + "\n", "is listed twice"),
    (lambda t: t.replace("Logs Removal", "Logs\x00Removal"), "control characters"),
])
def test_a_reference_file_not_of_its_form_fails_naming_the_line(tmp_path, change, message):
    text = (reference.FOLDER / "rule_attack_techniques.csv").read_text()
    bad = tmp_path / "rule_attack_techniques.csv"
    bad.write_text(change(text))
    with pytest.raises(reference.ReferenceError, match=message):
        reference.read(bad, "rule_attack_techniques")


def test_a_reference_file_from_a_spreadsheet_reads_the_same(tmp_path):
    text = (reference.FOLDER / "rule_attack_techniques.csv").read_text()
    excel = tmp_path / "rule_attack_techniques.csv"
    excel.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert reference.read(excel, "rule_attack_techniques") == reference.rows("rule_attack_techniques")


def test_files_beside_the_reference_file_are_reported(created, caplog):
    tmp, pipeline, _ = created
    folder = tmp / "curated" / "rule_attack_techniques"
    (folder / "rule_attack_techniques.json.bak").write_text('{"rule_name": "x"}\n')
    (folder / ".hidden.json").write_text("")
    publish.place_reference_files(pipeline.lake)
    warned = [r.getMessage() for r in caplog.records if "not the package's" in r.getMessage()]
    assert len(warned) == 1 and "rule_attack_techniques.json.bak" in warned[0] and ".hidden" not in warned[0]
    assert (folder / "rule_attack_techniques.json.bak").exists()  # reported, never deleted
    (folder / "rule_attack_techniques.json.bak").unlink()


@pytest.mark.parametrize("value, message", [
    ({"days": ["2026-03-02"], "run_token": "r20260302t000000_0000000a"}, "logical_date"),
    ({"logical_date": "2026-03-02", "days": ["2026-03-02"], "run_token": "r20261399t000000_0000000a"}, "run token"),
    ({"logical_date": "2026-03-02", "days": ["2026-03-02"], "run_token": "r20260302t000000_0000000a\n"}, "run token"),
    ({"logical_date": "2026-03-02", "days": ["2026-02-28", "2026-03-02"], "run_token": "r20260302t000000_0000000a"},
     "consecutive"),
    ({"logical_date": "2026-03-02", "days": ["2026-03-01"], "run_token": "r20260302t000000_0000000a"}, "end on"),
    ({"logical_date": "2026-03-02", "days": "2026-03-02", "run_token": "r20260302t000000_0000000a"}, "list of dates"),
    ({"logical_date": "2026-03-02", "days": ["2026-03-02"], "run_token": "r20260302t000000_0000000a",
      "allow_shrink": "true"}, "allow_shrink"),
])
def test_a_run_plan_from_xcom_is_checked(value, message):
    with pytest.raises(ValueError, match=message):
        planning.RunPlan.of(value)
    good = planning.plan_window(make_settings(Path("/tmp/unused")), date(2026, 3, 2))
    assert planning.RunPlan.of(good.as_xcom()) == good
