"""Where the project's own files are, from a git checkout or from an installed wheel."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent.parent

# A git checkout has plugins/runtime_events beside include/sql; an installed wheel carries its
# SQL and DAG inside the package (an Astro project's own include/ must not shadow them).
IN_CHECKOUT = (_CHECKOUT / "include" / "sql").is_dir() and (_CHECKOUT / "plugins" / "runtime_events").is_dir()

# The local lake's default home: the checkout, or beside the Airflow home when installed.
PROJECT_ROOT = _CHECKOUT if IN_CHECKOUT else Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")).resolve()

SQL_DIR = _CHECKOUT / "include" / "sql" if IN_CHECKOUT else _PACKAGE / "sql"
QUICKSIGHT_DIR = _CHECKOUT / "include" / "quicksight" if IN_CHECKOUT else _PACKAGE / "quicksight_definitions"
REPO_DAGS = _CHECKOUT / "dags" if IN_CHECKOUT else _PACKAGE / "dags"
