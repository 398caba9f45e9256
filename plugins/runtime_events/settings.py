"""The project's settings: one frozen, validated object built in one place.

Every setting is an Airflow Variable ``runtime_events_<name>``; Airflow also reads it from the
environment variable ``AIRFLOW_VAR_RUNTIME_EVENTS_<NAME>``. Values that end up inside SQL
(locations, names) are accepted only in their documented form, so that nothing a user types can
change the meaning of a statement.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import date
from pathlib import Path

from runtime_events.paths import PROJECT_ROOT

PREFIX = "runtime_events_"

Lookup = Callable[[str], "str | None"]


class SettingsError(ValueError):
    """A setting has a value outside its allowed form; the message names the setting."""

    def __init__(self, name: str, value: object, allowed: str) -> None:
        super().__init__(f"setting {PREFIX}{name}={value!r} is invalid: expected {allowed}")
        self.setting = PREFIX + name


# Characters that may appear in a location: no quotes, semicolons, backslashes or whitespace,
# and comment markers are rejected separately.
_LOCATION_CHARS = re.compile(r"^[A-Za-z0-9._~/=+@,:%-]+$")
_S3_LOCATION = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/([A-Za-z0-9._~/=+@,%-]*/)?$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")
_WORKGROUP = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/[A-Za-z0-9/_-]+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
_DATASET_ID = re.compile(r"^[A-Za-z0-9_-]{1,512}$")
_LAYOUT_TOKENS = re.compile(r"\{(yyyy|MM|dd)\}")
_LAYOUT_LITERAL = re.compile(r"^[A-Za-z0-9._=/-]*$")
# Words Athena reserves in DDL (Hive) or in queries (Trino): as a bare database name they change
# or break the statement (https://docs.aws.amazon.com/athena/latest/ug/reserved-words.html).
RESERVED_WORDS = frozenset("""
    all alter and any array as authorization between bigint binary boolean both by case cast char
    column commit conf constraint create cross cube current current_date current_path current_role
    current_time current_timestamp current_user cursor database date deallocate decimal delete
    describe distinct double drop else end escape except exchange exists extended external extract
    false fetch float floor following for foreign from full function grant group grouping having if
    import in inner insert int integer intersect interval into is join lateral left less like local
    localtime localtimestamp macro map more natural none normalize not null numeric of on only or
    order out outer over partialscan partition percent preceding precision prepare preserve primary
    procedure range reads recursive reduce references regexp revoke right rlike rollback rollup row
    rows select set smallint start table tablesample then time timestamp to transform trigger true
    truncate unbounded union uniquejoin unnest update user using utc_tmestamp values varchar views
    when where window with
