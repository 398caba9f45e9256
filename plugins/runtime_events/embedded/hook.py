"""An AthenaHook stand-in backed by the embedded engine.

It offers the methods ``AthenaOperator`` and this project call on ``AthenaHook`` (run a query,
poll it, read its state, reason, statistics and result pages), so the operator, the SQL text and
the code that reads results are the same on both engines. A query runs to completion inside
``run_query``; its state, statistics and results are kept under ``<curated>/_query_results/``
like Athena's output location, so another process (the next task, the command line) can read them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq

from runtime_events import results
from runtime_events.embedded.engine import EmbeddedEngine, EngineError

log = logging.getLogger(__name__)


class EmbeddedAthenaHook:
    SUCCESS_STATES = ("SUCCEEDED",)
    FAILURE_STATES = ("FAILED", "CANCELLED")
    INTERMEDIATE_STATES = ("QUEUED", "RUNNING")

    conn_region_name = "local"
    region_name = "local"
    conn_partition = "aws"

    def __init__(self, curated_location: str, log_query: bool = True) -> None:
        root = Path(curated_location)
        self.engine = EmbeddedEngine(catalog_root=root / "_catalog", warehouse=root)
        self.results_dir = root / "_query_results"
        self.log_query = log_query

    # -- AthenaHook API --------------------------------------------------------------------
    def run_query(self, query: str, query_context: dict, result_configuration: dict | None = None,
                  client_request_token: str | None = None, workgroup: str = "primary") -> str:
        query_id = str(uuid.uuid4())
        database = query_context.get("Database", "default")
        if self.log_query:
            log.info("Running embedded Athena query %s on database %s:\n%s", query_id, database, query)
        started = time.monotonic()
        info = {"QueryExecutionId": query_id, "Query": query, "WorkGroup": workgroup,
                "QueryExecutionContext": query_context,
                "Status": {"State": "SUCCEEDED",
                           "SubmissionDateTime": dt.datetime.now(dt.UTC).isoformat()}}
        self.results_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = self.engine.execute(query, database, query_id=query_id)
        except Exception as exc:  # a query that fails is FAILED with a reason, as on Athena
            reason = str(exc) if isinstance(exc, EngineError) else f"GENERIC_INTERNAL_ERROR: {exc!r}"
            info["Status"] |= {"State": "FAILED", "StateChangeReason": reason,
                               "AthenaError": {"ErrorMessage": reason}}
            info["Statistics"] = {"DataScannedInBytes": 0}
        else:
            info["StatementType"] = result.statement_type
            info["Columns"] = result.columns
            info["Statistics"] = {"DataScannedInBytes": result.data_scanned_bytes}
            info["UpdateCount"] = result.update_count
            if result.table is not None and result.columns:
                pq.write_table(result.table, self.results_dir / f"{query_id}.parquet")
        info["Statistics"]["EngineExecutionTimeInMillis"] = int((time.monotonic() - started) * 1000)
        (self.results_dir / f"{query_id}.json").write_text(json.dumps(info))
        return query_id

    def poll_query_status(self, query_execution_id: str, max_polling_attempts: int | None = None,
                          sleep_time: int | None = None) -> str:
        return self.check_query_status(query_execution_id)

    def check_query_status(self, query_execution_id: str, use_cache: bool = False) -> str:
        return self._info(query_execution_id)["Status"]["State"]

    def get_state_change_reason(self, query_execution_id: str, use_cache: bool = False) -> str | None:
        return self._info(query_execution_id)["Status"].get("StateChangeReason")

    def get_query_info(self, query_execution_id: str, use_cache: bool = False) -> dict:
        info = dict(self._info(query_execution_id))
        info.pop("Columns", None)
        return {"QueryExecution": info}

    def get_query_results(self, query_execution_id: str, next_token_id: str | None = None,
                          max_results: int = 1000) -> dict | None:
        info = self._info(query_execution_id)
        if info["Status"]["State"] != "SUCCEEDED":
            return None
        columns = [tuple(c) for c in info.get("Columns", [])]
        start = int(next_token_id or 0)
        header = start == 0 and info.get("StatementType") == "DML" and bool(columns)
        path = self.results_dir / f"{query_execution_id}.parquet"
        rows: list[tuple] = []
        total = 0
        if path.exists():
            table = pq.read_table(path)
            total = table.num_rows
            page = table.slice(start, max_results - int(header))
            rows = list(zip(*(column.to_pylist() for column in page.columns)))
        response = {"ResultSet": results.result_set(columns, rows, header),
                    "UpdateCount": info.get("UpdateCount", 0), "ResponseMetadata": {"HTTPStatusCode": 200}}
        if start + len(rows) < total:
            response["NextToken"] = str(start + len(rows))
        return response

    def stop_query(self, query_execution_id: str) -> dict:
        return {"ResponseMetadata": {"HTTPStatusCode": 200}}

    def _info(self, query_execution_id: str) -> dict:
        path = self.results_dir / f"{query_execution_id}.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise EngineError(f"InvalidRequestException: QueryExecution {query_execution_id} was not found") from None
