"""SQL rendering: the values the ``.sql`` files under ``include/sql`` see as ``params``.

The same function feeds Airflow's rendering (through the operator) and the command line, so a
statement reads the same wherever it is rendered. Every value placed in SQL comes from validated
settings or from the run plan, never from free text.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from secrets import token_hex

import jinja2

from runtime_events.paths import SQL_DIR
from runtime_events.settings import Settings

_TOKEN = re.compile(r"^r[0-9]{8}t[0-9]{6}_[0-9a-f]{8}$")


def new_run_token(now: datetime | None = None) -> str:
    """A name for one run's staging and version folders and tables: time-ordered, unique."""
    now = now or datetime.now(timezone.utc)
    return f"r{now:%Y%m%dt%H%M%S}_{token_hex(4)}"


def plan_window(settings: Settings, logical_day: date, now: datetime | None = None) -> dict:
    """The days a run for ``logical_day`` rebuilds, and the token naming its work."""
    if logical_day < settings.start_date:
        raise ValueError(
            f"logical date {logical_day} is before setting runtime_events_start_date="
            f"{settings.start_date}; runs and backfills start on that day"
        )
    first = logical_day - timedelta(days=settings.lookback_days)
    days = [first + timedelta(days=i) for i in range(settings.lookback_days + 1)]
    return {
        "logical_date": logical_day.isoformat(),
        "dt_from": first.isoformat(),
        "dt_to": logical_day.isoformat(),
        "days": [d.isoformat() for d in days],
        "run_token": new_run_token(now),
    }


def sql_params(settings: Settings, run: dict | None, extra: dict | None = None,
               today: date | None = None) -> dict:
    """``params`` for a statement: settings that reach SQL, the run's window and token, and
    per-statement values (``table``, ``batch``, ``partitions``), each checked for its form."""
    params = {
        "database": settings.database,
        "raw_location": settings.raw_location,
        "curated_location": settings.curated_location,
        "redact_cmdline": settings.redact_cmdline,
        "raw_layout": settings.raw_layout,
        "lookback_days": settings.lookback_days,
    }
    if settings.raw_layout != "flat":
        params["arrival_format"] = java_date_format(settings.raw_layout)
        params["arrival_range_start"] = arrival_folder(settings.raw_layout, ARRIVAL_RANGE_START)
    if run:
        if not _TOKEN.match(run["run_token"]):
            raise ValueError(f"run token {run['run_token']!r} is not of the form the project makes")
        for key in ("logical_date", "dt_from", "dt_to"):
            date.fromisoformat(run[key])
        params |= {key: run[key] for key in ("logical_date", "dt_from", "dt_to", "run_token", "days")}
        if settings.raw_layout != "flat":
            params["arrival_days"] = arrival_days(settings, run, today)
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
        if key == "table" and not re.fullmatch(r"[a-z_][a-z0-9_]*", str(value)):
            raise ValueError(f"table must be a table name, not {value!r}")
        if key == "tables" and not all(re.fullmatch(r"[a-z_][a-z0-9_]*", str(v)) for v in value):
            raise ValueError(f"tables must be table names, not {value!r}")
        params[key] = value
    return params


ARRIVAL_RANGE_START = date(2000, 1, 1)


def arrival_days(settings: Settings, run: dict, today: date | None = None) -> list[dict]:
    """The arrival folders a run reads with a dated ``raw_layout``, as ``{"folder", "day"}``.

    An alert of day X is taken from files that arrived on X-1 (clocks and time zones) through
    X + ``lookback_days`` (late delivery): the same range whichever run builds X, so the run
    order does not matter. A run for D builds D-lookback .. D, so it reads D-lookback-1 ..
    D+lookback, never past today (UTC)."""
    today = today or datetime.now(timezone.utc).date()
    first = date.fromisoformat(run["dt_from"]) - timedelta(days=1)
    last = min(date.fromisoformat(run["dt_to"]) + timedelta(days=settings.lookback_days), today)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [{"folder": arrival_folder(settings.raw_layout, d), "day": d.isoformat()} for d in days]


def arrival_folder(layout: str, day: date) -> str:
    """The folder of ``raw_layout`` for files that arrived on ``day``, without the trailing /."""
    return (layout.replace("{yyyy}", f"{day:%Y}").replace("{MM}", f"{day:%m}")
            .replace("{dd}", f"{day:%d}").rstrip("/"))


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


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(SQL_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )


def render(name: str, params: dict, **context) -> str:
    """Render ``include/sql/<name>`` outside Airflow (command line, tests, benchmarks)."""
    return template_environment().get_template(name).render(params=params, **context)
