"""The installable plugin: the wheel, installed into another Airflow the way the README tells.

The wheel is built from the repo and opened: it must carry the package, every SQL file, the DAG
and the two entry points (the ``airflow.plugins`` plugin and the ``runtime-events`` command). It is
then installed with the pinned constraints into a fresh virtualenv that knows nothing of this
checkout, and an empty Airflow home gets only the README's one-line DAG file: Airflow must list
the DAG and the plugin, the DAG must find its SQL inside the installed package, and one real run
(``airflow dags test`` on the embedded engine) must build the tables in the default lake beside
the Airflow home.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
UV = REPO / ".venv" / "bin" / "uv"
SQL_FILES = sorted(p.relative_to(REPO / "include" / "sql").as_posix() for p in (REPO / "include" / "sql").rglob("*.sql"))
PACKAGE_FILES = sorted(p.relative_to(REPO / "plugins").as_posix() for p in (REPO / "plugins" / "runtime_events").rglob("*")
                       if p.is_file() and p.suffix in (".py", ".csv", ".md") and "__pycache__" not in p.parts)
DAG_ID = "runtime_events_daily"
DAY = "2026-03-02"


def run(args: list, env: dict | None = None, cwd: Path | None = None, timeout: int = 600) -> str:
    done = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    if UV.exists():
        run([UV, "build", "--wheel", "--out-dir", out, REPO], cwd=REPO)
    else:
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", out, REPO], cwd=REPO)
    (built,) = out.glob("runtime_events_lakehouse-*.whl")
    return built


def test_wheel_carries_the_package_sql_dag_and_entry_points(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = configparser.ConfigParser(delimiters="=")
        entry_points.read_string(archive.read(f"{dist_info}/entry_points.txt").decode())
        dag_source = archive.read("runtime_events/dags/runtime_events_daily.py")
    # the alerts page's plugin, for Airflow to find in the installed wheel
    assert dict(entry_points["airflow.plugins"]) == {"runtime_events": "runtime_events.airflow_plugin:RuntimeEventsPlugin"}
    assert "runtime_events/quicksight_definitions/dashboard.json" in names
    assert dict(entry_points["console_scripts"]) == {"runtime-events": "runtime_events.cli:entry_point"}
    assert SQL_FILES, "include/sql holds no .sql file"
    assert [f for f in SQL_FILES if f"runtime_events/sql/{f}" not in names] == []
    assert [f for f in PACKAGE_FILES if f not in names] == []
    assert dag_source == (REPO / "dags" / "runtime_events_daily.py").read_bytes()
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith(("tests/", ".lake"))]


def fresh_venv(root: Path, *requirements) -> Path:
    """A new virtualenv at ``root`` with ``requirements`` installed with the pinned constraints,
    from uv's cache when it has every package (no network), else from PyPI."""
    if not UV.exists():
        pytest.skip(f"{UV} is missing: run ./scripts/test, which installs it into .venv")
    run([UV, "venv", "--quiet", "--python", REPO / ".venv" / "bin" / "python", root])
    install = [UV, "pip", "install", "--quiet", "--python", root / "bin" / "python",
               "--constraint", REPO / "constraints.txt", *requirements]
    try:
        run([*install, "--offline"])
    except AssertionError:
        run(install)
    return root


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    return fresh_venv(tmp_path_factory.mktemp("venv") / "venv", f"runtime-events-lakehouse[embedded] @ {wheel.as_uri()}")


