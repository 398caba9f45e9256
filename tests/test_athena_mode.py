"""The DAG on the AWS APIs: ``airflow dags test`` with ``engine=athena`` against a moto server.

Moto (on 127.0.0.1) answers the AWS APIs; the tests reach it only through ``AwsProxy``, a small
HTTP proxy that records every call as (service, action, resources) and plays the parts of AWS
that moto does not:

* Athena's side effects: moto runs no SQL, so the proxy does, with the caller's credentials and
  through itself, the Glue and S3 calls Athena makes for a statement (read the tables' files,
  create the table, write the files and partitions, write the result file, encrypt it);
* result rows where a task reads them (``audit_stage``, ``audit_parquet_version``, the CLI);
* faults: ``TooManyRequestsException`` for the first StartQueryExecution calls, a FAILED query
  with Athena's reason (moto's queries always succeed), a scan size for the cost table.

Two athena runs of one day with 250 clusters (a polling run, on a new account, whose second
write fails; then a deferrable, throttled run over a version an earlier run published) and one
embedded run of the same day, started alongside, are checked against what users rely on: only
Athena SQL to the configured places, the same statements as the embedded engine, publish in
batches of at most 100 partitions, untouched raw files, deletes only inside the tables' own
folders, every call allowed by ``docs/iam-policy.json``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import http.client
import json
import os
import re
import sqlite3
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

import boto3
import pytest
import sqlglot
from sqlglot import exp

from airflow_env import airflow_env
from runtime_events import costs, tasks
from runtime_events.settings import Settings
from runtime_events.tables import AGGREGATES, PUBLISHED, TABLES

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# The Airflow that runs the DAG: the repository's own, or (test_compat_matrix.py) an older release's.
BIN = Path(os.environ.get("RUNTIME_EVENTS_TEST_AIRFLOW_BIN") or REPO / ".venv" / "bin")
REGION, ACCOUNT = "us-east-1", "123456789012"
DAY = "2026-03-01"
CLUSTERS = [f"cluster-{i:03d}" for i in range(250)]
DATABASE = "runtime_sec"
WORKGROUP = "security-etl"
RAW = "s3://alerts-bucket/lightspin/k8s_runtime_events/"
CURATED = "s3://lake-bucket/curated/"
RESULTS = "s3://query-results-bucket/athena/"
SECURITY_LAKE = "s3://aws-security-data-lake-us-east-1-abc/ext/runtime_events/"
DATASET = "daily-rule-counts-spice"
STAGE_SCANNED = 3 * 2**40  # the proxy says stage_alerts scanned 3 TiB: $15
THROTTLED = 3
OLD_TOKEN = "r20260228t000000_0badcafe"  # the version an earlier run published
EARLIER_CLUSTERS = [CLUSTERS[0], CLUSTERS[1], "cluster-gone"]  # its clusters: one is gone since
GUIDE = "SELECT rule_name, severity, COUNT(rule_name) as count_rules FROM runtime_events GROUP BY rule_name, severity ORDER BY count_rules;"
TOKEN = re.compile(r"r[0-9]{8}t[0-9]{6}_[0-9a-f]{8}")


# -- the proxy in front of moto ----------------------------------------------------------------
@dataclass
class Call:
    by: str  # "dag" (Airflow, the CLI) or "athena" (what Athena does for the caller)
    service: str
    action: str
    resources: list[str]
    condition: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    status: int = 0
    answer: dict = field(default_factory=dict)

    @property
    def iam_action(self) -> str:
        return f"{self.service}:{self.action}"


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


def _s3_split(location: str) -> tuple[str, str]:
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    return bucket, prefix


def _quicksight_operations() -> list[tuple[str, re.Pattern, str]]:
    """(HTTP method, path pattern, operation) of every QuickSight API call, from botocore's model."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("quicksight")
    found = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        uri = http["requestUri"].split("?")[0]
        pattern = re.sub(r"\\{(\w+)\+?\\}", lambda m: f"(?P<{m.group(1)}>.+)" if m.group(1) == "ResourceArn"
                         else f"(?P<{m.group(1)}>[^/]+)", re.escape(uri))
        found.append((http["method"], re.compile(pattern + "$"), name))
    return found


QUICKSIGHT_OPERATIONS = _quicksight_operations()
_QUICKSIGHT_RESOURCES = {"DataSetId": "dataset", "DataSourceId": "datasource", "DashboardId": "dashboard"}


def quicksight_call(by: str, method: str, path: str, body: bytes) -> Call:
    """A QuickSight request as IAM sees it: its action and the resource it names (in the path, or
    for a create of a dataset or data source, in the body)."""
    for verb, pattern, name in QUICKSIGHT_OPERATIONS:
        match = pattern.match(path)
        if verb == method and match:
            params = {**json.loads(body or b"{}"), **match.groupdict()} if body.strip()[:1] in (b"{", b"") else dict(match.groupdict())
            if "ResourceArn" in params:
                return Call(by, "quicksight", name, [params["ResourceArn"]], params=params)
            key = next((k for k in ("DataSetId", "DataSourceId", "DashboardId") if k in params), None)
            resources = [_arn("quicksight", f"{_QUICKSIGHT_RESOURCES[key]}/{params[key]}")] if key else [
                _arn("quicksight", "*")]
            return Call(by, "quicksight", name, resources, params=params)
    raise AssertionError(f"no QuickSight operation for {method} {path}")


def classify(method: str, path: str, query: str, headers, body: bytes, workgroups: dict) -> Call:
    """The IAM action and resources of one request, as AWS would authorise it."""
    service = re.search(r"Credential=[^/]+/[0-9]+/[^/]+/([^/]+)/", headers.get("Authorization", "")).group(1)
    by = headers.get("x-test-actor", "dag")
    target = headers.get("X-Amz-Target")
    if target:  # JSON protocol: Athena, Glue, KMS
        action, params = target.rsplit(".", 1)[1], json.loads(body or b"{}")
        if service == "athena":
            group = params.get("WorkGroup") or workgroups.get(params.get("QueryExecutionId"), "?")
            return Call(by, service, action, [_arn("athena", f"workgroup/{group}")], params=params)
        if service == "glue":
            db = params.get("DatabaseName") or (params.get("DatabaseInput") or {}).get("Name")
            table = params.get("TableName") or (params.get("TableInput") or {}).get("Name")
            if action in ("GetDatabase", "DeleteDatabase"):
                db = params["Name"]
            if action in ("GetTable", "DeleteTable"):
                table = params["Name"]
            resources = [_arn("glue", "catalog")] + ([_arn("glue", f"database/{db}")] if db else [])
            if table or action == "GetTables":
                resources.append(_arn("glue", f"table/{db}/{table or '*'}"))
            return Call(by, service, action, resources, params=params)
        return Call(by, service, action, [params["KeyId"]], params=params)
    if service == "sts":
        return Call(by, service, dict(parse_qsl(body.decode()))["Action"], ["*"])
    if service == "quicksight":
        return quicksight_call(by, method, unquote(path), body)
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    args = parse_qs(query, keep_blank_values=True)
    if key:
        action = {"GET": "GetObject", "HEAD": "GetObject", "PUT": "PutObject", "DELETE": "DeleteObject"}[method]
        return Call(by, "s3", action, [f"arn:aws:s3:::{bucket}/{key}"])
    if method == "POST" and "delete" in args:
        keys = re.findall(r"<Key>(.*?)</Key>", body.decode())
        return Call(by, "s3", "DeleteObject", [f"arn:aws:s3:::{bucket}/{k}" for k in keys])
    if "location" in args:
        return Call(by, "s3", "GetBucketLocation", [f"arn:aws:s3:::{bucket}"])
    action = {"GET": "ListBucket", "HEAD": "ListBucket", "PUT": "CreateBucket"}[method]
    return Call(by, "s3", action, [f"arn:aws:s3:::{bucket}"], condition={"s3:prefix": args.get("prefix", [""])[0]})