""".split())


@dataclass(frozen=True)
class Settings:
    engine: str = "duckdb"
    raw_location: str = ""
    curated_location: str = ""
    database: str = "runtime_security"
    start_date: date = date(2020, 1, 1)
    lookback_days: int = 2
    reject_threshold: float = 0.05
    retention_days: int = 7
    athena_workgroup: str = "primary"
    athena_output_location: str = ""
    aws_conn_id: str = "aws_default"
    athena_result_encryption: str = ""
    deferrable: bool = False
    raw_layout: str = "flat"
    raw_format: str = "panoptica"
    falco_cluster_field: str = "cluster_id"
    redact_cmdline: bool = False
    quicksight_dataset_ids: tuple[str, ...] = ()
    # QuickSight as code (quicksight.py): the DAG's deploy_quicksight task, the datasets' mode,
    # and who may see them.
    quicksight_deploy: bool = False
    quicksight_import_mode: str = "SPICE"
    quicksight_principals: tuple[str, ...] = ()
    # Where export_to_security_lake writes the OCSF findings (Security Lake's custom-source
    # location, ending in ext/<source>/); "" when the export is off.
    security_lake_location: str = ""
    security_lake_region: str = "us-east-1"
    security_lake_account_id: str = ""

    @property
    def is_athena(self) -> bool:
        return self.engine == "athena"

    def table_location(self, table: str) -> str:
        """Where table ``table`` keeps its data: ``<curated_location>/<table>/``."""
        return f"{self.curated_location}{table}/"

    def result_configuration(self) -> dict:
        """Athena ``ResultConfiguration`` for every query: output location and encryption."""
        config: dict = {}
        if self.athena_output_location:
            config["OutputLocation"] = self.athena_output_location
        if self.athena_result_encryption:
            option, _, key = self.athena_result_encryption.partition(":")
            config["EncryptionConfiguration"] = {"EncryptionOption": option} | (
                {"KmsKey": key} if key else {}
            )
        return config

    @classmethod
    def load(cls, lookup: Lookup | None = None) -> Settings:
        """Build and validate the settings from ``lookup`` (default: the environment)."""
        lookup = lookup or environment_lookup(os.environ)
        raw = {f.name: lookup(PREFIX + f.name) for f in fields(cls)}
        settings = cls(**{name: _PARSERS[name](name, value) for name, value in raw.items()})
        settings = settings._with_security_lake()
        settings._check_locations_apart()
        return settings

    def _with_security_lake(self) -> Settings:
        """The export's defaults hang on the engine: on the embedded engine it is on, into
        ``security_lake/ext/runtime_events/`` beside the curated folder, for account
        000000000000; on Athena it is off until a location is set, and then the account must be
        set too."""
        location, account = self.security_lake_location, self.security_lake_account_id
        if location == _UNSET:
            location = "" if self.is_athena else _security_lake_default(self.curated_location)
        elif location == "off":
            location = ""
        if not account and not self.is_athena:
            account = "000000000000"
        if location and self.is_athena != location.startswith("s3://"):
            raise SettingsError(
                "security_lake_location", location,
                "an s3:// location with engine=athena" if self.is_athena
                else "a local folder with engine=duckdb (or off)")
        if location and not account:
            raise SettingsError(
                "security_lake_account_id", None,
                "the 12-digit AWS account id of the Security Lake custom source, which "
                f"{PREFIX}security_lake_location={location!r} asks for")
        return replace(self, security_lake_location=location, security_lake_account_id=account)

    def _check_locations_apart(self) -> None:
        """The project reads ``raw_location`` and writes ``curated_location``: if one held the
        other, a run would read its own Parquet as alerts, or write into the alert files."""
        raw, curated = self.raw_location, self.curated_location
        if raw.startswith(curated) or curated.startswith(raw):
            raise SettingsError(
                "curated_location", curated,
                f"a location apart from runtime_events_raw_location={raw!r}: "
                "neither may be equal to the other or inside it")
        lake = self.security_lake_location
        for name, other in (("raw_location", raw), ("curated_location", curated)):
            if lake and (lake.startswith(other) or other.startswith(lake)):
                raise SettingsError(
                    "security_lake_location", lake,
                    f"a location apart from {PREFIX}{name}={other!r}: the export replaces files there, "
                    "so neither may be equal to the other or inside it")


def environment_lookup(environ: Mapping[str, str]) -> Lookup:
    """Read ``runtime_events_x`` from ``AIRFLOW_VAR_RUNTIME_EVENTS_X``, as Airflow does."""
    return lambda key: environ.get("AIRFLOW_VAR_" + key.upper())


def airflow_lookup() -> Lookup:
    """Read Variables through Airflow (environment first, then the secrets backends and the
    metastore). Only for task run time: it may call the API server."""
    from airflow.sdk import Variable

    return lambda key: Variable.get(key, default=None)


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _engine(name: str, value: str | None) -> str:
    value = (_text(value) or "duckdb").lower()
    if value not in ("duckdb", "athena"):
        raise SettingsError(name, value, "'duckdb' or 'athena'")
    return value


def _location(name: str, value: str | None, default: Path) -> str:
    text = _text(value)
    if text is None:
        return str(default) + "/"
    if "--" in text or "/*" in text or "*/" in text or not _LOCATION_CHARS.match(text):
        raise SettingsError(
            name, value, "an s3://bucket/prefix/ URI, a file:// URI or a local folder, "
            "made of letters, digits and . _ ~ / = + @ , - only",
        )
    if text.startswith("s3://"):
        text = text.rstrip("/") + "/"
        if not _S3_LOCATION.match(text):
            raise SettingsError(name, value, "s3://bucket/prefix/ with a valid bucket name")
        return text
    if text.startswith("file://"):
        text = text[len("file://"):]  # file:///srv/x names /srv/x; file://srv/x names host srv
    if "://" in text or ":" in text:
        raise SettingsError(name, value, "an s3:// URI, a file:// URI or a local folder")
    if not text.startswith("/"):
        raise SettingsError(name, value, "an absolute local folder (/srv/lake/...) or file:///srv/lake/...; "
                            "a relative path would depend on the working directory")
    # Resolved (symbolic links, . and ..): two spellings of one folder compare equal; the root is
    # "/" (not "//", which no other folder starts with).
    return str(Path(text).resolve()).rstrip("/") + "/"


_UNSET = "<unset>"


def _security_lake_default(curated_location: str) -> str:
    """Beside a local curated folder (<PROJECT_ROOT>/.lake/security_lake/ext/runtime_events/ by
    default); none beside an S3 one, which the embedded engine cannot use anyway."""
    if curated_location.startswith("s3://"):
        return ""
    return str(Path(curated_location).parent / "security_lake" / "ext" / "runtime_events") + "/"


def _security_lake_location(name: str, value: str | None) -> str:
    text = _text(value)
    if text is None:
        return _UNSET
    if text.lower() == "off":
        return "off"
    return _location(name, text, Path("/"))


def _import_mode(name: str, value: str | None) -> str:
    text = (_text(value) or "SPICE").upper().replace("-", "_")
    if text not in ("SPICE", "DIRECT_QUERY"):
        raise SettingsError(name, value, "SPICE (imported, refreshed after each run) or DIRECT_QUERY (Athena at each view)")
    return text


_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:quicksight:[a-z0-9-]+:[0-9]{12}:(user|group)/[A-Za-z0-9+=,.@_/-]{1,256}$")


def _raw_location(name: str, value: str | None) -> str:
    return _location(name, value, PROJECT_ROOT / ".lake" / "raw" / "lightspin" / "k8s_runtime_events")


def _curated_location(name: str, value: str | None) -> str:
    return _location(name, value, PROJECT_ROOT / ".lake" / "curated")


def _pattern(regex: re.Pattern, allowed: str, default: str) -> Callable[[str, str | None], str]:
    def parse(name: str, value: str | None) -> str:
        text = _text(value)
        if text is None:
            return default
        if not regex.match(text):
            raise SettingsError(name, value, allowed)
        return text

    return parse


def _start_date(name: str, value: str | None) -> date:
    text = _text(value)
    if text is None:
        return date(2020, 1, 1)
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise SettingsError(name, value, "a date YYYY-MM-DD") from None


def _lookback_days(name: str, value: str | None) -> int:
    text = _text(value)
    if text is None:
        return 2
    # A run rewrites lookback_days + 1 day partitions of each aggregate in one statement, and an
    # Athena write holds at most 100 partitions.
    if not re.fullmatch(r"[0-9]{1,2}", text) or int(text) > 90:
        raise SettingsError(name, value, "a whole number of days from 0 to 90")
    return int(text)


def _reject_threshold(name: str, value: str | None) -> float:
    text = _text(value)
    if text is None:
        return 0.05
    try:
        threshold = float(text)
    except ValueError:
        raise SettingsError(name, value, "a share between 0 and 1, such as 0.05") from None
    if not 0.0 <= threshold <= 1.0:
        raise SettingsError(name, value, "a share between 0 and 1, such as 0.05")
    return threshold


def _flag(name: str, value: str | None) -> bool:
    text = (_text(value) or "false").lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise SettingsError(name, value, "true or false")


def _output_location(name: str, value: str | None) -> str:
    text = _text(value)
    if text is None:
        return ""
    text = text.rstrip("/") + "/"
    if not _S3_LOCATION.match(text) or "--" in text:
        raise SettingsError(name, value, "empty, or an s3://bucket/prefix/ URI")
    return text


def _encryption(name: str, value: str | None) -> str:
    text = _text(value)
    if text is None:
        return ""
    if text == "SSE_S3":
        return text
    option, _, key = text.partition(":")
    if option == "SSE_KMS" and _KMS_ARN.match(key):
        return text
    raise SettingsError(name, value, "empty, SSE_S3, or SSE_KMS:<kms key arn>")


def _raw_layout(name: str, value: str | None) -> str:
    text = _text(value)
    if text is None or text == "flat":
        return "flat"
    tokens = _LAYOUT_TOKENS.findall(text)
    literal = _LAYOUT_TOKENS.sub("", text)
    if (
        sorted(tokens) != ["MM", "dd", "yyyy"]
        or not text.endswith("/")
        or text.startswith("/")
        or "//" in text
        or any(part.startswith((".", "_")) for part in text.rstrip("/").split("/"))
        or not _LAYOUT_LITERAL.match(literal)
    ):
        raise SettingsError(
            name, value,
            "'flat' or a folder template with {yyyy}, {MM} and {dd} once each, ending in '/', "
            "such as '{yyyy}/{MM}/{dd}/' or 'dt={yyyy}-{MM}-{dd}/'",
        )
    return text


RAW_FORMATS = ("panoptica", "falco", "auto")
# An output field name as Falco writes them (k8s.ns.name, proc.aname_2 after Falcosidekick's
# bracket replacer, a customfield such as cluster_id): it goes into a JSON path in SQL.
_FIELD = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def _raw_format(name: str, value: str | None) -> str:
    text = (_text(value) or "panoptica").lower()
    if text not in RAW_FORMATS:
        raise SettingsError(name, value, "panoptica (the flat Panoptica alert), falco (Falco's JSON as "
                            "Falcosidekick writes it) or auto (per line: a line with output_fields is Falco's)")
    return text


def _falco_cluster_field(name: str, value: str | None) -> str:
    text = _text(value)
    if text is None:
        return "cluster_id"
    if not _FIELD.match(text):
        raise SettingsError(name, value, "the name of a Falco output field (letters, digits, . _ -), such as "
                            "cluster_id (Falcosidekick's customfields) or k8smeta.cluster.name")
    return text


def _retention_days(name: str, value: str | None) -> int:
    text = _text(value)
    if text is None:
        return 7
    if not re.fullmatch(r"[0-9]{1,4}", text) or int(text) > 3650:
        raise SettingsError(name, value, "a whole number of days from 0 to 3650")
    return int(text)


def _database(name: str, value: str | None) -> str:
    text = _text(value)
    if text is None:
        return "runtime_security"
    if not _NAME.match(text) or text in RESERVED_WORDS:
        raise SettingsError(name, value, "a Glue database name: lowercase letters, digits and _, "
                            "not an SQL reserved word")
    return text


def _comma_list(regex: re.Pattern, allowed: str) -> Callable[[str, str | None], tuple[str, ...]]:
    """A comma-separated list, each item of ``regex``'s form; unset: empty."""
    def parse(name: str, value: str | None) -> tuple[str, ...]:
        text = _text(value)
        if text is None:
            return ()
        items = tuple(part.strip() for part in text.split(","))
        if not all(regex.match(i) for i in items):
            raise SettingsError(name, value, allowed)
        return items

    return parse


