"""Planning a run: its window of days, its token, the names of its work, and its write batches.

A :class:`RunPlan` is made once, by the DAG's first task, and travels through XCom as a plain
dict (:meth:`RunPlan.as_xcom`); every task that reads it turns it back with :meth:`RunPlan.of`,
which checks each value's form. The token is the only name a run invents: its stage, its work
tables and its version folders are all derived from it here, for SQL and Python alike.

Standard library only: the DAG's modules import it at parse time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from secrets import token_hex

from runtime_events.partitions import MAX_WRITE_PARTITIONS
from runtime_events.settings import Settings
from runtime_events.tables import DAY_KEY, EVENTS, PUBLISHED

_TOKEN = re.compile(r"r([0-9]{8}t[0-9]{6})_[0-9a-f]{8}")
_TOKEN_SUFFIX = re.compile(r"_(r[0-9]{8}t[0-9]{6}_[0-9a-f]{8})\Z")
# The work of a run that died is removed once it is this old and nothing published refers to it.
STALE_AFTER = timedelta(hours=6)
STAGE_TABLE = "runtime_events_stage"


def new_run_token(now: datetime | None = None) -> str:
    """A name for one run's work: time-ordered, unique (``r20261120t010203_1a2b3c4d``)."""
    now = now or datetime.now(timezone.utc)
    return f"r{now:%Y%m%dt%H%M%S}_{token_hex(4)}"


def check_token(token: str) -> str:
    """``token`` if it is of the form :func:`new_run_token` makes (with a real time), else ValueError."""
    match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
    try:
        datetime.strptime(match.group(1), "%Y%m%dt%H%M%S") if match else None
    except ValueError:
        match = None
    if not match:
        raise ValueError(f"run token {token!r} is not of the form the project makes")
    return token


def token_started(token: str) -> datetime:
    """When the run of ``token`` started (the time in its name, UTC)."""
    return datetime.strptime(check_token(token)[1:16], "%Y%m%dt%H%M%S").replace(tzinfo=timezone.utc)


def is_stale(token: str, now: datetime, age: timedelta = STALE_AFTER) -> bool:
    """Whether the run of ``token`` started more than ``age`` before ``now`` (not a token: no)."""
    try:
        return now - token_started(token) > age
    except ValueError:
        return False


def token_of_work_table(name: str) -> str | None:
    """The run token a work table is named for (``daily_rule_counts_<token>``), or None."""
    match = _TOKEN_SUFFIX.search(name)
    return match.group(1) if match else None


def work_table(name: str, token: str) -> str:
    """A run's work table for table ``name``: its version, or (for the stage) its stage."""
    return f"{name}_{check_token(token)}"


def version_location(table_location: str, token: str) -> str:
    """The folder of a run's new version of a table, inside the table's folder."""
    return f"{table_location}{check_token(token)}/"


def stage_location(events_location: str, token: str) -> str:
    """The folder of a run's stage, inside the curated copy's folder."""
    return f"{events_location}_stage/{check_token(token)}/"


