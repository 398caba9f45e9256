"""QuickSight as code: the Athena data source, one dataset per aggregate table and one for the
load audit, and the dashboard of ``include/quicksight/dashboard.json``, created or updated so
that they match this release (``runtime-events quicksight deploy``, or the DAG's
``deploy_quicksight`` task when ``quicksight_deploy`` is on).

Idempotent: each resource carries the tag ``runtime-events:definition``, a digest of what it was
made from (its definition, the settings it depends on and its permissions). A resource whose tag
matches is left alone, so a second deploy changes nothing; one whose tag differs is updated; a
missing one is created. ``--dry-run`` reads the tags and prints that plan without changing
anything. The ids are stable (``runtime-events-<database>-...``), so the datasets' ids feed the
SPICE refreshes after each run without a setting.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

from runtime_events.paths import QUICKSIGHT_DIR
from runtime_events.settings import Settings
from runtime_events.tables import AGGREGATES, TABLES

log = logging.getLogger(__name__)

TAG = "runtime-events:definition"
PERMISSIONS_TAG = "runtime-events:permissions"
DEFINITION = QUICKSIGHT_DIR / "dashboard.json"
LOAD_AUDIT = "runtime_events_load_audit"
# The dashboard's tables: the aggregates it charts (the OCSF table is for Security Lake) and the
# load audit, read as its latest run per day.
CHARTED = tuple(t.name for t in AGGREGATES if t.name != "ocsf_detection_findings")
_COLUMN_TYPES = {"string": "STRING", "int": "INTEGER", "bigint": "INTEGER", "double": "DECIMAL",
                 "timestamp": "DATETIME", "boolean": "BOOLEAN"}
_ID_PARAMETER = {"datasource": "DataSourceId", "dataset": "DataSetId", "dashboard": "DashboardId"}
_API_NAME = {"datasource": "data_source", "dataset": "data_set", "dashboard": "dashboard"}  # boto3's method names
_OWNER_ACTIONS = {
    "datasource": ["quicksight:DescribeDataSource", "quicksight:DescribeDataSourcePermissions",
                   "quicksight:PassDataSource"],
    "dataset": ["quicksight:DescribeDataSet", "quicksight:DescribeDataSetPermissions", "quicksight:PassDataSet",
                "quicksight:DescribeIngestion", "quicksight:ListIngestions"],
    "dashboard": ["quicksight:DescribeDashboard", "quicksight:ListDashboardVersions",
                  "quicksight:QueryDashboard"],
}


@dataclass
class Resource:
    kind: str  # datasource, dataset, dashboard
    id: str
    name: str
    body: dict  # the create call's arguments, without AwsAccountId and Tags
    digest: str = ""  # of the body without its permissions
    permissions_digest: str = ""
    action: str = ""  # create, update, permissions (only they changed), unchanged
    permissions_changed: bool = False

    def arn(self, region: str, account: str) -> str:
        return f"arn:aws:quicksight:{region}:{account}:{self.kind}/{self.id}"


@dataclass
class Plan:
    account: str
    region: str
    resources: list[Resource] = field(default_factory=list)

    @property
    def dataset_ids(self) -> list[str]:
        return [r.id for r in self.resources if r.kind == "dataset"]

    def lines(self) -> list[str]:
        return [f"{r.action:9} {r.kind:10} {r.id}" for r in self.resources]


def prefix(settings: Settings) -> str:
    return f"runtime-events-{settings.database}".replace("_", "-")


def dataset_id(settings: Settings, table: str) -> str:
    return f"{prefix(settings)}-{table.replace('_', '-')}"


def spice_dataset_ids(settings: Settings) -> list[str]:
    """The deployed datasets a run refreshes: those in SPICE, when the deploy is on."""
    if not settings.quicksight_deploy or settings.quicksight_import_mode != "SPICE":
        return []
    return [dataset_id(settings, t) for t in (*CHARTED, LOAD_AUDIT)]


def resources(settings: Settings, account: str, region: str) -> list[Resource]:
    """What this release wants in QuickSight, in the order it must be made."""
    from runtime_events.publish import ddl_columns

    source = Resource("datasource", f"{prefix(settings)}-athena", f"Runtime events ({settings.database}, Athena)", {
        "Type": "ATHENA", "DataSourceParameters": {"AthenaParameters": {"WorkGroup": settings.athena_workgroup}}})
    source_arn = source.arn(region, account)
    found = [source]
    by_name = {t.name: t for t in TABLES}
    for table in CHARTED:
        columns = ddl_columns(settings, by_name[table]) + [(k, "string") for k in by_name[table].partition_keys]
        physical = {"RelationalTable": {"DataSourceArn": source_arn, "Catalog": "AwsDataCatalog",
                                        "Schema": settings.database, "Name": table,
                                        "InputColumns": [{"Name": c, "Type": _COLUMN_TYPES[t]} for c, t in columns]}}
        found.append(_dataset(settings, table, physical))
    audit_sql = (f"SELECT dt, max_by(lines_scanned, run_token) AS lines_scanned, max_by(alerts_loaded, run_token) "
                 f"AS alerts_loaded, max_by(duplicates_dropped, run_token) AS duplicates_dropped, "
                 f"max_by(lines_rejected, run_token) AS lines_rejected FROM {settings.database}.{LOAD_AUDIT} "
                 "WHERE dt IS NOT NULL GROUP BY dt")
    found.append(_dataset(settings, LOAD_AUDIT, {"CustomSql": {
        "DataSourceArn": source_arn, "Name": "latest run per day", "SqlQuery": audit_sql,
        "Columns": [{"Name": "dt", "Type": "STRING"}] + [
            {"Name": c, "Type": "INTEGER"} for c in ("lines_scanned", "alerts_loaded", "duplicates_dropped",
                                                     "lines_rejected")]}}))
    definition = DEFINITION.read_text()
    for table in (*CHARTED, LOAD_AUDIT):
        arn = f"arn:aws:quicksight:{region}:{account}:dataset/{dataset_id(settings, table)}"
        definition = definition.replace("${dataset:" + table + "}", arn)
    if "${" in definition:
        raise ValueError(f"{DEFINITION} names a dataset the deploy does not make: {definition[definition.index('${'):][:60]}")
    found.append(Resource("dashboard", prefix(settings), f"Runtime alerts ({settings.database})", {
        "Definition": json.loads(definition),
        "DashboardPublishOptions": {"AdHocFilteringOption": {"AvailabilityStatus": "ENABLED"}}}))
    for resource in found:
        resource.body["Name"] = resource.name
        permissions = _permissions(settings, resource.kind)
        if permissions:
            resource.body["Permissions"] = permissions
        resource.digest = _digest({k: v for k, v in resource.body.items() if k != "Permissions"})
        resource.permissions_digest = _digest(permissions)
    return found


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:32]


def _dataset(settings: Settings, table: str, physical: dict) -> Resource:
    return Resource("dataset", dataset_id(settings, table), f"{table} ({settings.database})", {
        "PhysicalTableMap": {"table": physical}, "ImportMode": settings.quicksight_import_mode})


def _permissions(settings: Settings, kind: str) -> list[dict]:
    return [{"Principal": p, "Actions": _OWNER_ACTIONS[kind]} for p in settings.quicksight_principals]


class Deployer:
    """Talks to QuickSight (and STS, for the account) through the Amazon provider's hooks."""

    def __init__(self, settings: Settings) -> None:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from runtime_events.engines import AWS_CLIENT_CONFIG

        self.settings = settings
        hook = AwsBaseHook(aws_conn_id=settings.aws_conn_id, client_type="quicksight", config=AWS_CLIENT_CONFIG)
        self.client = hook.get_conn()
        self.region = self.client.meta.region_name
        sts = AwsBaseHook(aws_conn_id=settings.aws_conn_id, client_type="sts", config=AWS_CLIENT_CONFIG).get_conn()
        self.account = sts.get_caller_identity()["Account"]

    def plan(self) -> Plan:
        plan = Plan(self.account, self.region, resources(self.settings, self.account, self.region))
        for resource in plan.resources:
            tags = self._tags(resource)
            resource.permissions_changed = tags is not None and tags.get(PERMISSIONS_TAG) != resource.permissions_digest
            if tags is None:
                resource.action = "create"
            elif tags.get(TAG) != resource.digest:
                resource.action = "update"
            elif tags.get(PERMISSIONS_TAG) != resource.permissions_digest:
                resource.action = "permissions"
            else:
                resource.action = "unchanged"
        return plan

    def deploy(self, dry_run: bool = False) -> Plan:
        plan = self.plan()
        for resource in plan.resources:
            log.info("QuickSight %s %s: %s", resource.kind, resource.id, resource.action)
            if dry_run or resource.action == "unchanged":
                continue
            if resource.action == "create":
                self._create(resource)
            else:
                self._update(resource, definition=resource.action == "update")
            self.client.tag_resource(ResourceArn=resource.arn(self.region, self.account), Tags=self._tag_list(resource))
        return plan

    @staticmethod
    def _tag_list(resource: Resource) -> list[dict]:
        return [{"Key": TAG, "Value": resource.digest}, {"Key": PERMISSIONS_TAG, "Value": resource.permissions_digest}]

    def _granted(self, resource: Resource) -> set[str]:
        """The principals the resource is shared with now."""
        name, ident = _API_NAME[resource.kind], _ID_PARAMETER[resource.kind]
        answer = getattr(self.client, f"describe_{name}_permissions")(AwsAccountId=self.account, **{ident: resource.id})
        return {p["Principal"] for p in answer.get("Permissions", [])}

    def _tags(self, resource: Resource) -> dict | None:
        """The resource's tags; None when it does not exist. (One made by hand, without our tags,
        is updated into ours.)"""
        try:
            tags = self.client.list_tags_for_resource(ResourceArn=resource.arn(self.region, self.account))["Tags"]
        except self.client.exceptions.ResourceNotFoundException:
            return None
        return {t["Key"]: t["Value"] for t in tags} if tags else None

    def _create(self, resource: Resource) -> None:
        call = {"datasource": self.client.create_data_source, "dataset": self.client.create_data_set,
                "dashboard": self.client.create_dashboard}[resource.kind]
        try:
            call(AwsAccountId=self.account, **{_ID_PARAMETER[resource.kind]: resource.id}, **resource.body,
                 Tags=self._tag_list(resource))
        except self.client.exceptions.ResourceExistsException:  # made by hand, untagged: made ours
            resource.permissions_changed = True
            self._update(resource, definition=True)

    def _update(self, resource: Resource, definition: bool) -> None:
        revoke = self._granted(resource) - set(self.settings.quicksight_principals) if resource.permissions_changed else set()
        for operation, params in update_calls(resource, self.account, definition, resource.permissions_changed, revoke):
            answer = getattr(self.client, operation)(**params)
            if operation == "update_dashboard":  # publish the version just made
                version = int(answer["VersionArn"].rsplit("/", 1)[-1])
                self.client.update_dashboard_published_version(
                    AwsAccountId=self.account, DashboardId=resource.id, VersionNumber=version)


def update_calls(resource: Resource, account: str, definition: bool = True, permissions: bool = True,
                 revoke: set[str] = frozenset()) -> list[tuple[str, dict]]:
    """The calls that bring an existing resource to ``resource``: its update (what an update
    takes of the create's arguments) when its definition changed, then its permissions granted
    when they changed."""
    kind = resource.kind
    ident = _ID_PARAMETER[kind]
    dropped = {"datasource": ("Permissions", "Type"), "dataset": ("Permissions",),
               "dashboard": ("Permissions",)}[kind]
    name = _API_NAME[kind]
    ids = {"AwsAccountId": account, ident: resource.id}
    calls = [(f"update_{name}", {**ids, **{k: v for k, v in resource.body.items() if k not in dropped}})] if definition else []
    changes = {}
    if permissions and resource.body.get("Permissions"):
        changes["GrantPermissions"] = resource.body["Permissions"]
    if permissions and revoke:  # principals no longer in quicksight_principals lose what we granted
        changes["RevokePermissions"] = [{"Principal": p, "Actions": _OWNER_ACTIONS[kind]} for p in sorted(revoke)]
    if changes:
        calls.append((f"update_{name}_permissions", {**ids, **changes}))
    return calls