_PARSERS: dict[str, Callable[[str, str | None], object]] = {
    "engine": _engine,
    "raw_location": _raw_location,
    "curated_location": _curated_location,
    "database": _database,
    "start_date": _start_date,
    "lookback_days": _lookback_days,
    "reject_threshold": _reject_threshold,
    "athena_workgroup": _pattern(_WORKGROUP, "an Athena workgroup name: letters, digits, . _ -", "primary"),
    "athena_output_location": _output_location,
    "aws_conn_id": _pattern(_CONN_ID, "an Airflow connection id: letters, digits, . _ -", "aws_default"),
    "athena_result_encryption": _encryption,
    "deferrable": _flag,
    "raw_layout": _raw_layout,
    "raw_format": _raw_format,
    "falco_cluster_field": _falco_cluster_field,
    "redact_cmdline": _flag,
    "quicksight_dataset_ids": _comma_list(_DATASET_ID, "comma-separated QuickSight dataset ids (letters, digits, - and _)"),
    "quicksight_deploy": _flag,
    "quicksight_import_mode": _import_mode,
    "quicksight_principals": _comma_list(_PRINCIPAL, "comma-separated QuickSight user or group ARNs (arn:aws:quicksight:"
                                         "<region>:<account>:user/default/<name> or .../group/default/<name>)"),
    "retention_days": _retention_days,
    "security_lake_location": _security_lake_location,
    "security_lake_region": _pattern(_REGION, "an AWS region name such as us-east-1 or eu-central-1", "us-east-1"),
    "security_lake_account_id": _pattern(re.compile(r"^[0-9]{12}$"), "a 12-digit AWS account id", ""),
}