class AwsProxy:
    """Forwards to moto, records, and plays Athena's part (see the module docstring)."""

    def __init__(self, moto_url: str) -> None:
        self.moto = urlsplit(moto_url)
        self.calls: list[Call] = []
        self.workgroups: dict[str, str] = {}
        self.throttle = 0  # StartQueryExecution calls still to answer with TooManyRequestsException
        self.fail: tuple[str, str] | None = None  # (text in the query, Athena's reason)
        self.failed: dict[str, str] = {}
        self.clusters = list(CLUSTERS)  # what the stage holds: the clusters a write batch writes
        self.published: set[tuple] = set()  # the partitions Glue holds before a run
        self.kms_key = ""
        self.errors: list[str] = []  # what the fake Athena could not do (the query FAILED)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, answer = proxy.handle(self.command, self.path, self.headers, body)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.athena = FakeAthena(self)

    def handle(self, method: str, raw_path: str, headers, body: bytes):
        parts = urlsplit(raw_path)
        call = classify(method, parts.path, parts.query, headers, body, self.workgroups)
        if headers.get("x-amz-copy-source"):  # CopyObject: s3:GetObject on the source as well
            source = unquote(headers["x-amz-copy-source"]).lstrip("/").split("?", 1)[0]
            self.calls.append(Call(call.by, "s3", "GetObject", [f"arn:aws:s3:::{source}"], status=200))
        if call.by == "dag" and call.action == "StartQueryExecution":
            with self.lock:
                throttled, self.throttle = self.throttle > 0, max(self.throttle - 1, 0)
            if throttled:
                call.status = 400
                self.calls.append(call)
                return 400, [("Content-Type", "application/x-amz-json-1.1")], json.dumps(
                    {"__type": "TooManyRequestsException", "Message": "Rate exceeded"}).encode()
            try:
                self.athena.before_start(call.params)
            except Exception as error:
                self.errors.append(f"no result rows for {call.params['QueryString'][:200]}: {error!r}")
        status, response_headers, answer = self._forward(method, raw_path, headers, body)
        call.status = status
        if call.service == "athena" and status == 200:
            call.answer = json.loads(answer or b"{}")
            answer = json.dumps(self.athena.after(call)).encode()
        self.calls.append(call)
        return status, response_headers, answer

    def _forward(self, method, path, headers, body):
        connection = http.client.HTTPConnection(self.moto.hostname, self.moto.port, timeout=60)
        forwarded = {k: v for k, v in headers.items() if k.lower() not in ("connection", "keep-alive", "x-test-actor")}
        connection.request(method, path, body=body, headers=forwarded)
        response = connection.getresponse()
        answer = response.read()
        connection.close()
        return response.status, response.getheaders(), answer


