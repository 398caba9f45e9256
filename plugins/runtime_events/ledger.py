"""The ledger: what the project created and what its publishes replaced, kept beside the data.

Everything lives under ``<curated_location>/_ledger/`` as small JSON objects, each written once
under a name of its own, so concurrent runs never overwrite each other's records (on S3 as
locally):

- ``owner.json``: the database this curated root belongs to, claimed by the first run;
- ``runs/<run_token>.json``: a run's work folders (stage and version folders), written before
  it creates any of them, and marked finished by its clean-up;
- ``tables/<table>/<time>_<run_token>_<kind>.json``: one per publish, rollback, repair or
  delete: the partitions it pointed where (``location`` null: dropped), what each replaced, and
  their rows.

Clean-up deletes only what these records name, and :mod:`runtime_events.publish` decides when.
Names that start with ``_`` are skipped by Athena and Hive, so the ledger never shows in a table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from secrets import token_hex

from runtime_events.settings import PREFIX, Settings, SettingsError
from runtime_events.storage import Storage

log = logging.getLogger(__name__)

Values = tuple[str | None, ...]


class LedgerError(Exception):
    pass


@dataclass(frozen=True)
class Version:
    """One location a partition was pointed at, by whom and when."""
    values: Values
    location: str | None  # None: the partition was dropped
    run_token: str
    at: str
    kind: str
    rows: int | None = None
    superseded_at: str | None = None  # when a later record pointed the partition elsewhere


@dataclass
class TableHistory:
    """Every recorded version of every partition of one table, oldest first."""
    versions: dict[Values, list[Version]] = field(default_factory=dict)
    replaced: dict[str, str] = field(default_factory=dict)  # location -> when a publish replaced it
    deleted: set[str] = field(default_factory=set)
    records: list[dict] = field(default_factory=list)  # every record, oldest first

    def latest(self) -> dict[Values, str]:
        """Each partition's current location as recorded (dropped partitions left out)."""
        return {v: h[-1].location for v, h in self.versions.items() if h and h[-1].location}

    def kept(self, values: Values) -> list[Version]:
        """The versions of a partition whose files are still kept, oldest first."""
        seen, out = set(), []
        for version in self.versions.get(values, []):
            if version.location and version.location not in self.deleted and version.location not in seen:
                out.append(version)
                seen.add(version.location)
        return out

    def superseded(self) -> dict[str, str]:
        """Locations no partition points at any more, with the time they were last replaced."""
        current = set(self.latest().values())
        out: dict[str, str] = {}
        for history in self.versions.values():
            for version in history:
                if version.location and version.superseded_at and version.location not in current:
                    out[version.location] = max(out.get(version.location, ""), version.superseded_at)
        for location, at in self.replaced.items():
            if location not in current:
                out[location] = max(out.get(location, ""), at)
        return {loc: at for loc, at in out.items() if loc not in self.deleted}


