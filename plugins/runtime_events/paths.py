"""Where the project's own files are, from a git checkout or from an installed wheel."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _project_root() -> Path:
    checkout = _PACKAGE.parent.parent
    if (checkout / "include" / "sql").is_dir():
        return checkout
    # Installed as a wheel: keep the local lake beside the Airflow home.
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")).resolve()


PROJECT_ROOT = _project_root()

# The SQL files: include/sql in a checkout, runtime_events/sql inside the wheel.
SQL_DIR = (
    PROJECT_ROOT / "include" / "sql"
    if (PROJECT_ROOT / "include" / "sql").is_dir()
    else _PACKAGE / "sql"
)

# The DAG files: dags/ in a checkout, runtime_events/dags inside the wheel.
REPO_DAGS = PROJECT_ROOT / "dags" if (PROJECT_ROOT / "dags").is_dir() else _PACKAGE / "dags"