class FakeAthena:
    """What Athena does beyond moto for each statement, through the proxy with the caller's
    credentials: the Glue and S3 calls a query, a CREATE and a write make, and the result file."""

    def __init__(self, proxy: AwsProxy) -> None:
        self.proxy = proxy
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        self.glue, self.s3, self.kms = (session.client(s, endpoint_url=proxy.url) for s in ("glue", "s3", "kms"))
        for client in (self.glue, self.s3, self.kms):
            client.meta.events.register("before-sign.*.*", self._mark)
        self.data_keys: dict[str, bytes] = {}

    @staticmethod
    def _mark(request, **_) -> None:
        request.headers["x-test-actor"] = "athena"

    def before_start(self, params: dict) -> None:
        """Queue the rows a check reads: the query's own columns, filled for a clean stage of
        two alerts per cluster on DAY (moto gives the queued rows to the next query started)."""
        text = params["QueryString"]
        if text == GUIDE:
            queue_results(self.proxy, [("rule_name", "Dump Process Memory"), ("severity", "High"), ("count_rules", 7)])
            return
        statement = sqlglot.parse_one(text, read="athena")
        if not isinstance(statement, exp.Query) or not any(c in text for c in ("event_count", "expected_rows", "row_count")):
            return
        lines = 2 * len(self.proxy.clusters)
        values = {"scope": "window", "dt": DAY, "reject_reason": None, "source_file": None, "line_count": 2,
                  "rejected_count": 0, "event_count": 2, "expected_rows": 2, "written_rows": 2,
                  "distinct_event_ids": 2, "missing_required": 0, "unknown_severity": 0, "wrong_day": 0,
                  "lines_scanned": None, "published_rows": 0, "grain": "partition"}
        if "row_count" in text:  # count_aggregate_rows: one row a partition (a day) per aggregate
            rows = [{"table_name": t.name, "partition_values": json.dumps([DAY]), "row_count": 1} for t in AGGREGATES]
        elif "event_count" in text:  # audit_stage: a row per (dt, cluster_id) partition, one per file
            rows = [{**values, "cluster_id": c} for c in self.proxy.clusters]
            rows.append({**values, "grain": "file", "scope": None, "dt": None, "cluster_id": None,
                         "source_file": f"{RAW}2026/03/01/alerts.json", "line_count": lines})
        else:  # audit_version: what was written per partition, what is published, the day's lines
            published = self.proxy.published
            rows = [{**values, "cluster_id": c, "published_rows": 2 if (DAY, c) in published else 0}
                    for c in self.proxy.clusters]
            rows += [{**values, "cluster_id": c, "expected_rows": 0, "written_rows": 0, "distinct_event_ids": 0,
                      "published_rows": 1} for (_, c) in published if c not in self.proxy.clusters]
            rows.append({**values, "grain": "day", "cluster_id": None, "lines_scanned": lines, "written_rows": 0})
        queue_results(self.proxy, [[(c, row[c]) for c in statement.named_selects] for row in rows])

    def after(self, call: Call) -> dict:
        answer = call.answer
        if call.action == "StartQueryExecution":
            query_id = answer["QueryExecutionId"]
            self.proxy.workgroups[query_id] = call.params["WorkGroup"]
            fail = self.proxy.fail
            if fail and fail[0] in call.params["QueryString"]:
                self.proxy.failed[query_id] = fail[1]
            elif call.by == "dag":
                try:
                    self.run(query_id, call.params)
                except Exception as error:  # Athena would fail the query: so does the fake
                    self.proxy.errors.append(f"{error!r} in {call.params['QueryString'][:200]}")
                    self.proxy.failed[query_id] = f"FAKE_ATHENA_ERROR: {error!r}"
        elif call.action == "GetQueryExecution":
            execution = answer["QueryExecution"]
            if execution["QueryExecutionId"] in self.proxy.failed:
                reason = self.proxy.failed[execution["QueryExecutionId"]]
                execution["Status"] |= {"State": "FAILED", "StateChangeReason": reason,
                                        "AthenaError": {"ErrorCategory": 2, "ErrorType": 1100, "ErrorMessage": reason}}
            elif f"FROM {DATABASE}.runtime_events_lines" in execution["Query"]:  # stage_alerts
                execution["Statistics"]["DataScannedInBytes"] = STAGE_SCANNED
        elif call.action == "GetQueryResults" and call.by == "dag":
            query_id = call.params["QueryExecutionId"]
            self.s3.get_object(Bucket=_s3_split(RESULTS)[0], Key=_s3_split(RESULTS)[1] + f"{query_id}.csv")
            if query_id in self.data_keys:
                self.kms.decrypt(CiphertextBlob=self.data_keys[query_id], KeyId=self.proxy.kms_key)
        return answer

    # -- the statement's Glue and S3 side ------------------------------------------------------
    def run(self, query_id: str, params: dict) -> None:
        statement = sqlglot.parse_one(params["QueryString"], read="athena")
        database = params["QueryExecutionContext"]["Database"]
        ctes = {c.alias_or_name for c in statement.find_all(exp.CTE)}
        sources = [t for t in statement.find_all(exp.Table)
                   if t.name not in ctes and not isinstance(t.parent, (exp.Create, exp.Insert, exp.Schema))]
        for table in sources:
            self._read(table.db or database, table.name)
        if isinstance(statement, exp.Create) and statement.args["kind"] == "DATABASE":
            try:
                self.glue.get_database(Name=statement.this.name)
            except self.glue.exceptions.EntityNotFoundException:
                self.glue.create_database(DatabaseInput={"Name": statement.this.name})
        elif isinstance(statement, exp.Create):
            self._create(statement, query_id)
        elif isinstance(statement, exp.Insert):
            self._insert(statement, query_id)
        config = params.get("ResultConfiguration") or {}
        bucket, prefix = _s3_split(config["OutputLocation"])
        self.s3.get_bucket_location(Bucket=bucket)
        self.s3.put_object(Bucket=bucket, Key=f"{prefix}{query_id}.csv", Body=b"")
        if config.get("EncryptionConfiguration", {}).get("EncryptionOption") == "SSE_KMS":
            key = config["EncryptionConfiguration"]["KmsKey"]
            self.data_keys[query_id] = self.kms.generate_data_key(KeyId=key, KeySpec="AES_256")["CiphertextBlob"]

    def _read(self, database: str, name: str) -> None:
        table = self.glue.get_table(DatabaseName=database, Name=name)["Table"]
        if table.get("PartitionKeys"):
            self.glue.get_partitions(DatabaseName=database, TableName=name)
        bucket, prefix = _s3_split(table["StorageDescriptor"]["Location"])
        for item in self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])[:3]:
            self.s3.get_object(Bucket=bucket, Key=item["Key"])

    def _create(self, statement: exp.Create, query_id: str) -> None:
        target = statement.this.this if isinstance(statement.this, exp.Schema) else statement.this
        props = {p.name if type(p) is exp.Property else type(p).__name__: p
                 for p in statement.args["properties"].expressions}
        location = (props.get("LocationProperty") or props["external_location"].args["value"]).name
        keys = props.get("PartitionedByProperty")
        keys = [e.name for e in keys.this.expressions] if keys else []
        try:
            self.glue.get_table(DatabaseName=target.db, Name=target.name)
            return  # IF NOT EXISTS
        except self.glue.exceptions.EntityNotFoundException:
            pass
        if isinstance(statement.expression, exp.Query):  # CTAS: the location must be empty
            bucket, prefix = _s3_split(location)
            assert not self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents"), location
        if isinstance(statement.this, exp.Schema):  # DDL: its column definitions, as Glue keeps them
            columns = [(c.name, c.args["kind"].sql("hive").lower()) for c in statement.this.expressions
                       if isinstance(c, exp.ColumnDef)]
        else:  # CTAS: the query's columns (types not tracked here), the partition keys aside
            columns = [(c, "string") for c in statement.expression.named_selects if c not in keys]
        self.glue.create_table(DatabaseName=target.db, TableInput={
            "Name": target.name, "TableType": "EXTERNAL_TABLE",
            "PartitionKeys": [{"Name": k, "Type": "string"} for k in keys],
            "StorageDescriptor": {"Location": location, "Columns": [{"Name": c, "Type": t} for c, t in columns]},
        })
        with_data = props.get("WithDataProperty")
        if isinstance(statement.expression, exp.Query) and not (with_data and with_data.args.get("no")):
            self._write(target.db, target.name, location, [(DAY,)] if keys else [()], keys, query_id)

    def _insert(self, statement: exp.Insert, query_id: str) -> None:
        target = statement.this
        table = self.glue.get_table(DatabaseName=target.db, Name=target.name)["Table"]
        keys = [k["Name"] for k in table.get("PartitionKeys", [])]
        first, last = batch_edges(statement.sql("athena"))
        values = [()]
        if first is not None:
            values = [(DAY, cluster) for cluster in sorted(self.proxy.clusters) if first <= cluster <= last]
        self._write(target.db, target.name, table["StorageDescriptor"]["Location"], values, keys, query_id)

    def _write(self, database, name, location, values: list[tuple], keys: list[str], query_id: str) -> None:
        bucket, prefix = _s3_split(location)
        partitions = []
        for value in values:
            folder = prefix + "".join(f"{k}={v}/" for k, v in zip(keys, value))
            self.s3.put_object(Bucket=bucket, Key=f"{folder}{query_id}_0.parquet", Body=b"PAR1")
            if keys:
                partitions.append({"Values": list(value), "StorageDescriptor": {"Location": f"s3://{bucket}/{folder}"}})
        for i in range(0, len(partitions), 100):
            self.glue.batch_create_partition(DatabaseName=database, TableName=name,
                                             PartitionInputList=partitions[i:i + 100])


def batch_edges(text: str) -> tuple[str | None, str | None]:
    """The first and last cluster of a write batch (write_batch.sql), or None for other INSERTs."""
    first = re.search(r"cluster_id >= '((?:[^']|'')*)'", text)
    last = re.search(r"cluster_id <= '((?:[^']|'')*)'", text)
    if not (first and last):
        return None, None
    return first.group(1).replace("''", "'"), last.group(1).replace("''", "'")


def queue_results(proxy: AwsProxy, rows: list[tuple[str, object]] | list[list[tuple[str, object]]]) -> None:
    """Queue one result set (a header and ``rows``, or one row) in moto for the next query started."""
    rows = rows if rows and isinstance(rows[0], list) else [rows]
    row = rows[0]
    result = {
        "rows": [{"Data": [{"VarCharValue": name} for name, _ in row]}]
                + [{"Data": [{} if v is None else {"VarCharValue": str(v)} for _, v in r]} for r in rows],
        "column_info": [{"Name": n, "Label": n, "Type": "bigint" if isinstance(v, int) else "varchar",
                         "Nullable": "UNKNOWN"} for n, v in row],
    }
    connection = http.client.HTTPConnection(proxy.moto.hostname, proxy.moto.port, timeout=30)
    connection.request("POST", "/moto-api/static/athena/query-results", body=json.dumps({"results": [result]}))
    assert connection.getresponse().status == 201


