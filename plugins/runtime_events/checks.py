"""The audits of write-audit-publish: functions of a query's rows that pass or raise.

Each takes the rows of its ``.sql`` file's result (as Athena returns them), the run plan and the
settings, and either returns what the next tasks need or raises ``DataQualityError`` with a
message a person can act on.
"""

from __future__ import annotations

import logging
from collections import Counter

from runtime_events.partitions import MAX_WRITE_PARTITIONS
from runtime_events.settings import PREFIX, Settings

log = logging.getLogger(__name__)

REJECT_REASONS = ("invalid_utf8", "malformed_json", "not_object", "bad_event_time",
                  "missing_cluster_id", "missing_rule_name")
MAX_FILES_NAMED = 20


class DataQualityError(Exception):
    pass


def audit_stage(rows: list[dict], run: dict, settings: Settings) -> list[dict]:
    """Account for every scanned line and enforce ``reject_threshold`` over all of them; returns
    the publish batches (:func:`plan_write_batches`) for the mapped write task."""
    scanned = sum(r["line_count"] for r in rows)
    reasons: Counter = Counter()
    files: Counter = Counter()
    for r in rows:
        if r["reject_reason"] is not None:
            reasons[r["reject_reason"]] += r["line_count"]
            files[r["source_file"]] += r["line_count"]
    rejected = sum(reasons.values())
    for day in run["days"]:
        day_rows = [r for r in rows if r["scope"] == "window" and r["dt"] == day]
        valid = sum(r["line_count"] for r in day_rows if r["reject_reason"] is None)
        loaded = sum(r["event_count"] for r in day_rows if r["reject_reason"] is None)
        log.info("dt=%s: %d lines, %d alerts loaded, %d duplicates dropped, %d rejected", day,
                 sum(r["line_count"] for r in day_rows), loaded, valid - loaded,
                 sum(r["line_count"] for r in day_rows if r["reject_reason"] is not None))
    by_scope = Counter()
    for r in rows:
        by_scope[r["scope"]] += r["line_count"]
    log.info("scanned %d lines in %d files: %d in the window %s..%s, %d of other days, %d rejected "
             "with no known day; rejected in all: %d %s", scanned,
             len({r["source_file"] for r in rows if r["source_file"]}), by_scope["window"],
             run["dt_from"], run["dt_to"], by_scope["other_days"], by_scope["unknown_day"], rejected,
             dict(reasons) or "")
    if scanned and rejected / scanned > settings.reject_threshold:
        named = ", ".join(f"{f} ({n})" for f, n in files.most_common(MAX_FILES_NAMED))
        more = len(files) - MAX_FILES_NAMED
        raise DataQualityError(
            f"{rejected} of {scanned} alert lines ({rejected / scanned:.1%}) were rejected, above "
            f"{PREFIX}reject_threshold={settings.reject_threshold}. Reasons: "
            + ", ".join(f"{reason} {n}" for reason, n in reasons.most_common())
            + f". Files: {named}" + (f" and {more} more" if more > 0 else "")
            + ". Nothing was published; the previous partitions are intact."
        )
    return plan_write_batches(rows)


def plan_write_batches(rows: list[dict]) -> list[dict]:
    """The window's (dt, cluster_id) partitions of valid alerts, in that order, cut into batches
    of at most ``MAX_WRITE_PARTITIONS`` (Athena's limit for one write): each batch is the range
    from its first to its last partition. At least one batch, so that the write task always runs."""
    partitions = sorted({(r["dt"], r["cluster_id"]) for r in rows
                         if r["scope"] == "window" and r["reject_reason"] is None and r["cluster_id"] is not None})
    batches = []
    for number, start in enumerate(range(0, len(partitions), MAX_WRITE_PARTITIONS)):
        chunk = partitions[start:start + MAX_WRITE_PARTITIONS]
        batches.append({"batch": number, "partitions": {
            "first_dt": chunk[0][0], "first_cluster_id": chunk[0][1],
            "last_dt": chunk[-1][0], "last_cluster_id": chunk[-1][1]}})
    return batches or [{"batch": 0, "partitions": None}]


def audit_version(rows: list[dict], run: dict, settings: Settings) -> dict:
    """The new curated partitions hold exactly one row per distinct valid alert of each day,
    with unique ids, required columns, known severities and the right day."""
    problems = []
    for r in rows:
        if r["written_rows"] != r["expected_rows"]:
            problems.append(f"dt={r['dt']}: {r['written_rows']} rows written, {r['expected_rows']} expected")
        if r["distinct_event_ids"] != r["written_rows"]:
            problems.append(f"dt={r['dt']}: {r['written_rows'] - r['distinct_event_ids']} duplicate event ids")
        for column, what in (("missing_required", "rows missing a required column"),
                             ("unknown_severity", "rows with a severity outside the canonical set"),
                             ("wrong_day", "rows in the wrong dt partition")):
            if r[column]:
                problems.append(f"dt={r['dt']}: {r[column]} {what}")
    if problems:
        raise DataQualityError("the new runtime_events_parquet version failed its audit, nothing "
                               "was published: " + "; ".join(problems))
    summary = {r["dt"]: r["written_rows"] for r in rows}
    log.info("audit passed: rows per day %s", summary)
    return summary