class Ledger:
    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self.root = f"{settings.curated_location}_ledger/"

    # -- ownership -----------------------------------------------------------------------------
    def claim(self) -> None:
        """Make this curated root this database's, or refuse it when another database has it.

        The claim is ``owner.json``; when it is missing, the records already under the root name
        their database too, so a lost ``owner.json`` never hands the root to another database."""
        location = self.root + "owner.json"
        text = self.storage.read_text(location)
        if text is None:
            others = sorted({r.get("database") for r in self.runs()} - {self.settings.database, None})
            if others:
                self._refuse(others[0], f"the run records under {self.root}runs/ (owner.json is missing)")
            self.storage.create_text(location, json.dumps({"database": self.settings.database}))
            text = self.storage.read_text(location)  # another process may have claimed it first
        try:
            owner = json.loads(text)["database"]
        except (ValueError, KeyError, TypeError):
            named = sorted({r.get("database") for r in self.runs()} - {None})
            raise LedgerError(
                f"{location} is damaged: it names the database that owns this curated root. Write "
                + (f'{{"database": "{named[0]}"}} into it (the database its run records name)' if len(named) == 1
                   else '{"database": "<the database whose tables live here>"} into it')
                + "; do not delete it") from None
        if owner != self.settings.database:
            self._refuse(owner, location)

    def _refuse(self, owner: str, where: str) -> None:
        raise SettingsError(
            "curated_location", self.settings.curated_location,
            f"a curated root of database {self.settings.database!r} alone: database {owner!r} already keeps "
            f"its tables there ({where}); give each database its own curated_location (setting "
            f"{PREFIX}database={self.settings.database!r})")

    def check_location(self) -> None:
        """The ledger's newest run worked under this curated root: a copied or moved lake still
        names the old one in its catalogue and ledger, and would read (and write) there."""
        names = sorted(p for p in self.storage.files(self.root + "runs/") if p.endswith(".json"))
        if not names:
            return
        latest = self._load(names[-1])
        elsewhere = [f["location"] for f in latest.get("folders", [])
                     if not f["location"].startswith(self.settings.curated_location)]
        if elsewhere:
            raise LedgerError(
                f"the ledger under {self.root} records work under {elsewhere[0]}, outside "
                f"curated_location={self.settings.curated_location}: the lake was copied or moved. Its "
                "catalogue and ledger name the old folders; set runtime_events_curated_location back to "
                "the old root (a lake cannot be moved by copying its folder)")

    # -- runs ----------------------------------------------------------------------------------
    def start_run(self, run_token: str, folders: list[str]) -> None:
        self.storage.write_text(self._run_path(run_token), json.dumps(
            {"run_token": run_token, "database": self.settings.database, "started_at": _now(), "folders": folders,
             "finished_at": None}))

    def finish_run(self, run_token: str) -> None:
        """Mark a run's work as dealt with: a marker beside its record (the record stays as it was
        written), so that listing the folder tells finished runs from the others without reading."""
        self.storage.write_text(f"{self.root}runs/{run_token}.finished", _now())

    def run(self, run_token: str) -> dict | None:
        text = self.storage.read_text(self._run_path(run_token))
        if text is None:
            return None
        finished = self.storage.read_text(f"{self.root}runs/{run_token}.finished")
        return self._parse(text, self._run_path(run_token)) | {"finished_at": finished}

    def runs(self, unfinished_only: bool = False) -> list[dict]:
        """The run records (only those of runs not marked finished: one listing, and reads of
        just those)."""
        names = self.storage.files(self.root + "runs/")
        finished = {n.removesuffix(".finished") for n in names if n.endswith(".finished")}
        return [self._load(n) | {"finished_at": None if n.removesuffix(".json") not in finished else True}
                for n in names if n.endswith(".json") and not (unfinished_only and n.removesuffix(".json") in finished)]

    # -- table records -------------------------------------------------------------------------
    def record(self, table: str, kind: str, run_token: str, partitions: Iterable[dict] = (),
               deleted: Iterable[str] = (), **extra) -> dict:
        """Write one record: ``partitions`` are ``{"values", "location", "previous", "rows"}``."""
        at = _now()
        record = {"table": table, "database": self.settings.database, "kind": kind, "run_token": run_token, "at": at,
                  "partitions": [{**p, "values": list(p["values"])} for p in partitions],
                  "deleted": list(deleted), **extra}
        stamp = at.replace("-", "").replace(":", "").replace(".", "")
        self.storage.write_text(f"{self.root}tables/{table}/{stamp}_{run_token}_{kind}_{token_hex(3)}.json",
                                json.dumps(record))
        return record

    def history(self, table: str) -> TableHistory:
        records = [self._load(path) for path in self.storage.files(f"{self.root}tables/{table}/")
                   if path.endswith(".json")]
        # Only this database's records: the root is one database's, but never trust that alone.
        records = sorted((r for r in records if r.get("database") == self.settings.database), key=lambda r: r["at"])
        history = TableHistory(records=records)
        for record in records:
            history.deleted.update(record.get("deleted") or [])
            for p in record["partitions"]:
                values = tuple(p["values"])
                versions = history.versions.setdefault(values, [])
                if versions and versions[-1].location == p["location"]:
                    continue  # pointed again where it was: no new version
                if record["kind"] == "repair" and any(v.location == p["location"] for v in versions):
                    continue  # a repair re-points to a recorded version; it makes none
                if versions:
                    last = versions[-1]
                    versions[-1] = Version(last.values, last.location, last.run_token, last.at, last.kind,
                                           last.rows, superseded_at=record["at"])
                versions.append(Version(values, p["location"], record["run_token"], record["at"],
                                        record["kind"], p.get("rows")))
                if p.get("previous") and p["previous"] != p["location"]:
                    history.replaced.setdefault(p["previous"], record["at"])
        return history

    # -- internals -----------------------------------------------------------------------------
    def _run_path(self, run_token: str) -> str:
        return f"{self.root}runs/{run_token}.json"

    def _load(self, location: str) -> dict:
        text = self.storage.read_text(location)
        if text is None:
            raise LedgerError(f"ledger record {location} disappeared while it was read")
        return self._parse(text, location)

    @staticmethod
    def _parse(text: str, location: str) -> dict:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise LedgerError(
                f"ledger record {location} is damaged ({exc}). Restore it from a backup if you have one; else "
                "move it aside (a name starting with '.'): the versions it names are then unknown to the ledger, "
                "so nothing it names is ever deleted, and repair does not re-attach them") from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")