# -- the IAM policy --------------------------------------------------------------------------------
def policy(kms_key: str) -> dict:
    values = {
        "<region>": REGION, "<account_id>": ACCOUNT, "<athena_workgroup>": WORKGROUP, "<database>": DATABASE,
        "<raw_bucket>": _s3_split(RAW)[0], "<raw_prefix>": _s3_split(RAW)[1],
        "<curated_bucket>": _s3_split(CURATED)[0], "<curated_prefix>": _s3_split(CURATED)[1],
        "<results_bucket>": _s3_split(RESULTS)[0], "<results_prefix>": _s3_split(RESULTS)[1],
        "<quicksight_dataset_id>": DATASET, "<kms_key_arn>": kms_key,
        "<quicksight_prefix>": f"runtime-events-{DATABASE}".replace("_", "-"),
        "<security_lake_bucket>": _s3_split(SECURITY_LAKE)[0], "<security_lake_prefix>": _s3_split(SECURITY_LAKE)[1],
    }
    text = (REPO / "docs" / "iam-policy.json").read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    assert "<" not in text, "a placeholder of docs/iam-policy.json is not filled in"
    return json.loads(text)


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def allowed(document: dict, action: str, resource: str, condition: dict) -> bool:
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow" and set(statement.get("Condition", {})) <= {"StringLike"}
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _listed(statement["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _listed(statement["Resource"])):
            continue
        like = statement.get("Condition", {}).get("StringLike", {})
        if all(key in condition and any(fnmatch.fnmatchcase(condition[key], p) for p in _listed(patterns))
               for key, patterns in like.items()):
            return True
    return False


# -- fixtures ----------------------------------------------------------------------------------
def write_alerts(folder: Path) -> None:
    """Two alerts a cluster on DAY, for 250 clusters: 250 partitions, three publish batches."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "alerts.json", "w") as out:
        for i, cluster in enumerate(CLUSTERS):
            for n in range(2):
                out.write(json.dumps({"evt.time": f"{DAY}T10:{i % 60:02d}:{n:02d}Z", "cluster_id": cluster,
                                      "rule_name": "Dump Process Memory", "severity": "high",
                                      "k8s.pod.name": f"pod-{n}", "container.id": f"c{i}"}) + "\n")


def base_env(home: Path) -> dict:
    env = airflow_env(home, {"database": DATABASE}, drop=("AIRFLOW", "RUNTIME_EVENTS", "AWS_"), bin_dir=BIN,
                      base={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})
    # These runs only: a failed task fails the run at once instead of waiting minutes for its
    # Airflow retries, so a throttled call that botocore did not retry fails the run too.
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "airflow_local_settings.py").write_text("def task_policy(task):\n    task.retries = 0\n")
    return env


def aws_env(proxy: AwsProxy) -> dict:
    return {"AWS_ENDPOINT_URL": proxy.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION}


def athena_settings(proxy: AwsProxy, **overrides: str) -> dict:
    return {"engine": "athena", "raw_location": RAW, "curated_location": CURATED, "database": DATABASE,
            "athena_workgroup": WORKGROUP, "athena_output_location": RESULTS,
            "athena_result_encryption": f"SSE_KMS:{proxy.kms_key}", "security_lake_location": SECURITY_LAKE,
            "security_lake_account_id": ACCOUNT, **overrides}


def athena_env(home: Path, proxy: AwsProxy, **overrides: str) -> dict:
    env = base_env(home) | aws_env(proxy)
    env.update({f"AIRFLOW_VAR_RUNTIME_EVENTS_{k.upper()}": v for k, v in athena_settings(proxy, **overrides).items()})
    return env


def dags_test(env: dict, cwd: Path, name: str, *conf: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / "airflow"), "dags", "test", "runtime_events_daily", DAY, *conf], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    (cwd / f"{name}.log").write_text(done.stdout + done.stderr)
    return done


def succeeded(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0 and "state=success" in done.stdout, (
        f"{done.args} failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}")
    return done


def s3_objects(client, location: str) -> dict[str, str]:
    bucket, prefix = _s3_split(location)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def publish_earlier_version(glue, s3) -> None:
    """What an earlier run published: partitions of the curated table in a version folder."""
    bucket, prefix = _s3_split(f"{CURATED}runtime_events_parquet/{OLD_TOKEN}/")
    partitions = []
    for cluster in EARLIER_CLUSTERS:
        folder = f"{prefix}dt={DAY}/cluster_id={cluster}/"
        s3.put_object(Bucket=bucket, Key=f"{folder}old_0.parquet", Body=b"PAR1")
        partitions.append({"Values": [DAY, cluster], "StorageDescriptor": {"Location": f"s3://{bucket}/{folder}"}})
    glue.batch_create_partition(DatabaseName=DATABASE, TableName="runtime_events_parquet",
                                PartitionInputList=partitions)


@dataclass
class Runs:
    proxy: AwsProxy
    s3: object  # straight to moto: not recorded
    tmp: Path
    marks: dict[str, tuple[int, int]]  # run -> its slice of proxy.calls
    outputs: dict[str, str]
    raw_before: dict[str, str]
    raw_after: dict[str, str]
    partitions: dict[str, dict[tuple, str]]  # runtime_events_parquet's partitions after each run

    def calls(self, name: str) -> list[Call]:
        return self.proxy.calls[slice(*self.marks[name])]

    def statements(self, name: str) -> list[Call]:
        return [c for c in self.calls(name) if c.by == "dag" and c.action == "StartQueryExecution" and c.status == 200]

    def token(self, name: str) -> str:
        return TOKEN.search(self.statements(name)[-1].params["QueryString"]).group(0)


@pytest.fixture(scope="module")
def aws():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    moto_url = "http://{}:{}".format(*server.get_host_and_port())
    proxy = AwsProxy(moto_url)
    admin = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    s3 = admin.client("s3", endpoint_url=moto_url)
    for location in (RAW, CURATED, RESULTS, SECURITY_LAKE):
        s3.create_bucket(Bucket=_s3_split(location)[0])
    admin.client("athena", endpoint_url=moto_url).create_work_group(
        Name=WORKGROUP, Configuration={"ResultConfiguration": {}})
    proxy.kms_key = admin.client("kms", endpoint_url=moto_url).create_key()["KeyMetadata"]["Arn"]
    yield proxy, admin, moto_url
    proxy.server.shutdown()
    server.stop()


@pytest.fixture(scope="module")
def athena_runs(aws, tmp_path_factory):
    proxy, admin, moto_url = aws
    tmp = tmp_path_factory.mktemp("athena")
    write_alerts(tmp / "raw")
    # The embedded engine runs the same day alongside, in an Airflow home of its own.
    embedded_env = base_env(tmp / "embedded-home") | {
        "AIRFLOW_VAR_RUNTIME_EVENTS_RAW_LOCATION": str(tmp / "raw"),
        "AIRFLOW_VAR_RUNTIME_EVENTS_CURATED_LOCATION": str(tmp / "curated")}
    with open(tmp / "embedded.log", "w") as log:
        embedded = subprocess.Popen(
            f"airflow db migrate >/dev/null && airflow dags reserialize >/dev/null 2>&1 && "
            f"exec airflow dags test runtime_events_daily {DAY}",
            shell=True, env=embedded_env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)

    s3, glue = admin.client("s3", endpoint_url=moto_url), admin.client("glue", endpoint_url=moto_url)
    s3.upload_file(str(tmp / "raw" / "alerts.json"), _s3_split(RAW)[0], _s3_split(RAW)[1] + "2026/03/01/alerts.json")
    raw_before = s3_objects(s3, RAW)
    try:
        return run_athena(proxy, s3, glue, tmp, embedded, raw_before)
    finally:
        if embedded.poll() is None:  # the athena runs failed: do not leave it running
            embedded.kill()


def run_athena(proxy: AwsProxy, s3, glue, tmp: Path, embedded: subprocess.Popen, raw_before: dict) -> Runs:
    def partitions() -> dict[tuple, str]:
        pages = glue.get_paginator("get_partitions").paginate(DatabaseName=DATABASE, TableName="runtime_events_parquet")
        return {tuple(p["Values"]): p["StorageDescriptor"]["Location"] for page in pages for p in page["Partitions"]}

    home = tmp / "athena-home"
    for command in (["db", "migrate"], ["dags", "reserialize"]):  # as a DAG processor would (3.0 needs it)
        subprocess.run([str(BIN / "airflow"), *command], env=base_env(home), cwd=tmp, check=True,
                       capture_output=True)
    marks, outputs, published = {}, {}, {}
    # 1. a new account; polling; the second write batch FAILED on Athena
    first, proxy.fail = len(proxy.calls), (f"cluster_id >= '{sorted(CLUSTERS)[100]}'", FAILURE)
    outputs["failing"] = dags_test(athena_env(home, proxy), tmp, "failing").stdout
    proxy.fail = None
    marks["failing"], published["failing"] = (first, len(proxy.calls)), partitions()
    # 2. deferrable, over an earlier version; the first StartQueryExecution calls throttled; a
    #    QuickSight dataset to refresh
    #    (that had a cluster since gone: the run publishes fewer on purpose, allow_shrink)
    publish_earlier_version(glue, s3)
    published["earlier"] = partitions()
    proxy.published = set(published["earlier"])
    first, proxy.throttle = len(proxy.calls), THROTTLED
    outputs["main"] = succeeded(dags_test(
        athena_env(home, proxy, deferrable="true", quicksight_dataset_ids=DATASET), tmp, "main",
        "--conf", '{"allow_shrink": true}')).stdout
    marks["main"], published["main"] = (first, len(proxy.calls)), partitions()

    assert embedded.wait(timeout=600) == 0, (tmp / "embedded.log").read_text()[-6000:]
    outputs["embedded"] = (tmp / "embedded.log").read_text()
    return Runs(proxy, s3, tmp, marks, outputs, raw_before, s3_objects(s3, RAW), published)


FAILURE = "HIVE_BAD_DATA: Error parsing field value 'x' for field 3: broken row"
COST_ROW = re.compile(r"\('([a-z_]+)', (-?\d+), '([^']+)', '([A-Z]+)', (\d+), (\d+), ([0-9.e+-]+)\)")


def in_dag_order(costs: list[tuple[str, int, str]], text: dict[str, str], submitted: dict[str, object]) -> list[str]:
    """Statements by task, in the order the tasks ran, and by map index within a mapped task
    (Airflow runs the expansions of a mapped task in any order)."""
    first_run: dict[str, object] = {}
    for task, _, query_id in sorted(costs, key=lambda c: submitted[c[2]]):
        first_run.setdefault(task, submitted[query_id])
    return [text[q] for _, _, q in sorted(costs, key=lambda c: (first_run[c[0]], c[1]))]


def normalized(text: str, raw: str, curated: str) -> str:
    text = TOKEN.sub("<run>", text.replace(raw, "<raw>/").replace(curated, "<curated>/"))
    return COST_ROW.sub(r"('\1', \2, <statistics>)", text)


# -- 1, 2: only Athena SQL, to the configured places, the same as the embedded engine's ----------
def test_statements_are_athena_sql_sent_to_the_configured_places(athena_runs):
    proxy = athena_runs.proxy
    assert proxy.errors == []
    statements = athena_runs.statements("main")
    assert len(statements) > 20
    for call in statements:
        assert call.params["WorkGroup"] == WORKGROUP
        assert call.params["QueryExecutionContext"] == {"Database": DATABASE, "Catalog": "AwsDataCatalog"}
        assert call.params["ResultConfiguration"] == {"OutputLocation": RESULTS, "EncryptionConfiguration": {
            "EncryptionOption": "SSE_KMS", "KmsKey": proxy.kms_key}}
        parsed = [s for s in sqlglot.parse(call.params["QueryString"], read="athena") if s is not None]
        assert len(parsed) == 1 and not any(isinstance(n, exp.Command) for n in parsed[0].walk())
        for location in re.findall(r"s3://[^' ]+", call.params["QueryString"]):
            assert location == RAW or location.startswith(CURATED), location
    texts = [c.params["QueryString"] for c in statements]
    [guide_table] = [t for t in texts if f"{DATABASE}.runtime_events (" in t]
    assert f"LOCATION '{RAW}'" in guide_table and "org.openx.data.jsonserde.JsonSerDe" in guide_table
    # moto itself received the result encryption with every query
    from moto.athena.models import athena_backends

    executions = athena_backends[ACCOUNT][REGION].executions.values()
    assert executions and all(e.config["EncryptionConfiguration"] == {
        "EncryptionOption": "SSE_KMS", "KmsKey": proxy.kms_key} for e in executions)


def test_each_statement_is_the_text_the_embedded_engine_runs(athena_runs):
    statements = athena_runs.statements("main")
    record = statements[-1].params["QueryString"]
    athena = in_dag_order([(t, int(m), q) for t, m, q, *_ in COST_ROW.findall(record)],
                          {c.answer["QueryExecutionId"]: c.params["QueryString"] for c in statements},
                          {c.answer["QueryExecutionId"]: i for i, c in enumerate(statements)}) + [record]
    tmp = athena_runs.tmp
    infos = {p.stem: json.loads(p.read_text()) for p in (tmp / "curated" / "_query_results").glob("*.json")}
    costs = embedded_table(tmp, "runtime_events_query_costs")
    [local_record] = [i["Query"] for i in infos.values() if "INSERT INTO runtime_sec.runtime_events_query_costs" in i["Query"]]
    local = in_dag_order([(r["task_id"], r["map_index"], r["query_execution_id"]) for r in costs],
                         {q: i["Query"] for q, i in infos.items()},
                         {q: i["Status"]["SubmissionDateTime"] for q, i in infos.items()}) + [local_record]
    remote = [normalized(t, RAW, CURATED) for t in athena]
    local = [normalized(t, f"{tmp / 'raw'}/", f"{tmp / 'curated'}/") for t in local]
    assert len(remote) == len(local) == len(statements)
    for athena_text, embedded_text in zip(remote, local):
        assert athena_text == embedded_text


def embedded_table(tmp: Path, name: str) -> list[dict]:
    from runtime_events.embedded.engine import EmbeddedEngine

    engine = EmbeddedEngine(tmp / "curated" / "_catalog")
    return engine.execute(f"SELECT * FROM {name}", DATABASE).table.to_pylist()


# -- 3: more than 100 partitions a day ------------------------------------------------------------
def test_250_clusters_are_staged_once_and_published_in_three_batches(athena_runs):
    texts = [c.params["QueryString"] for c in athena_runs.statements("main")]
    assert sum(f"FROM {DATABASE}.runtime_events_lines" in t for t in texts) == 1  # one scan of the raw files
    writes = [t for t in texts if f"INSERT INTO {DATABASE}.runtime_events_parquet_r" in t]
    edges = sorted(batch_edges(t) for t in writes)
    assert edges == [(CLUSTERS[0], CLUSTERS[99]), (CLUSTERS[100], CLUSTERS[199]), (CLUSTERS[200], CLUSTERS[249])]
    published = athena_runs.partitions["main"]
    assert sorted(published) == [(DAY, c) for c in CLUSTERS]
    assert all(f"/runtime_events_parquet/{athena_runs.token('main')}/" in loc for loc in published.values())
    calls = [c for c in athena_runs.calls("main") if c.by == "dag" and c.params.get("TableName") == "runtime_events_parquet"]
    assert [len(c.params["PartitionInputList"]) for c in calls if c.action == "BatchCreatePartition"] == [100, 100, 48]
    assert [len(c.params["Entries"]) for c in calls if c.action == "BatchUpdatePartition"] == [2]
    assert [c.params["PartitionsToDelete"] for c in calls if c.action == "BatchDeletePartition"] == [
        [{"Values": [DAY, "cluster-gone"]}]]


def test_embedded_engine_publishes_250_partitions_within_its_100_partition_limit(athena_runs):
    from runtime_events.embedded.engine import EmbeddedEngine

    engine = EmbeddedEngine(athena_runs.tmp / "curated" / "_catalog")
    info = engine.metastore.get_table(DATABASE, "runtime_events_parquet")
    assert sorted(p.values for p in info.partitions) == [(DAY, c) for c in CLUSTERS]
    assert len(embedded_table(athena_runs.tmp, "runtime_events_parquet")) == 500
    assert "'partitions_published': 250" in athena_runs.outputs["embedded"]
    assert athena_runs.outputs["embedded"].count("[DAG TEST] starting task_id=write_parquet_batches") == 3


def test_a_write_of_more_than_100_partitions_fails_its_task_with_the_engines_reason(tmp_path):
    """The embedded engine enforces Athena's limit, and the operator fails with its reason."""
    from airflow.providers.common.compat.sdk import AirflowException

    settings = Settings.load(lambda k: {"runtime_events_curated_location": str(tmp_path)}.get(k))
    create = operator(settings, "CREATE DATABASE IF NOT EXISTS runtime_security")
    create.execute({"ti": FakeTaskInstance()})
    wide = operator(settings, (
        f"CREATE TABLE runtime_security.wide WITH (format = 'PARQUET', external_location = '{tmp_path}/wide/', "
        "partitioned_by = ARRAY['p']) AS SELECT x, CAST(x AS varchar) AS p FROM UNNEST(sequence(1, 250)) AS t (x)"))
    with pytest.raises(AirflowException, match="HIVE_TOO_MANY_OPEN_PARTITIONS"):
        wide.execute({"ti": FakeTaskInstance()})


def operator(settings: Settings, query: str):
    """The DAG's operator for one statement, rendered as its task would be, outside Airflow."""
    from runtime_events.operators import RuntimeEventsQueryOperator

    op = RuntimeEventsQueryOperator(task_id="run_statement", query=query)
    op.__dict__["settings"] = settings
    op.render_template_fields({})
    return op


async def first_event(trigger):
    events = trigger.run()
    try:
        return await anext(events)
    finally:
        await events.aclose()


class FakeTaskInstance:
    map_index = -1

    def __init__(self) -> None:
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value


# -- 4, 5: deferrable mode, throttling and failures --------------------------------------------
def test_deferrable_tasks_wait_in_the_trigger(athena_runs):
    """Every statement but create_tables' DDL (the database's and each table's, one after the
    other in one task that polls)."""
    output = athena_runs.outputs["main"]
    deferred = len(athena_runs.statements("main")) - (1 + len(TABLES))
    assert output.count("[DAG TEST] running trigger in line") == deferred
    assert output.count("[DAG TEST] Trigger completed") == deferred


def test_throttled_start_query_execution_is_retried_within_the_task(athena_runs):
    starts = [c for c in athena_runs.calls("main") if c.by == "dag" and c.action == "StartQueryExecution"]
    assert [c.status for c in starts[:THROTTLED + 1]] == [400] * THROTTLED + [200]
    assert len({c.params["QueryString"] for c in starts[:THROTTLED + 1]}) == 1  # create_database's
    # Airflow retries are off in these runs: the task succeeded because botocore retried (one
    # StartQueryExecution answered, one query id; Airflow 3.0's dags test announces a deferred task
    # again when it resumes, so the announcement is no count of tries)
    assert len([c for c in starts if c.status == 200 and c.params["QueryString"] == starts[0].params["QueryString"]]) == 1
    assert "up_for_retry" not in athena_runs.outputs["main"].lower()


def test_athena_clients_retry_throttling_ten_times_with_backoff(aws, monkeypatch):
    """botocore's default gives up after 5 attempts (legacy) or 3 (standard); a burst of
    StartQueryExecution calls from mapped tasks gets more."""
    from airflow.providers.amazon.aws.triggers.athena import AthenaTrigger

    proxy, _, _ = aws
    for key, value in aws_env(proxy).items():
        monkeypatch.setenv(key, value)
    values = athena_settings(proxy)
    op = operator(Settings.load(lambda key: values.get(key.removeprefix("runtime_events_"))), "SELECT 1")
    trigger = AthenaTrigger(query_execution_id="q", waiter_delay=1, waiter_max_attempts=1, aws_conn_id=None,
                            botocore_config=op.botocore_config)
    assert retries(op.hook.get_conn().meta.config) == retries(trigger.hook().config) == ("standard", 11)


def retries(config) -> tuple[str, int]:
    """A botocore config's retry mode and attempts in all (``max_attempts`` counts retries)."""
    given = config.retries or {}
    return given.get("mode"), given.get("total_max_attempts", given.get("max_attempts", 0) + 1)


def test_a_failed_query_fails_its_task_with_athenas_reason_and_publishes_nothing(athena_runs):
    """The run on a new account: its second write FAILED, so it published no partition."""
    output = athena_runs.outputs["failing"]
    assert "state=failed" in output
    assert f"Final state of Athena job is FAILED, query_execution_id is" in output and FAILURE in output
    texts = [c.params["QueryString"] for c in athena_runs.statements("failing")]
    assert batch_edges(texts[-1])[0] is not None  # the run ended in the write batches (in any order)
    assert (CLUSTERS[100], CLUSTERS[199]) in [batch_edges(t) for t in texts]  # the second one FAILED
    assert not any("expected_rows" in t for t in texts)  # no audit, no publish
    calls = athena_runs.calls("failing")
    assert not [c for c in calls if c.by == "dag" and c.action.startswith("Batch")]  # no partition changed
    assert athena_runs.partitions["failing"] == {}
    # the teardown deleted the failed run's own stage and version, nothing else
    deleted = [r for c in calls if c.action == "DeleteObject" for r in c.resources]
    assert deleted and all(f"/{athena_runs.token('failing')}/" in r for r in deleted)


def test_failed_query_reason_on_the_polling_and_the_deferred_path(aws, monkeypatch):
    from airflow.providers.amazon.aws.triggers.athena import AthenaTrigger
    from airflow.providers.common.compat.sdk import AirflowException

    proxy, _, _ = aws
    for key, value in aws_env(proxy).items():
        monkeypatch.setenv(key, value)
    values = athena_settings(proxy)
    settings = Settings.load(lambda key: values.get(key.removeprefix("runtime_events_")))
    reason = f"TABLE_NOT_FOUND: line 1:15: Table 'awsdatacatalog.{DATABASE}.nowhere' does not exist"
    proxy.fail = ("nowhere", reason)
    try:
        op = operator(settings, f"SELECT * FROM {DATABASE}.nowhere")
        with pytest.raises(AirflowException, match=re.escape(reason)):
            op.execute({"ti": FakeTaskInstance()})
        trigger = AthenaTrigger(query_execution_id=op.query_execution_id, waiter_delay=1, waiter_max_attempts=3,
                                aws_conn_id=None, botocore_config=op.botocore_config)
        event = asyncio.run(first_event(trigger))
        assert event.payload["status"] == "error"
        with pytest.raises(AirflowException, match=re.escape(reason)):
            op.execute_complete({"ti": FakeTaskInstance()}, event.payload)
    finally:
        proxy.fail = None


# -- publish: replaced partitions, deletes only inside the tables' folders, raw untouched ----------
def test_publish_replaces_the_earlier_version_and_deletes_only_inside_the_tables_folders(athena_runs, monkeypatch):
    from datetime import datetime, timedelta, timezone

    from runtime_events import publish
    from runtime_events.catalogue import GlueCatalogue

    earlier, now = athena_runs.partitions["earlier"], athena_runs.partitions["main"]
    assert set(earlier) - set(now) == {(DAY, "cluster-gone")}
    assert all(OLD_TOKEN in earlier[v] and OLD_TOKEN not in now[v] for v in set(earlier) & set(now))
    assert "publishing fewer alerts than before" in athena_runs.outputs["main"]
    # the replaced version is kept for retention_days; the run deleted only its own stage
    old_version = f"{CURATED}runtime_events_parquet/{OLD_TOKEN}/"
    assert len(s3_objects(athena_runs.s3, old_version)) == len(EARLIER_CLUSTERS)
    deleted = [(c.by, r) for c in athena_runs.proxy.calls if c.action == "DeleteObject" for r in c.resources]
    assert deleted and {by for by, _ in deleted} == {"dag"}
    # only the runs' own work: their stages, and the failing run's never-published versions
    roots = [f"arn:aws:s3:::{_s3_split(CURATED)[0]}/{_s3_split(CURATED)[1]}{t.name}/" for t in PUBLISHED]
    own = {athena_runs.token("failing"), athena_runs.token("main")}
    for _, resource in deleted:
        [root] = [r for r in roots if resource.startswith(r)]
        assert resource[len(root):].removeprefix("_stage/")[:len(OLD_TOKEN)] in own, resource
    assert any(athena_runs.token("failing") in r and "_stage/" not in r for _, r in deleted)
    # the ledger on S3 names what the publish replaced; a clean-up past retention deletes exactly that
    for key, value in aws_env(athena_runs.proxy).items():
        monkeypatch.setenv(key, value)
    values = athena_settings(athena_runs.proxy)
    lake = publish.Lake(Settings.load(lambda key: values.get(key.removeprefix("runtime_events_"))))
    assert set(lake.ledger.history("runtime_events_parquet").superseded()) == set(earlier.values())
    curated_before = s3_objects(athena_runs.s3, CURATED)
    first = len(athena_runs.proxy.calls)
    publish.clean_up(lake, None, now=datetime.now(timezone.utc) + timedelta(days=8))
    assert s3_objects(athena_runs.s3, old_version) == {}
    gone = {k for k in curated_before if k not in s3_objects(athena_runs.s3, CURATED)}
    assert gone == {k for k in curated_before if k.startswith(_s3_split(old_version)[1])}
    for call in athena_runs.proxy.calls[first:]:
        for resource in call.resources:
            assert allowed(policy(athena_runs.proxy.kms_key), call.iam_action, resource, call.condition), call


def test_raw_files_are_never_written_or_deleted(athena_runs):
    assert athena_runs.raw_after == athena_runs.raw_before
    raw_bucket = f"arn:aws:s3:::{_s3_split(RAW)[0]}"
    for call in athena_runs.proxy.calls:
        if call.service == "s3" and any(r.split("/")[0] == raw_bucket for r in call.resources):
            assert call.action in ("GetObject", "ListBucket"), call


# -- 6: least privilege -----------------------------------------------------------------------------
# on_kill cancels the query of a killed task; an upgrade adds columns to a table of an earlier
# release (test_a_table_of_an_earlier_release_gains_its_new_columns_in_glue)
UNUSED_BY_DESIGN = {"athena:StopQueryExecution", "glue:UpdateTable"}


def test_every_call_is_allowed_by_the_iam_policy_and_every_grant_is_used(athena_runs):
    document = policy(athena_runs.proxy.kms_key)
    used = set()
    for call in athena_runs.proxy.calls:
        if call.service == "sts":  # GetCallerIdentity needs no permission
            continue
        used.add(call.iam_action)
        for resource in call.resources:
            assert allowed(document, call.iam_action, resource, call.condition), (call.iam_action, resource, call.condition)
    # (the QuickSight deploy's grants: test_quicksight.py)
    granted = {a for s in document["Statement"] if s["Sid"] != "DeployQuickSightWhenConfigured" for a in _listed(s["Action"])}
    assert granted - used == UNUSED_BY_DESIGN
    # and no wider than the configured places
    raw_file = f"arn:aws:s3:::{_s3_split(RAW)[0]}/{_s3_split(RAW)[1]}2026/03/01/alerts.json"
    assert allowed(document, "s3:GetObject", raw_file, {})
    for action in ("s3:PutObject", "s3:DeleteObject"):
        assert not allowed(document, action, raw_file, {})
    assert not allowed(document, "athena:StartQueryExecution", _arn("athena", "workgroup/primary"), {})
    assert not allowed(document, "glue:DeleteTable", _arn("glue", "table/other_db/runtime_events"), {})
    assert not allowed(document, "s3:ListBucket", f"arn:aws:s3:::{_s3_split(CURATED)[0]}", {"s3:prefix": "other/"})


# -- 7: cost ----------------------------------------------------------------------------------------
def test_every_statement_and_its_cost_are_recorded(athena_runs):
    statements = athena_runs.statements("main")
    record = statements[-1].params["QueryString"]
    assert f"INSERT INTO {DATABASE}.runtime_events_query_costs" in record
    rows = COST_ROW.findall(record)
    assert sorted(r[2] for r in rows) == sorted(c.answer["QueryExecutionId"] for c in statements[:-1])
    assert ("stage_alerts", "-1", str(STAGE_SCANNED), str(STAGE_SCANNED), "15.0") in {
        (r[0], r[1], r[4], r[5], r[6]) for r in rows}
    # moto calls every statement DML (they start with a comment): 10 MB at least each
    assert all(r[3] == "DML" and int(r[5]) >= 10 * 2**20 for r in rows)
    assert f"run total: {len(rows)} statements scanned" in athena_runs.outputs["main"]


def test_embedded_cost_table_matches_the_engines_statistics(athena_runs):
    tmp = athena_runs.tmp
    infos = {p.stem: json.loads(p.read_text()) for p in (tmp / "curated" / "_query_results").glob("*.json")}
    rows = embedded_table(tmp, "runtime_events_query_costs")
    assert len(rows) == len(infos) - 1  # every statement but the one that records them
    for row in rows:
        info = infos[row["query_execution_id"]]
        scanned = info["Statistics"]["DataScannedInBytes"]
        assert (row["data_scanned_bytes"], row["statement_type"]) == (scanned, info["StatementType"])
        billed = 0 if info["StatementType"] == "DDL" and scanned == 0 else max(-(-scanned // 2**20), 10) * 2**20
        assert row["billed_bytes"] == billed
        assert row["estimated_cost_usd"] == pytest.approx(billed * 5 / 2**40)


def test_cost_of_a_query_follows_athenas_price():
    assert costs.billed_bytes("DDL", 0) == 0
    assert costs.billed_bytes("DML", 0) == 10 * 2**20
    assert costs.billed_bytes("DML", 10 * 2**20 + 1) == 11 * 2**20
    assert costs.billed_bytes("DDL", 5) == 10 * 2**20  # a CREATE TABLE AS that reads data is billed


# -- 8: BI hand-off ---------------------------------------------------------------------------------
def test_aggregate_assets_are_updated_and_quicksight_datasets_refreshed(athena_runs):
    with sqlite3.connect(athena_runs.tmp / "athena-home" / "airflow.db") as db:
        cursor = db.execute("SELECT a.name AS asset_name, e.* FROM asset_event e JOIN asset a ON a.id = e.asset_id")
        columns = [d[0] for d in cursor.description]
        events = [dict(zip(columns, row)) for row in cursor.fetchall()]
        states = db.execute("SELECT t.state FROM task_instance t JOIN dag_run r ON t.run_id = r.run_id "
                            "WHERE t.task_id = 'refresh_quicksight_datasets' ORDER BY r.id").fetchall()
    names = [e["asset_name"] for e in events]
    assert sorted(set(names)) == sorted(f"{DATABASE}.{t.name}" for t in AGGREGATES)
    extras = [json.loads(e["extra"]) for e in events]
    assert all(extra["dt_to"] == DAY and DAY in extra["days_rebuilt"] for extra in extras)
    partitioned = subprocess.run(
        [str(BIN / "python"), "-c", "from airflow.sdk.execution_time.context import OutletEventAccessor as O; "
         "print(hasattr(O, 'add_partitions'))"], capture_output=True, text=True, check=True).stdout.strip() == "True"
    if partitioned:  # Airflow 3.3+: one event per table and rebuilt day
        for name in set(names):
            mine = [e for e in events if e["asset_name"] == name]
            assert sorted(e["partition_key"] for e in mine) == sorted(json.loads(mine[0]["extra"])["days_rebuilt"])
    else:  # older releases: one event per table, the days in its extra
        assert sorted(names) == sorted(set(names))
    assert states == [("success",)]  # the failing run never got there
    ingestions = [c for c in athena_runs.proxy.calls if c.service == "quicksight"]
    assert [(c.action, c.params["DataSetId"], c.params["IngestionId"], c.status) for c in ingestions] == [
        ("CreateIngestion", DATASET, athena_runs.token("main"), 200)]
    assert [c.action for c in athena_runs.calls("main") if c.service == "sts"] == ["GetCallerIdentity"]


def test_no_quicksight_datasets_skips_the_refresh(athena_runs, monkeypatch):
    with sqlite3.connect(athena_runs.tmp / "embedded-home" / "airflow.db") as db:
        states = db.execute("SELECT state FROM task_instance WHERE task_id = 'refresh_quicksight_datasets'").fetchall()
    assert states == [("skipped",)]
    values = athena_settings(athena_runs.proxy)
    monkeypatch.setattr(tasks, "airflow_lookup", lambda: lambda key: values.get(key.removeprefix("runtime_events_")))
    assert tasks.quicksight_refreshes({"logical_date": "2026-03-01", "days": ["2026-03-01"], "run_token": "r20260301t000000_00000000"}) == []
    values["quicksight_dataset_ids"] = "a, b"
    assert [r["data_set_id"] for r in tasks.quicksight_refreshes({"logical_date": "2026-03-01", "days": ["2026-03-01"], "run_token": "r20260301t000000_00000000"})] == ["a", "b"]


# -- 9: the command line on Athena ------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_query(athena_runs):
    proxy = athena_runs.proxy
    first = len(proxy.calls)
    done = subprocess.run([str(BIN / "runtime-events"), "query", GUIDE], capture_output=True, text=True,
                          env=athena_env(athena_runs.tmp / "athena-home", proxy), timeout=120)
    return done, proxy.calls[first:]


def test_cli_query_runs_the_guides_query_on_athena(cli_query):
    done, calls = cli_query
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == ["rule_name,severity,count_rules", "Dump Process Memory,High,7"]
    [start] = [c for c in calls if c.action == "StartQueryExecution"]
    assert (start.params["QueryString"], start.params["WorkGroup"]) == (GUIDE, WORKGROUP)
    assert start.params["QueryExecutionContext"]["Database"] == DATABASE
    assert start.params["ResultConfiguration"]["OutputLocation"] == RESULTS


def test_cli_query_prints_only_the_result_on_stdout(cli_query):
    done, _ = cli_query
    assert done.stdout.splitlines() == ["rule_name,severity,count_rules", "Dump Process Memory,High,7"]


# -- Glue and S3 clients retry throttling too ---------------------------------------------------------
def test_glue_and_s3_clients_of_publish_retry_throttling(aws, monkeypatch):
    from runtime_events import publish
    from runtime_events.catalogue import GlueCatalogue

    proxy, _, _ = aws
    for key, value in aws_env(proxy).items():
        monkeypatch.setenv(key, value)
    values = athena_settings(proxy)
    settings = Settings.load(lambda key: values.get(key.removeprefix("runtime_events_")))
    from runtime_events.storage import S3Storage

    for client in (GlueCatalogue(settings).client, S3Storage(settings.aws_conn_id).hook.get_conn()):
        assert retries(client.meta.config) == ("standard", 11), client.meta.service_model.service_name


# -- 9b: Security Lake ------------------------------------------------------------------------------
def test_the_published_ocsf_findings_are_copied_into_the_security_lake_layout(athena_runs, aws):
    """The main run copied the published ocsf_detection_findings partition of its day, server
    side, into <location>region=/accountId=/eventDay=YYYYMMDD/ (the failing run published
    nothing and exported nothing); the calls are in the IAM test above."""
    _, admin, moto_url = aws
    glue = admin.client("glue", endpoint_url=moto_url)
    partitions = glue.get_partitions(DatabaseName=DATABASE, TableName="ocsf_detection_findings")["Partitions"]
    (partition,) = [p for p in partitions if p["Values"] == [DAY]]  # the window's other days: empty
    source = s3_objects(athena_runs.s3, partition["StorageDescriptor"]["Location"])
    exported = s3_objects(athena_runs.s3, SECURITY_LAKE)
    folder = f"{_s3_split(SECURITY_LAKE)[1]}region={REGION}/accountId={ACCOUNT}/eventDay={DAY.replace('-', '')}/"
    token = athena_runs.token("main")
    assert sorted(exported) == [f"{folder}{token}-{n:05d}.parquet" for n in range(len(source))] and source
    assert sorted(exported.values()) == sorted(source.values())  # the same bytes
    copies = [c for c in athena_runs.calls("main") if c.iam_action == "s3:PutObject"
              and c.resources[0].startswith(f"arn:aws:s3:::{_s3_split(SECURITY_LAKE)[0]}/")]
    assert len(copies) == len(source)
    assert "export_to_security_lake" in athena_runs.outputs["main"]


# -- 10: upgrades ----------------------------------------------------------------------------------
def test_a_table_of_an_earlier_release_gains_its_new_columns_in_glue(athena_runs, aws, monkeypatch):
    """runtime_events_parquet as an earlier release made it (no tags, hostname, alert_format): the next run's
    plan step appends them in Glue (UpdateTable, allowed by the IAM policy); its partitions and
    its other fields stay as they were."""
    from runtime_events import publish

    proxy = athena_runs.proxy
    for key, value in aws_env(proxy).items():
        monkeypatch.setenv(key, value)
    _, admin, moto_url = aws
    glue = admin.client("glue", endpoint_url=moto_url)  # straight to moto: not recorded
    table = glue.get_table(DatabaseName=DATABASE, Name="runtime_events_parquet")["Table"]
    old = [c for c in table["StorageDescriptor"]["Columns"] if c["Name"] not in ("tags", "hostname", "alert_format")]
    keep = ("Name", "StorageDescriptor", "PartitionKeys", "TableType", "Parameters")
    glue.update_table(DatabaseName=DATABASE, TableInput={
        **{k: table[k] for k in keep if k in table}, "StorageDescriptor": {**table["StorageDescriptor"], "Columns": old}})
    partitions_before = glue.get_partitions(DatabaseName=DATABASE, TableName="runtime_events_parquet")["Partitions"]
    values = athena_settings(proxy)
    lake = publish.Lake(Settings.load(lambda key: values.get(key.removeprefix("runtime_events_"))))
    first = len(proxy.calls)
    assert publish.add_new_columns(lake) == ["runtime_events_parquet"]
    after = glue.get_table(DatabaseName=DATABASE, Name="runtime_events_parquet")["Table"]
    assert [(c["Name"], c["Type"]) for c in after["StorageDescriptor"]["Columns"]] == [
        (c["Name"], c["Type"]) for c in old] + [("tags", "array<string>"), ("hostname", "string"), ("alert_format", "string")]
    assert after["StorageDescriptor"]["Location"] == table["StorageDescriptor"]["Location"]
    assert after["PartitionKeys"] == table["PartitionKeys"]
    assert glue.get_partitions(DatabaseName=DATABASE, TableName="runtime_events_parquet")["Partitions"] == partitions_before
    calls = proxy.calls[first:]
    assert "UpdateTable" in {c.action for c in calls}
    for call in calls:
        for resource in call.resources:
            assert allowed(policy(proxy.kms_key), call.iam_action, resource, call.condition), call
    assert publish.add_new_columns(lake) == []  # nothing more to add