def test_an_athena_install_needs_no_embedded_engine(wheel, tmp_path):
    """The wheel alone (no extra): the Athena path imports and parses without DuckDB or sqlglot,
    and choosing the embedded engine says which extra to install."""
    venv = fresh_venv(tmp_path / "venv", wheel)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RUNTIME_EVENTS", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "RUNTIME_EVENTS_SKIP_AIRFLOW_VARIABLES": "1",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags")}
    for name in ("duckdb", "sqlglot"):
        assert run(["python", "-c", f"import importlib.util; print(importlib.util.find_spec({name!r}))"], env).strip() == "None"
    probe = ("import sys, runpy; runpy.run_path(sys.argv[1]); import runtime_events.cli, runtime_events.publish; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('duckdb', 'sqlglot', 'pyarrow') "
             "or m.startswith('runtime_events.embedded')))")
    athena = env | {"AIRFLOW_VAR_RUNTIME_EVENTS_ENGINE": "athena"}
    assert run(["python", "-c", probe, REPO / "dags" / "runtime_events_daily.py"], athena).strip().splitlines()[-1] == "[]"
    done = subprocess.run(["runtime-events", "query", "SELECT 1"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2
    assert "runtime_events_engine='duckdb' needs the embedded engine" in done.stderr
    assert "pip install 'runtime-events-lakehouse[embedded]'" in done.stderr


def readme_dag_file() -> str:
    """The DAG file the README tells a user of another Airflow to add, verbatim."""
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    (block,) = [b for b in blocks if "from runtime_events.dags.runtime_events_daily import" in b]
    return block


@pytest.fixture(scope="module")
def airflow(venv, tmp_path_factory) -> dict:
    """An Airflow home with an empty dags folder but for the README's DAG file, and the environment
    of a shell there: nothing of this checkout on any path."""
    home = tmp_path_factory.mktemp("airflow_home")
    (home / "dags").mkdir()
    (home / "dags" / "runtime_events_daily.py").write_text(readme_dag_file())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "RUNTIME_EVENTS", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "NO_PROXY": "*"}
    cwd = tmp_path_factory.mktemp("cwd")
    run(["airflow", "db", "migrate"], env, cwd)
    return {"home": home, "env": env, "cwd": cwd, "venv": venv}


def json_output(text: str) -> list[dict]:
    """The JSON list a CLI printed with ``--output json`` (Airflow may log warnings around it)."""
    return json.loads(next(line for line in reversed(text.splitlines()) if line.startswith(("[{", "[]"))))


def test_airflow_lists_the_dag(airflow):
    env, cwd = airflow["env"], airflow["cwd"]
    run(["airflow", "dags", "reserialize"], env, cwd)  # what the DAG processor does
    dags = {d["dag_id"]: d for d in json_output(run(["airflow", "dags", "list", "--output", "json"], env, cwd))}
    assert DAG_ID in dags, dags
    assert dags[DAG_ID]["fileloc"] == str(airflow["home"] / "dags" / "runtime_events_daily.py")


def test_the_dag_finds_its_sql_inside_the_installed_package(airflow):
    probe = """
import json
from airflow.dag_processing.dagbag import DagBag
import runtime_events
from runtime_events.paths import SQL_DIR
bag = DagBag()
dag = bag.dags["runtime_events_daily"]
env = dag.get_template_env()
rendered = [name for name in json.loads(input()) if env.get_template(name)]
print(json.dumps({"errors": list(bag.import_errors), "package": runtime_events.__file__,
                  "sql_dir": str(SQL_DIR), "searchpath": dag.template_searchpath, "rendered": rendered}))
"""
    done = subprocess.run(["python", "-c", probe], input=json.dumps(SQL_FILES), env=airflow["env"],
                          cwd=airflow["cwd"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    package = Path(found["package"]).parent
    assert package.is_relative_to(airflow["venv"]), "runtime_events was imported from outside the venv"
    assert found["errors"] == []
    assert found["sql_dir"] == str(package / "sql")
    assert found["searchpath"] == [found["sql_dir"]]
    assert found["rendered"] == SQL_FILES


def test_a_run_from_the_installed_package_builds_the_tables(airflow):
    env, cwd, home = airflow["env"], airflow["cwd"], airflow["home"]
    run(["runtime-events", "generate", "--start", "2026-03-01", "--days", "2", "--clusters", "2",
         "--events-per-day", "60", "--seed", "7"], env, cwd)
    assert list((home / ".lake" / "raw" / "lightspin" / "k8s_runtime_events").rglob("*")), \
        "alerts were not written into the default lake beside AIRFLOW_HOME"
    run(["airflow", "dags", "test", DAG_ID, DAY], env, cwd, timeout=900)
    counts = json.loads(run([
        "runtime-events", "query", "--format", "json",
        "SELECT (SELECT count(*) FROM runtime_events_parquet) AS curated, "
        "(SELECT sum(alerts_loaded) FROM runtime_events_load_audit) AS loaded, "
        "(SELECT sum(event_count) FROM daily_severity_counts) AS aggregated",
    ], env, cwd).strip().splitlines()[-1])
    assert counts["curated"] > 0
    assert counts["curated"] == counts["loaded"] == counts["aggregated"], counts
    assert (home / ".lake" / "curated" / "_catalog").is_dir()


def test_an_astro_style_include_folder_does_not_hide_the_packaged_sql(airflow, tmp_path):
    home = tmp_path / "astro"
    (home / "include" / "sql").mkdir(parents=True)
    (home / "dags").mkdir()
    env = {**airflow["env"], "AIRFLOW_HOME": str(home)}
    sql_dir = run(["python", "-c", "from runtime_events.paths import SQL_DIR; print(SQL_DIR)"], env, tmp_path)
    assert Path(sql_dir.strip()).is_relative_to(airflow["venv"])
