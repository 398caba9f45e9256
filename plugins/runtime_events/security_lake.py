"""Export the published OCSF findings to AWS Security Lake's custom-source layout.

Security Lake reads a custom source from ``<location>region=<region>/accountId=<account>/
eventDay=<YYYYMMDD>/``: Parquet files of one OCSF class. ``ocsf_detection_findings`` is built and
published like every aggregate (write-audit-publish, one version folder a run); this step copies
the *published* version of each day the run rebuilt into that layout, so Security Lake only
ever sees a version that passed its audit.

Replacing a day is copy first, delete after, each step on record in the ledger (table
``security_lake_export``): an ``export_started`` record names the files about to be written, an
``exported`` record the files that now are the day. Only files that such a record names, inside
the day's folder, are ever deleted: those of the day's earlier exports, and those of exports
that started more than :data:`STALE_AFTER` ago and never finished. A day whose published version
was exported already, with its files all there, is left alone, so a rerun writes nothing.
Exports are copies: clean-up and retention of the curated lake never touch them (Security
Lake's own lifecycle rules do).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone

from runtime_events.storage import is_inside
from runtime_events.tables import DAY_KEY

log = logging.getLogger(__name__)

TABLE = "ocsf_detection_findings"
RECORDS = "security_lake_export"  # the ledger's name for the export's records
STALE_AFTER = timedelta(hours=6)  # an export started this long ago and not finished is abandoned


def day_folder(settings, day: str) -> str:
    """The folder Security Lake reads one day of this source from."""
    return (f"{settings.security_lake_location}region={settings.security_lake_region}/"
            f"accountId={settings.security_lake_account_id}/eventDay={day.replace('-', '')}/")


def _parquet_files(storage, folder: str) -> list[str]:
    """The data files of a version's partition folder (hidden and ``_`` files are not data)."""
    return [f for f in storage.files(folder)
            if not f.rsplit("/", 1)[-1].startswith((".", "_")) and "/." not in f[len(folder):]]


def export(lake, run_token: str, days: list[str]) -> dict:
    """Export the published ``ocsf_detection_findings`` partitions of ``days``; returns what was
    done, per day: ``exported`` (files written), ``unchanged`` (already there) or ``missing``
    (the table has no published partition for the day)."""
    settings, storage, ledger = lake.settings, lake.storage, lake.ledger
    if not settings.security_lake_location:
        log.info("the Security Lake export is off (setting runtime_events_security_lake_location)")
        return {"location": None, "days": {}}
    published = lake.catalogue.partitions(TABLE)
    records = ledger.history(RECORDS).records
    summary: dict[str, dict] = {}
    for day in sorted(set(days)):
        source = published.get((day,))
        if source is None:
            summary[day] = {"outcome": "missing"}
            log.warning("%s has no published partition %s=%s: nothing to export", TABLE, DAY_KEY, day)
            continue
        summary[day] = _export_day(lake, run_token, day, source, [r for r in records if r.get("day") == day])
    log.info("Security Lake export to %s: %s", settings.security_lake_location, summary)
    return {"location": settings.security_lake_location, "days": summary}


class ExportError(ValueError):
    """An export that would lose the day in Security Lake, or a location it cannot write: refused."""


def _export_day(lake, run_token: str, day: str, source: str, records: list[dict]) -> dict:
    settings, storage, ledger = lake.settings, lake.storage, lake.ledger
    folder = day_folder(settings, day)
    try:
        present = set(storage.files(folder))
    except (NotADirectoryError, FileExistsError, PermissionError) as exc:
        raise ExportError(f"setting runtime_events_security_lake_location={settings.security_lake_location!r}: "
                          f"cannot use {folder} ({exc})") from None
    done = [r for r in records if r["kind"] == "exported"]
    latest = done[-1] if done else None
    if latest and latest["source"] == source and _intact(storage, latest, present):
        targets, outcome = latest["files"], {"outcome": "unchanged", "files": len(latest["files"])}
    else:
        sources = _parquet_files(storage, source)
        if not sources and _recorded_rows(lake, day, source) != 0:
            raise ExportError(
                f"{TABLE} dt={day}: the published version {source} has no data files, though the ledger "
                "does not record it as empty; the day in Security Lake is left as it is. Restore the files, "
                f"or roll the day back (runtime-events rollback {TABLE} --dt {day})")
        targets = [f"{folder}{run_token}-{n:05d}.parquet" for n in range(len(sources))]
        sizes = [storage.size(f) for f in sources]
        ledger.record(RECORDS, "export_started", run_token, day=day, source=source, files=targets, sizes=sizes)
        try:
            for source_file, target in zip(sources, targets):
                storage.copy_file(source_file, target)
        except (NotADirectoryError, FileExistsError, PermissionError) as exc:
            raise ExportError(f"setting runtime_events_security_lake_location={settings.security_lake_location!r}: "
                              f"cannot write {folder} ({exc})") from None
        ledger.record(RECORDS, "exported", run_token, day=day, source=source, files=targets, sizes=sizes)
        outcome = {"outcome": "exported", "files": len(targets)}
    outcome["replaced"] = _clean(storage, folder, run_token, records, present, set(targets))
    return outcome


def _intact(storage, record: dict, present: set[str]) -> bool:
    """The record's files are all there, each of the size it was copied at."""
    if not set(record["files"]) <= present:
        return False
    sizes = record.get("sizes") or [None] * len(record["files"])
    return all(size is None or storage.size(f) == size for f, size in zip(record["files"], sizes))


def _recorded_rows(lake, day: str, source: str) -> int | None:
    """The rows the ledger recorded for the published version of ``day`` (None: not recorded)."""
    for version in lake.ledger.history(TABLE).versions.get((day,), []):
        if version.location == source:
            return version.rows
    return None


_TEMPORARY = re.compile(r"^\.(r[0-9a-z_]+-[0-9]{5}\.parquet)\..*\.tmp$")


def _clean(storage, folder: str, run_token: str, records: list[dict], present: set[str], keep: set[str]) -> int:
    """Delete what the day's earlier exports left in its folder, every time the day is looked
    at (so a crash between copy and delete, or two exports at once, is tidied by the next one):
    files named by an earlier ``exported`` record, files of starts of other runs older than
    :data:`STALE_AFTER` (a start of a run still copying is left alone), and the hidden partial
    copies of either. Nothing else, and nothing outside the day's folder."""
    now = datetime.now(timezone.utc)
    ours = {f for r in records for f in r["files"]
            if r["kind"] == "exported" or r["run_token"] == run_token
            or now - datetime.fromisoformat(r["at"]) > STALE_AFTER}
    doomed = (ours & present) - keep
    for file in present:
        name = file.rsplit("/", 1)[-1]
        match = _TEMPORARY.match(name)
        if match and folder + match.group(1) in ours and file.startswith(folder):
            doomed.add(file)
    deleted = 0
    for file in sorted(doomed):
        if not (file.startswith(folder) and is_inside(storage, file, folder)):
            log.warning("not deleting %s: it is not inside %s", file, folder)
            continue
        deleted += storage.delete_file(file)
    return deleted