@dataclass(frozen=True)
class RunPlan:
    """One run: the UTC day it is for, the days it rebuilds (oldest first) and its token."""

    logical_date: date
    days: tuple[date, ...]
    run_token: str
    allow_shrink: bool = False

    def __post_init__(self) -> None:
        check_token(self.run_token)
        consecutive = all((b - a).days == 1 for a, b in zip(self.days, self.days[1:]))
        if not self.days or not consecutive or self.days[-1] != self.logical_date:
            raise ValueError(f"a run's days must be consecutive and end on its day {self.logical_date}, not "
                             f"{[d.isoformat() for d in self.days]}")

    @property
    def dt_from(self) -> str:
        return self.days[0].isoformat()

    @property
    def dt_to(self) -> str:
        return self.days[-1].isoformat()

    @property
    def day_strings(self) -> list[str]:
        return [d.isoformat() for d in self.days]

    @property
    def started(self) -> datetime:
        return token_started(self.run_token)

    def is_stale(self, now: datetime) -> bool:
        return is_stale(self.run_token, now)

    def version_table(self, table: str) -> str:
        """The work table holding this run's new version of ``table``."""
        return work_table(table, self.run_token)

    @property
    def stage_table(self) -> str:
        return work_table(STAGE_TABLE, self.run_token)

    def work(self, settings: Settings) -> dict:
        """The run's work as SQL and clean-up name it: its ``stage`` and each published table's
        ``versions``, each with its qualified ``table``, its ``location`` (inside the table's own
        folder) and its ``partition_keys``."""
        def work(name: str, location: str, keys: tuple[str, ...]) -> dict:
            return {"table": f"{settings.database}.{work_table(name, self.run_token)}", "location": location,
                    "partition_keys": list(keys)}

        return {
            "stage": work(STAGE_TABLE, stage_location(settings.table_location(EVENTS.name), self.run_token),
                          (DAY_KEY,)),
            "versions": {t.name: work(t.name, version_location(settings.table_location(t.name), self.run_token),
                                      t.partition_keys) for t in PUBLISHED},
        }

    def as_xcom(self) -> dict:
        """The plan as XCom carries it (JSON), with the names derived from it for readers."""
        return {"logical_date": self.logical_date.isoformat(), "dt_from": self.dt_from, "dt_to": self.dt_to,
                "days": self.day_strings, "run_token": self.run_token, "allow_shrink": self.allow_shrink}

    @classmethod
    def of(cls, value: RunPlan | dict) -> RunPlan:
        """A plan from XCom (or a plan as it is), each value checked for its form."""
        if isinstance(value, RunPlan):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"a run plan is a mapping, not {type(value).__name__}")
        try:
            if not isinstance(value["days"], list | tuple):
                raise ValueError(f"days must be a list of dates, not {value['days']!r}")
            days = tuple(date.fromisoformat(d) for d in value["days"])
            logical = date.fromisoformat(value["logical_date"])
            allow_shrink = value.get("allow_shrink", False)
            if not isinstance(allow_shrink, bool):
                raise ValueError(f"allow_shrink must be true or false, not {allow_shrink!r}")
            return cls(logical, days, value["run_token"], allow_shrink)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a run plan: {value!r} ({exc})") from None


def plan_window(settings: Settings, logical_day: date, allow_shrink: bool = False,
                now: datetime | None = None) -> RunPlan:
    """The plan of a run for ``logical_day``: it rebuilds that day and the ``lookback_days``
    before it. A day before ``start_date`` is refused, naming the setting."""
    if logical_day < settings.start_date:
        raise ValueError(f"logical date {logical_day} is before setting runtime_events_start_date="
                         f"{settings.start_date}; runs and backfills start on that day")
    first = logical_day - timedelta(days=settings.lookback_days)
    days = tuple(first + timedelta(days=i) for i in range(settings.lookback_days + 1))
    return RunPlan(logical_day, days, new_run_token(now), allow_shrink)


def arrival_days(layout: str, lookback_days: int, plan: RunPlan, today: date | None = None) -> list[dict]:
    """The arrival folders a run reads with a dated ``raw_layout``, as ``{"folder", "day"}``.

    An alert of day X is taken from files that arrived on X-1 (clocks and time zones) through
    X + ``lookback_days`` (late delivery): the same range whichever run builds X, so the run
    order does not matter. A run for D builds D-lookback .. D, so it reads D-lookback-1 ..
    D+lookback, never past today (UTC)."""
    today = today or datetime.now(timezone.utc).date()
    first = plan.days[0] - timedelta(days=1)
    last = min(plan.days[-1] + timedelta(days=lookback_days), today)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [{"folder": arrival_folder(layout, d), "day": d.isoformat()} for d in days]


def arrival_folder(layout: str, day: date) -> str:
    """The folder of ``raw_layout`` for files that arrived on ``day``, without the trailing /."""
    return (layout.replace("{yyyy}", f"{day:%Y}").replace("{MM}", f"{day:%m}")
            .replace("{dd}", f"{day:%d}").rstrip("/"))


def write_batches(rows: list[dict]) -> list[dict]:
    """The window's (dt, cluster_id) partitions of valid alerts (``audit_stage``'s rows), in that
    order, cut into batches of at most ``MAX_WRITE_PARTITIONS`` (Athena's limit for one write):
    each batch is the range from its first to its last partition. At least one batch, so that
    the write task always runs."""
    partitions = sorted({(r["dt"], r["cluster_id"]) for r in rows
                         if r.get("grain", "partition") == "partition" and r["scope"] == "window"
                         and r["reject_reason"] is None and r["cluster_id"] is not None})
    batches = []
    for number, start in enumerate(range(0, len(partitions), MAX_WRITE_PARTITIONS)):
        chunk = partitions[start:start + MAX_WRITE_PARTITIONS]
        batches.append({"batch": number, "partitions": {
            "first_dt": chunk[0][0], "first_cluster_id": chunk[0][1],
            "last_dt": chunk[-1][0], "last_cluster_id": chunk[-1][1]}})
    return batches or [{"batch": 0, "partitions": None}]
