"""The one operator every statement runs through: the Amazon provider's ``AthenaOperator``.

``RuntimeEventsQueryOperator`` adds only what the project needs around it: the settings are read
when the task runs (never while the DAG file is parsed), the ``.sql`` file sees them and the run
plan as ``params``, and the hook behind the operator is Athena's or the embedded engine's. The SQL
text, the polling and the failure handling are the provider's own on both engines.

Every statement pushes its statistics (query id, statement type, bytes scanned) to XCom under
``QUERY_STATISTICS``; ``collect_query_costs`` turns them into the run's cost rows.

``RuntimeEventsStatementsOperator`` runs several statements, one after the other, in one task
instance; ``RuntimeEventsCheckOperator`` also reads the query's result rows, as Athena returns
them, and hands them to a check function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.athena import AthenaHook
from airflow.providers.amazon.aws.operators.athena import AthenaOperator
from airflow.providers.amazon.aws.utils import validate_execute_complete_event

from runtime_events import engines, results
from runtime_events.checks import DataQualityError
from runtime_events.compat import AirflowException, AirflowFailException
from runtime_events.engines import AWS_CLIENT_CONFIG
from runtime_events.planning import RunPlan
from runtime_events.settings import Settings, airflow_lookup
from runtime_events.sql import sql_params

QUERY_STATISTICS = "query_statistics"


class RuntimeEventsQueryOperator(AthenaOperator):
    """Run one ``include/sql`` statement on the configured engine.

    :param query: path of the ``.sql`` file under ``include/sql`` (templated)
    :param run: the run plan from ``plan_run`` (window days and run token)
    :param sql_params: per-statement values such as ``table``, or ``batch`` and its ``partitions`` (mappable)
    """

    template_fields = (*AthenaOperator.template_fields, "run", "sql_params")

    def __init__(self, *, query: str, run: Any = None, sql_params: dict | None = None, **kwargs) -> None:
        kwargs.setdefault("sleep_time", 2)
        kwargs.setdefault("botocore_config", AWS_CLIENT_CONFIG)
        # The settings name the database when the task runs; providers before 9.33 require the
        # argument at construction.
        kwargs.setdefault("database", "runtime_security")
        super().__init__(query=query, **kwargs)
        self.query_file = query  # the file name, for logs and map indexes; query becomes its text
        self.run = run
        self.sql_params = sql_params or {}
        # The template fields that hold a statement, with the file each one is: a statement's
        # ``params`` are its own (sql_params(query=...)).
        self.statement_files = {"query": query}

    @cached_property
    def settings(self) -> Settings:
        return Settings.load(airflow_lookup())

    def _do_render_template_fields(self, parent, template_fields, context, jinja_env, seen_oids) -> None:
        if parent is not self:
            return super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        first = [f for f in ("run", "sql_params") if f in template_fields]
        super()._do_render_template_fields(parent, first, context, jinja_env, seen_oids)
        settings = self.settings
        # The settings decide where the query runs: the same for every statement of the DAG.
        self.database = settings.database
        self.workgroup = settings.athena_workgroup
        self.output_location = settings.athena_output_location or None
        self.result_configuration = settings.result_configuration()
        self.aws_conn_id = settings.aws_conn_id
        self.deferrable = settings.deferrable and self.backend.on_aws
        rest = [f for f in template_fields if f not in first and f not in (
            "database", "workgroup", "output_location", "aws_conn_id")]
        super()._do_render_template_fields(
            parent, [f for f in rest if f not in self.statement_files], context, jinja_env, seen_oids)
        for field in (f for f in rest if f in self.statement_files):
            params = sql_params(settings, self.run, self.sql_params, query=self.statement_files[field])
            super()._do_render_template_fields(parent, [field], {**context, "params": params}, jinja_env, seen_oids)

    @cached_property
    def backend(self) -> engines.Backend:
        return engines.backend(self.settings)

    @cached_property
    def hook(self) -> AthenaHook:
        return self.backend.query_hook(**{"log_query": self.log_query, **self._hook_parameters})

    def execute(self, context) -> str:
        query_execution_id = super().execute(context)
        self._push_statistics(context, query_execution_id)
        return query_execution_id

    def execute_complete(self, context, event: dict[str, Any] | None = None) -> str:
        event = validate_execute_complete_event(event)
        query_execution_id = event["value"]
        if event["status"] != "success":
            # The trigger only says its waiter stopped: fail with Athena's own reason, as the
            # operator does when it polls.
            state = self.hook.check_query_status(query_execution_id)
            raise AirflowException(
                f"Final state of Athena job is {state}, query_execution_id is {query_execution_id}. "
                f"Error: {self.hook.get_state_change_reason(query_execution_id) or event.get('message')}"
            )
        self.query_execution_id = query_execution_id
        self._push_statistics(context, query_execution_id)
        return query_execution_id

    def _push_statistics(self, context, query_execution_id: str) -> None:
        context["ti"].xcom_push(key=QUERY_STATISTICS, value=self._statistics(query_execution_id, context["ti"].map_index))

    def _statistics(self, query_execution_id: str, map_index: int) -> dict:
        execution = self.hook.get_query_info(query_execution_id)["QueryExecution"]
        scanned = int(execution.get("Statistics", {}).get("DataScannedInBytes") or 0)
        self.log.info("Query %s scanned %d bytes", query_execution_id, scanned)
        return {"task_id": self.task_id, "map_index": map_index, "query_execution_id": query_execution_id,
                "statement_type": execution.get("StatementType"), "data_scanned_bytes": scanned}


class RuntimeEventsStatementsOperator(RuntimeEventsQueryOperator):
    """Run several ``include/sql`` statements one after the other in one task instance, for
    statements too quick to earn a task instance each (the ``CREATE ... IF NOT EXISTS`` of every
    table). Each one goes through the provider's own ``execute`` (submit, poll, fail with Athena's
    reason), so the first that fails fails the task and the rest do not run.

    Each statement is a template field of its own, named by its file, rendered with its own
    ``params``: the task's Rendered Template shows every statement whole, under its file name.
    (Airflow cuts each rendered field at ``[core] max_templated_field_length``, 4096 characters by
    default: one list field would be cut a few statements in.)

    The task pushes one ``QUERY_STATISTICS`` list, one entry per statement, its position in
    ``query`` as its ``map_index``; the task's XCom is the list of query execution ids.

    :param query: the ``.sql`` files under ``include/sql``, in the order they run
    """

    template_fields = tuple(f for f in RuntimeEventsQueryOperator.template_fields if f != "query")

    def __init__(self, *, query: list[str], **kwargs) -> None:
        # DDL takes about a second on Athena: polling every second keeps a dozen statements
        # near a dozen seconds.
        kwargs.setdefault("sleep_time", 1)
        super().__init__(query="", **kwargs)
        self.query_files = list(query)
        self.statement_files = {name: name for name in self.query_files}
        self.template_fields = (*type(self).template_fields, *self.query_files)
        for name in self.query_files:
            setattr(self, name, name)

    def execute(self, context) -> list[str]:
        # Not deferrable: a deferred task resumes in execute_complete, in a new process, once per
        # statement, and would have to carry its place in the list along; and a statement of
        # about a second is over before the triggerer would have picked it up.
        self.deferrable = False
        statistics = []
        for position, name in enumerate(self.query_files):
            self.log.info("Statement %d of %d: %s", position + 1, len(self.query_files), name)
            self.query = getattr(self, name)
            query_execution_id = AthenaOperator.execute(self, context)
            statistics.append(self._statistics(query_execution_id, position))
        context["ti"].xcom_push(key=QUERY_STATISTICS, value=statistics)
        return [s["query_execution_id"] for s in statistics]


class RuntimeEventsCheckOperator(RuntimeEventsQueryOperator):
    """Run a query, read its rows and pass them to ``check(rows, run, settings)``; what the check
    returns is the task's XCom, what it raises fails the task."""

    def __init__(self, *, check: Callable[[list[dict], RunPlan, Settings], Any], **kwargs) -> None:
        super().__init__(**kwargs)
        self.check = check

    def execute(self, context) -> Any:
        return self._check(super().execute(context))

    def execute_complete(self, context, event: dict[str, Any] | None = None) -> Any:
        return self._check(super().execute_complete(context, event))

    def _check(self, query_execution_id: str) -> Any:
        rows = list(results.iter_rows(self._pages(query_execution_id)))
        try:
            return self.check(rows, RunPlan.of(self.run), self.settings)
        except DataQualityError as exc:
            # The same rows fail the same way: no retries, the run fails now with the reason.
            raise AirflowFailException(str(exc)) from exc

    def _pages(self, query_execution_id: str) -> Iterator[dict]:
        token = None
        while True:
            page = self.hook.get_query_results(query_execution_id, next_token_id=token)
            if page is None:
                return
            yield page
            token = page.get("NextToken")
            if not token:
                return
