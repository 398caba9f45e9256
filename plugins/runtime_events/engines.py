"""The engine behind the operator: Athena's own hook, or the embedded engine's stand-in.

The embedded engine is an extra (``runtime-events-lakehouse[embedded]``: DuckDB, sqlglot,
pyarrow); an Athena install does without it and never imports it.
"""

from __future__ import annotations

import importlib.util

from runtime_events.settings import PREFIX, Settings

EXTRA = "runtime-events-lakehouse[embedded]"
_EMBEDDED_NEEDS = ("duckdb", "sqlglot", "pyarrow")


class EngineUnavailable(RuntimeError):
    """The configured engine's packages are not installed."""


def check_engine(settings: Settings) -> None:
    """Fail now, naming the setting and the extra, when ``engine=duckdb`` cannot run here."""
    if settings.is_athena:
        return
    missing = [name for name in _EMBEDDED_NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        raise EngineUnavailable(
            f"setting {PREFIX}engine={settings.engine!r} needs the embedded engine, which is not installed "
            f"(missing: {', '.join(missing)}): pip install '{EXTRA}', or set {PREFIX}engine=athena")


def query_hook(settings: Settings, log_query: bool = True, **athena_parameters):
    """The hook that runs the project's statements on the configured engine."""
    if settings.is_athena:
        from airflow.providers.amazon.aws.hooks.athena import AthenaHook

        return AthenaHook(log_query=log_query, **athena_parameters)
    check_engine(settings)
    from runtime_events.embedded.hook import EmbeddedAthenaHook

    return EmbeddedAthenaHook(settings.curated_location, log_query=log_query)
