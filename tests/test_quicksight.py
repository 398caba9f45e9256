"""QuickSight as code (issue 14) against a moto server on 127.0.0.1, through the recording proxy
of test_athena_mode (every call classified as IAM sees it).

- ``runtime-events quicksight deploy`` creates the Athena data source on the workgroup, one
  dataset per charted aggregate and one for the load audit (SPICE), and the dashboard of
  include/quicksight/dashboard.json over them, shared with the configured principals; a second
  deploy changes nothing (no create, update or tag call); ``--dry-run`` prints the plan and
  changes nothing.
- Every call is allowed by docs/iam-policy.json, and every grant of its deploy statement that a
  first deploy needs is used.
- The dashboard definition is valid input for QuickSight's CreateDashboard (botocore's model).
- The deployed SPICE datasets are what a run refreshes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from test_athena_mode import ACCOUNT, DATABASE, REGION, WORKGROUP, AwsProxy, allowed, policy

BIN = Path(sys.executable).parent
PRINCIPAL = f"arn:aws:quicksight:{REGION}:{ACCOUNT}:group/default/security-analysts"
PREFIX = f"runtime-events-{DATABASE}".replace("_", "-")
TABLES = ["daily_rule_counts", "daily_severity_counts", "daily_workload_counts", "daily_cve_counts",
          "daily_attack_counts", "runtime_events_load_audit"]
CHANGES = {"CreateDataSource", "UpdateDataSource", "CreateDataSet", "UpdateDataSet", "CreateDashboard",
           "UpdateDashboard", "TagResource", "UpdateDashboardPublishedVersion", "UpdateDashboardPermissions",
           "UpdateDataSetPermissions", "UpdateDataSourcePermissions"}


@pytest.fixture(scope="module")
def moto():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    url = "http://{}:{}".format(*server.get_host_and_port())
    proxy = AwsProxy(url)
    proxy.kms_key = "arn:aws:kms:us-east-1:123456789012:key/unused"
    yield proxy, url
    proxy.server.shutdown()
    server.stop()


def cli(proxy: AwsProxy, *args: str, **settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_VAR_RUNTIME_EVENTS_", "AWS_"))} | {
        "AWS_ENDPOINT_URL": proxy.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION, "RUNTIME_EVENTS_SKIP_AIRFLOW_VARIABLES": "1"}
    values = {"engine": "athena", "raw_location": "s3://alerts-bucket/raw/", "curated_location": "s3://lake-bucket/curated/",
              "database": DATABASE, "athena_workgroup": WORKGROUP, "quicksight_principals": PRINCIPAL, **settings}
    env |= {f"AIRFLOW_VAR_RUNTIME_EVENTS_{k.upper()}": v for k, v in values.items()}
    return subprocess.run([str(BIN / "runtime-events"), "quicksight", *args], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def deployed(moto):
    proxy, url = moto
    marks = [len(proxy.calls)]
    runs = {}
    for name, args in (("dry", ["deploy", "--dry-run"]), ("first", ["deploy"]), ("second", ["deploy"]),
                       ("dry-after", ["deploy", "--dry-run"])):
        runs[name] = cli(proxy, *args)
        assert runs[name].returncode == 0, runs[name].stderr[-3000:]
        marks.append(len(proxy.calls))
    calls = {name: proxy.calls[marks[i]:marks[i + 1]] for i, name in enumerate(runs)}
    client = boto3.client("quicksight", endpoint_url=url, region_name=REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    return runs, calls, client


def test_the_first_deploy_creates_the_source_the_datasets_and_the_dashboard(deployed):
    runs, calls, client = deployed
    made = [(c.action, c.resources[0].rsplit(":", 1)[1]) for c in calls["first"] if c.action.startswith("Create")]
    assert made == [("CreateDataSource", f"datasource/{PREFIX}-athena")] + [
        ("CreateDataSet", f"dataset/{PREFIX}-{t.replace('_', '-')}") for t in sorted(TABLES, key=TABLES.index)
    ] + [("CreateDashboard", f"dashboard/{PREFIX}")]
    source = client.describe_data_source(AwsAccountId=ACCOUNT, DataSourceId=f"{PREFIX}-athena")["DataSource"]
    assert source["Type"] == "ATHENA" and source["DataSourceParameters"]["AthenaParameters"]["WorkGroup"] == WORKGROUP
    dashboard = client.describe_dashboard(AwsAccountId=ACCOUNT, DashboardId=PREFIX)["Dashboard"]
    assert dashboard["Name"] == f"Runtime alerts ({DATABASE})"
    create = next(c for c in calls["first"] if c.action == "CreateDashboard").params
    declared = {d["Identifier"]: d["DataSetArn"] for d in create["Definition"]["DataSetIdentifierDeclarations"]}
    assert declared == {t: f"arn:aws:quicksight:{REGION}:{ACCOUNT}:dataset/{PREFIX}-{t.replace('_', '-')}" for t in TABLES}
    titles = [v["BarChartVisual"]["Title"]["FormatText"]["PlainText"] for s in create["Definition"]["Sheets"] for v in s["Visuals"]]
    assert titles == ["Alerts per day by severity", "Top rules", "Top workloads", "CVEs", "MITRE ATT&CK techniques",
                      "Lines per day: loaded, duplicates, rejected"]
    assert [p["Principal"] for p in create["Permissions"]] == [PRINCIPAL]
    datasets = [c.params for c in calls["first"] if c.action == "CreateDataSet"]
    assert {d["ImportMode"] for d in datasets} == {"SPICE"}
    severity = next(d for d in datasets if d["DataSetId"].endswith("daily-severity-counts"))
    table = severity["PhysicalTableMap"]["table"]["RelationalTable"]
    assert (table["Schema"], table["Name"]) == (DATABASE, "daily_severity_counts")
    assert [(c["Name"], c["Type"]) for c in table["InputColumns"]] == [
        ("cluster_id", "STRING"), ("severity", "STRING"), ("event_count", "INTEGER"), ("dt", "STRING")]
    assert runs["first"].stdout.splitlines()[-1] == "datasets: " + ",".join(
        f"{PREFIX}-{t.replace('_', '-')}" for t in TABLES)


def test_a_second_deploy_changes_nothing_and_dry_runs_change_nothing(deployed):
    runs, calls, _ = deployed
    for name in ("dry", "second", "dry-after"):
        assert not [c.action for c in calls[name] if c.action in CHANGES], name
    assert [ln.split()[0] for ln in runs["dry"].stdout.splitlines()[1:-1]] == ["create"] * 8
    assert [ln.split()[0] for ln in runs["second"].stdout.splitlines()[1:-1]] == ["unchanged"] * 8
    assert runs["dry"].stdout.startswith("plan (dry run, nothing changed)")


def test_a_changed_setting_updates_only_what_depends_on_it(moto, deployed):
    proxy, _ = moto
    first = len(proxy.calls)
    done = cli(proxy, "deploy", "--dry-run", athena_workgroup="other-workgroup")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [ln.split()[:2] for ln in done.stdout.splitlines()[1:-1]] == [["update", "datasource"]] + [
        ["unchanged", "dataset"]] * 6 + [["unchanged", "dashboard"]]
    done = cli(proxy, "deploy", athena_workgroup="other-workgroup")
    assert done.returncode == 0, done.stderr[-2000:]
    changed = [c.action for c in proxy.calls[first:] if c.action in CHANGES]
    assert changed == ["UpdateDataSource", "TagResource"]  # the permissions did not change
    assert cli(proxy, "deploy", athena_workgroup="other-workgroup").stdout.count("unchanged") == 8


def test_every_deploy_call_is_allowed_by_the_iam_policy(deployed):
    _, calls, _ = deployed
    document = policy("arn:aws:kms:us-east-1:123456789012:key/unused")
    used = set()
    for call in (c for run in calls.values() for c in run):
        if call.service == "sts":
            continue
        used.add(call.iam_action)
        for resource in call.resources:
            assert allowed(document, call.iam_action, resource, call.condition), (call.iam_action, resource)
        if call.action == "CreateDataSet":  # QuickSight also asks for PassDataSource on the source
            assert allowed(document, "quicksight:PassDataSource", call.params["PhysicalTableMap"]["table"].popitem()[1]
                           ["DataSourceArn"], {})
        if call.action == "CreateDashboard":  # and PassDataSet on each dataset
            for declared in call.params["Definition"]["DataSetIdentifierDeclarations"]:
                assert allowed(document, "quicksight:PassDataSet", declared["DataSetArn"], {})
    (statement,) = [s for s in document["Statement"] if s["Sid"] == "DeployQuickSightWhenConfigured"]
    # the update calls need a changed definition, which moto cannot apply (no UpdateDataSet/UpdateDashboard)
    unused = {"quicksight:UpdateDataSet", "quicksight:UpdateDataSource", "quicksight:UpdateDataSetPermissions", "quicksight:UpdateDashboard",
              "quicksight:UpdateDashboardPublishedVersion", "quicksight:UpdateDashboardPermissions",
              "quicksight:UpdateDataSource", "quicksight:UpdateDataSourcePermissions",
              "quicksight:PassDataSource", "quicksight:PassDataSet",
              # read only to revoke a principal taken out of quicksight_principals (moto has no such calls)
              "quicksight:DescribeDataSourcePermissions", "quicksight:DescribeDataSetPermissions",
              "quicksight:DescribeDashboardPermissions"}
    assert set(statement["Action"]) - used == unused
    assert not allowed(document, "quicksight:CreateDashboard", f"arn:aws:quicksight:{REGION}:{ACCOUNT}:dashboard/other", {})


def test_every_create_and_update_call_is_valid_quicksight_input():
    import botocore.session
    from botocore.validate import ParamValidator

    from runtime_events import quicksight
    from runtime_events.settings import Settings

    settings = Settings.load(lambda k: {"runtime_events_engine": "athena", "runtime_events_raw_location": "s3://a-b/r/",
                                        "runtime_events_curated_location": "s3://a-b/c/",
                                        "runtime_events_quicksight_principals": PRINCIPAL}.get(k))
    model = botocore.session.get_session().get_service_model("quicksight")
    for resource in quicksight.resources(settings, ACCOUNT, REGION):
        operation = {"datasource": "CreateDataSource", "dataset": "CreateDataSet", "dashboard": "CreateDashboard"}[resource.kind]
        ids = {"datasource": "DataSourceId", "dataset": "DataSetId", "dashboard": "DashboardId"}[resource.kind]
        params = {"AwsAccountId": ACCOUNT, ids: resource.id, **resource.body}
        report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
        assert not report.has_errors(), report.generate_report()
        # and the update path, which moto cannot run
        gone = {f"arn:aws:quicksight:{REGION}:{ACCOUNT}:user/default/former-analyst"}
        updates = quicksight.update_calls(resource, ACCOUNT, revoke=gone)
        (permissions,) = [u for m, u in updates if m.endswith("_permissions")]
        assert [p["Principal"] for p in permissions["RevokePermissions"]] == sorted(gone)
        assert [p["Principal"] for p in permissions["GrantPermissions"]] == [PRINCIPAL]
        for method, update in updates:
            name = "".join(part.title() for part in method.split("_"))
            report = ParamValidator().validate(update, model.operation_model(name).input_shape)
            assert not report.has_errors(), (name, report.generate_report())


def test_the_deployed_spice_datasets_are_refreshed_after_each_run():
    from runtime_events import quicksight
    from runtime_events.settings import Settings

    values = {"engine": "athena", "raw_location": "s3://a-b/r/", "curated_location": "s3://a-b/c/",
              "quicksight_deploy": "true", "quicksight_dataset_ids": "hand-made"}
    settings = Settings.load(lambda k: values.get(k.removeprefix("runtime_events_")))
    assert quicksight.spice_dataset_ids(settings) == [
        f"runtime-events-runtime-security-{t.replace('_', '-')}" for t in TABLES]
    direct = Settings.load(lambda k: (values | {"quicksight_import_mode": "direct_query"}).get(k.removeprefix("runtime_events_")))
    assert quicksight.spice_dataset_ids(direct) == []


def test_deploy_on_the_embedded_engine_says_it_needs_athena(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_VAR_RUNTIME_EVENTS_")} | {
        "RUNTIME_EVENTS_SKIP_AIRFLOW_VARIABLES": "1", "AIRFLOW_VAR_RUNTIME_EVENTS_RAW_LOCATION": str(tmp_path / "raw"),
        "AIRFLOW_VAR_RUNTIME_EVENTS_CURATED_LOCATION": str(tmp_path / "curated")}
    done = subprocess.run([str(BIN / "runtime-events"), "quicksight", "deploy"], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "runtime_events_engine=athena" in done.stderr


def test_a_bad_principal_fails_naming_the_setting(moto):
    proxy, _ = moto
    done = cli(proxy, "deploy", quicksight_principals="arn:aws:iam::123456789012:user/x")
    assert done.returncode == 2 and "runtime_events_quicksight_principals" in done.stderr
