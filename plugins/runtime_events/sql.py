"""SQL rendering: the values the ``.sql`` files under ``include/sql`` see as ``params``.

The same function feeds Airflow's rendering (through the operator) and the command line, so a
statement reads the same wherever it is rendered. Every value placed in SQL comes from validated
settings or from the run plan, never from free text.
"""

from __future__ import annotations

import re
from datetime import date

import jinja2

from runtime_events.paths import SQL_DIR
from runtime_events.planning import RunPlan, arrival_days, arrival_folder
from runtime_events.settings import Settings
from runtime_events.tables import PUBLISHED, TABLES

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def sql_params(settings: Settings, run: RunPlan | dict | None, extra: dict | None = None,
               today: date | None = None, query: str | None = None) -> dict:
    """``params`` for a statement: settings that reach SQL, the run's window, token and work
    tables, and per-statement values (``table``, ``tables``, ``batch``, ``partitions``,
    ``no_data``), each checked for its form. A statement of a table's folder (``query``
    ``<table>/...sql``) gets that table as ``table``: its name is written once, by its folder."""
    folder = query.split("/")[0] if query and "/" in query else None
    if folder in {t.name for t in TABLES} and "table" not in (extra or {}):
        extra = {**(extra or {}), "table": folder}
    params = {
        "database": settings.database,
        "raw_location": settings.raw_location,
        "curated_location": settings.curated_location,
        "redact_cmdline": settings.redact_cmdline,
        "raw_layout": settings.raw_layout,
        "raw_format": settings.raw_format,
        "falco_cluster_field": settings.falco_cluster_field,
        "lookback_days": settings.lookback_days,
        "partition_keys": {t.name: list(t.partition_keys) for t in TABLES},
        "no_data": False,
    }
    if settings.raw_layout != "flat":
        params["arrival_format"] = java_date_format(settings.raw_layout)
        params["arrival_range_start"] = arrival_folder(settings.raw_layout, ARRIVAL_RANGE_START)
    if run:
        plan = RunPlan.of(run)
        params |= {"logical_date": plan.logical_date.isoformat(), "dt_from": plan.dt_from, "dt_to": plan.dt_to,
                   "run_token": plan.run_token, "days": plan.day_strings} | plan.work(settings)
        if settings.raw_layout != "flat":
            params["arrival_days"] = arrival_days(settings.raw_layout, settings.lookback_days, plan, today)
    for key, value in (extra or {}).items():
        if key == "batch" and not (isinstance(value, int) and value >= 0):
            raise ValueError(f"batch must be a whole number, not {value!r}")
        if key == "partitions" and value is not None:
            if set(value) != {"first_dt", "first_cluster_id", "last_dt", "last_cluster_id"}:
                raise ValueError(f"partitions must give a first and last dt and cluster_id, not {value!r}")
            date.fromisoformat(value["first_dt"])
            date.fromisoformat(value["last_dt"])
            if not all(isinstance(value[k], str) and value[k] for k in ("first_cluster_id", "last_cluster_id")):
                raise ValueError(f"partitions must name clusters, not {value!r}")
        if key == "table":
            if not (_NAME.match(str(value)) and str(value) in {t.name for t in TABLES}):
                raise ValueError(f"table must be one of the project's tables, not {value!r}")
            if run and value in params["versions"]:
                params["version"] = params["versions"][value]
        if key == "tables" and not all(v in {t.name for t in PUBLISHED} for v in value):
            raise ValueError(f"tables must be published tables, not {value!r}")
        if key == "no_data" and not isinstance(value, bool):
            raise ValueError(f"no_data must be true or false, not {value!r}")
        params[key] = value
    return params


ARRIVAL_RANGE_START = date(2000, 1, 1)


def java_date_format(layout: str) -> str:
    """``raw_layout`` as the Java date pattern of Athena partition projection:
    ``{yyyy}/{MM}/{dd}/`` -> ``yyyy/MM/dd``; ``dt={yyyy}-{MM}-{dd}/`` -> ``'dt='yyyy-MM-dd``."""
    parts = re.split(r"(\{yyyy\}|\{MM\}|\{dd\})", layout.rstrip("/"))
    out = []
    for part in parts:
        if part in ("{yyyy}", "{MM}", "{dd}"):
            out.append(part[1:-1])
        elif part:
            out.append(f"'{part}'" if re.search(r"[A-Za-z]", part) else part)
    return "".join(out)


def template_environment(sql_dir=None) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(sql_dir or SQL_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )


def render(name: str, params: dict, sql_dir=None, **context) -> str:
    """Render ``include/sql/<name>`` (or ``<sql_dir>/<name>``) outside Airflow: the command line,
    tests, benchmarks."""
    return template_environment(sql_dir).get_template(name).render(params=params, **context)
