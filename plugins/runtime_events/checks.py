"""The audits of write-audit-publish: functions of a query's rows that pass or raise.

Each takes the rows of its ``.sql`` file's result (as Athena returns them), the run plan and the
settings, and either returns what the next tasks need or raises ``DataQualityError`` with a
message a person can act on.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from runtime_events.planning import RunPlan
from runtime_events.settings import PREFIX, Settings

log = logging.getLogger(__name__)

MAX_FILES_NAMED = 20
# A day or a file with fewer lines than this is judged only with the others: one bad line in a
# file of three is no sign of a format change, and would otherwise fail the run.
MIN_LINES_JUDGED = 100


class DataQualityError(Exception):
    pass


def audit_stage(rows: list[dict], run: RunPlan, settings: Settings) -> None:
    """Account for every scanned line and enforce ``reject_threshold`` over all of them, over
    each window day's and over each raw file's (days and files of at least
    ``MIN_LINES_JUDGED`` lines)."""
    partition_rows = [r for r in rows if r["grain"] == "partition"]
    file_rows = [r for r in rows if r["grain"] == "file"]
    scanned = sum(r["line_count"] for r in partition_rows)
    reasons: Counter = Counter()
    for r in partition_rows:
        if r["reject_reason"] is not None:
            reasons[r["reject_reason"]] += r["line_count"]
    rejected = sum(reasons.values())
    threshold = settings.reject_threshold
    over = []
    if scanned and rejected / scanned > threshold:
        over.append(f"{rejected} of {scanned} alert lines ({rejected / scanned:.1%})")
    for day in run.day_strings:
        day_rows = [r for r in partition_rows if r["scope"] == "window" and r["dt"] == day]
        lines = sum(r["line_count"] for r in day_rows)
        valid = sum(r["line_count"] for r in day_rows if r["reject_reason"] is None)
        loaded = sum(r["event_count"] for r in day_rows if r["reject_reason"] is None)
        log.info("dt=%s: %d lines, %d alerts loaded, %d duplicates dropped, %d rejected%s", day, lines,
                 loaded, valid - loaded, lines - valid,
                 "" if lines else " (no lines: the published partitions of the day are kept)")
        if lines >= MIN_LINES_JUDGED and (lines - valid) / lines > threshold:
            over.append(f"{lines - valid} of the {lines} lines of dt={day} ({(lines - valid) / lines:.1%})")
    for r in file_rows:
        if r["line_count"] >= MIN_LINES_JUDGED and r["rejected_count"] / r["line_count"] > threshold:
            over.append(f"{r['rejected_count']} of the {r['line_count']} lines of {r['source_file']} "
                        f"({r['rejected_count'] / r['line_count']:.1%})")
    by_scope: Counter = Counter()
    for r in partition_rows:
        by_scope[r["scope"]] += r["line_count"]
    log.info("scanned %d lines in %d files: %d in the window %s..%s, %d of other days, %d rejected "
             "with no known day; rejected in all: %d %s", scanned, len(file_rows), by_scope["window"],
             run.dt_from, run.dt_to, by_scope["other_days"], by_scope["unknown_day"], rejected,
             dict(reasons) or "")
    if not scanned:
        log.warning("the run scanned no alert line at all: every published day of the window is kept. If "
                    "alerts are expected, check %sraw_location=%s and %sraw_layout=%s", PREFIX,
                    settings.raw_location, PREFIX, settings.raw_layout)
    if over:
        files = sorted((r for r in file_rows if r["rejected_count"]), key=lambda r: -r["rejected_count"])
        named = ", ".join(f"{r['source_file']} ({r['rejected_count']})" for r in files[:MAX_FILES_NAMED])
        more = len(files) - MAX_FILES_NAMED
        shown = over[:MAX_FILES_NAMED] + ([f"{len(over) - MAX_FILES_NAMED} more"] if len(over) > MAX_FILES_NAMED else [])
        raise DataQualityError(
            "rejected above " + f"{PREFIX}reject_threshold={threshold}: " + "; ".join(shown)
            + ". Reasons: " + ", ".join(f"{reason} {n}" for reason, n in reasons.most_common())
            + f". Files: {named}" + (f" and {more} more" if more > 0 else "")
            + f". The lines were read as {PREFIX}raw_format={settings.raw_format} (Falco's JSON, with rule, "
            "priority and output_fields, needs falco or auto)"
            + ". Nothing was published; the previous partitions are intact."
        )


def audit_version(rows: list[dict], run: RunPlan, settings: Settings) -> dict:
    """The new curated partitions hold exactly one row per distinct valid alert, with unique ids,
    required columns, known severities and the right day; and, in a day the run has lines for, no
    partition holds fewer rows than the published one unless the run allows it (``allow_shrink``).

    Returns what publishing needs: the days to rebuild (those with lines) and the rows of each
    new partition, ``[dt, cluster_id, rows]``."""
    problems = []
    days_with_lines = sorted(r["dt"] for r in rows if r["grain"] == "day" and r["lines_scanned"])
    partitions = [r for r in rows if r["grain"] == "partition"]
    for r in partitions:
        where = f"dt={r['dt']}/cluster_id={r['cluster_id']}"
        if r["written_rows"] != r["expected_rows"]:
            problems.append(f"{where}: {r['written_rows']} rows written, {r['expected_rows']} expected")
        if r["distinct_event_ids"] != r["written_rows"]:
            problems.append(f"{where}: {r['written_rows'] - r['distinct_event_ids']} duplicate event ids")
        for column, what in (("missing_required", "rows missing a required column"),
                             ("unknown_severity", "rows with a severity outside the canonical set"),
                             ("wrong_day", "rows in the wrong dt partition")):
            if r[column]:
                problems.append(f"{where}: {r[column]} {what}")
    if problems:
        raise DataQualityError("the new runtime_events_parquet version failed its audit, nothing "
                               "was published: " + "; ".join(problems))
    shrinking = defaultdict(list)
    for r in partitions:
        if r["dt"] in days_with_lines and r["written_rows"] < r["published_rows"]:
            shrinking[r["dt"]].append(r)
    if shrinking:
        described = []
        for day, parts in sorted(shrinking.items()):
            new = sum(r["written_rows"] for r in partitions if r["dt"] == day)
            old = sum(r["published_rows"] for r in partitions if r["dt"] == day)
            described.append(f"dt={day}: {new} rows rebuilt against {old} published, fewer in "
                             + ", ".join(f"cluster_id={r['cluster_id']} ({r['published_rows']} -> {r['written_rows']})"
                                         for r in parts[:5]) + (", ..." if len(parts) > 5 else ""))
        message = "; ".join(described)
        if not run.allow_shrink:
            raise DataQualityError(
                f"the rebuild would publish fewer alerts than are published: {message}. Nothing was "
                "published. If raw files are missing (expired, moved, a wrong raw_location) or are read "
                "otherwise (a changed raw_format or raw_layout), restore them or the setting; to publish "
                "fewer on purpose, trigger the run with the param allow_shrink=true.")
        log.warning("allow_shrink=true: publishing fewer alerts than before: %s", message)
    summary = {"days_with_lines": days_with_lines,
               "rows": [[r["dt"], r["cluster_id"], r["written_rows"]] for r in partitions if r["written_rows"]]}
    log.info("audit passed: rows per day %s; days without lines (kept as published): %s",
             {d: sum(r[2] for r in summary["rows"] if r[0] == d) for d in days_with_lines},
             sorted(set(run.day_strings) - set(days_with_lines)) or "none")
    return summary


def count_aggregate_rows(rows: list[dict], run: RunPlan, settings: Settings) -> dict:
    """Rows per partition of each aggregate's new version, for the ledger:
    ``{table: {partition values as a JSON array: rows}}``."""
    counts: dict = defaultdict(dict)
    for r in rows:
        counts[r["table_name"]][r["partition_values"]] = r["row_count"]
    return dict(counts)
