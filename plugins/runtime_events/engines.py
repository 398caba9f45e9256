"""The engine behind the project, chosen once from the settings: Athena or the embedded engine.

``backend(settings)`` is the only place that tells the two apart. It gives the three parts
every task needs: the query hook (Athena's own, or the embedded engine's stand-in with the
same interface), the catalogue (Glue, or the embedded metastore) and the storage (S3, or local
folders). The embedded engine is an extra (``runtime-events-lakehouse[embedded]``: DuckDB,
sqlglot, pyarrow); an Athena install does without it and never imports it.
"""

from __future__ import annotations

import importlib.util
from functools import cached_property

from runtime_events.catalogue import Catalogue, EmbeddedCatalogue, GlueCatalogue
from runtime_events.settings import PREFIX, Settings
from runtime_events.storage import LocalStorage, S3Storage, Storage

EXTRA = "runtime-events-lakehouse[embedded]"
_EMBEDDED_NEEDS = ("duckdb", "sqlglot", "pyarrow")
# Athena answers bursts of StartQueryExecution with TooManyRequestsException, Glue and S3 with
# their own throttling errors: botocore's standard mode retries them (and 5xx and dropped
# connections) with exponential backoff and jitter: 10 retries, where botocore's default makes 2-4.
AWS_CLIENT_CONFIG = {"retries": {"mode": "standard", "max_attempts": 10}}


class EngineUnavailable(RuntimeError):
    """The configured engine's packages are not installed."""


class AthenaBackend:
    """Athena, Glue and S3, through the Amazon provider's hooks."""

    on_aws = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def check(self) -> None:
        """Athena needs nothing beyond the core install."""

    def query_hook(self, log_query: bool = True, **athena_parameters):
        from airflow.providers.amazon.aws.hooks.athena import AthenaHook

        athena_parameters.setdefault("aws_conn_id", self.settings.aws_conn_id)
        athena_parameters.setdefault("config", AWS_CLIENT_CONFIG)
        return AthenaHook(log_query=log_query, **athena_parameters)

    @cached_property
    def catalogue(self) -> Catalogue:
        return GlueCatalogue(self.settings)

    @cached_property
    def storage(self) -> Storage:
        return S3Storage(self.settings.aws_conn_id)

    @property
    def refusals(self) -> tuple[type[Exception], ...]:
        """The engine's errors that mean "no" rather than "try again"."""
        return ()


class EmbeddedBackend:
    """The embedded engine: DuckDB over local folders, its metastore of JSON files."""

    on_aws = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def check(self) -> None:
        """Fail now, naming the setting and the extra, when the embedded engine cannot run here."""
        missing = [name for name in _EMBEDDED_NEEDS if importlib.util.find_spec(name) is None]
        if missing:
            raise EngineUnavailable(
                f"setting {PREFIX}engine={self.settings.engine!r} needs the embedded engine, which is not "
                f"installed (missing: {', '.join(missing)}): pip install '{EXTRA}', or set {PREFIX}engine=athena")

    def query_hook(self, log_query: bool = True, **athena_parameters):
        self.check()
        from runtime_events.embedded.hook import EmbeddedAthenaHook

        return EmbeddedAthenaHook(self.settings.curated_location, log_query=log_query)

    @cached_property
    def catalogue(self) -> Catalogue:
        return EmbeddedCatalogue(self.settings)

    @cached_property
    def storage(self) -> Storage:
        return LocalStorage()

    @property
    def refusals(self) -> tuple[type[Exception], ...]:
        self.check()
        from runtime_events.embedded.metastore import CatalogError

        return (CatalogError,)


Backend = AthenaBackend | EmbeddedBackend


def backend(settings: Settings) -> Backend:
    """The configured engine's parts (setting ``engine``)."""
    return AthenaBackend(settings) if settings.is_athena else EmbeddedBackend(settings)
