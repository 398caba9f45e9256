"""The environment of an Airflow command run on this checkout, shared by the tests and the
benchmark: Airflow home, DAG and plugin folders of the repository, the project's settings as
Airflow Variables in the environment, and nothing inherited that names another Airflow or
another configuration of the project."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"


def airflow_env(home: Path, settings: Mapping[str, object], *, base: Mapping[str, str] | None = None,
                bin_dir: Path = BIN, drop: tuple[str, ...] = ("AIRFLOW", "RUNTIME_EVENTS")) -> dict:
    """``base`` (the process's environment by default) without variables starting with ``drop``,
    plus Airflow's folders and one ``AIRFLOW_VAR_RUNTIME_EVENTS_<NAME>`` per setting."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith(drop)}
    env.update({
        "PATH": f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "RUNTIME_EVENTS_SKIP_AIRFLOW_VARIABLES": "1",
        "NO_PROXY": "*",
    })
    env.update({f"AIRFLOW_VAR_RUNTIME_EVENTS_{name.upper()}": str(value) for name, value in settings.items()})
    return env
