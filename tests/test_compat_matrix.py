"""The wheel in the Airflow our users already have: 3.0.6, 3.1.x and 3.2.x as they shipped.

For each release, a virtualenv gets that Airflow and the Amazon provider of its day (resolved
with uv's ``--exclude-newer`` as of shortly after the release, so nothing newer sneaks in; only
DuckDB and sqlglot of the embedded extra are exempt), then the project's wheel beside it with
Airflow pinned, so that installing the wheel can never move Airflow. An Airflow home then gets
only the README's one-line DAG file: the DAG imports without errors, and one day run through
``airflow dags test`` on the embedded engine must give the tables the independent oracle
computes (the repository's own Airflow 3.3 gives them too: test_dag_runs.py). On the oldest
release the Athena mode runs against moto as well (test_athena_mode.py with that Airflow); the
newest, 3.3, is the repository's own .venv, where the whole suite runs.

The virtualenvs are kept in ``.cache/airflow-matrix/`` and reused while their recipe is the same;
only the wheel is installed anew each time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import oracle
from test_packaging import run

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
UV = REPO / ".venv" / "bin" / "uv"
CACHE = REPO / ".cache" / "airflow-matrix"
# (Airflow release, the day its packages are resolved as of): shortly after each release.
RELEASES = {
    "3.0.6": "2025-09-05",
    "3.1.8": "2026-03-20",
    "3.2.1": "2026-05-01",
}
EXEMPT = ("duckdb", "sqlglot")  # the embedded extra needs releases newer than some Airflows
OLDEST = min(RELEASES, key=lambda v: tuple(int(p) for p in v.split(".")))
DAYS = ["2026-03-01", "2026-03-02"]
TABLES = ["runtime_events_parquet", "daily_rule_counts", "daily_severity_counts", "daily_workload_counts",
          "daily_cve_counts", "daily_attack_counts"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([UV, "build", "--wheel", "--quiet", "--out-dir", out, REPO], cwd=REPO)
    (built,) = out.glob("runtime_events_lakehouse-*.whl")
    return built


def release_venv(version: str, day: str, wheel: Path, python: str = sys.executable) -> Path:
    """Airflow ``version`` with the packages of ``day``, and the wheel (embedded extra) beside it."""
    airflow = [f"apache-airflow=={version}", "apache-airflow-providers-amazon[aiobotocore]"]
    recipe = hashlib.sha256(json.dumps([version, day, airflow, EXEMPT, python]).encode()).hexdigest()[:12]
    name = version if python == sys.executable else f"{version}-{Path(python).name}"
    venv, marker = CACHE / name, CACHE / name / ".recipe"
    if not marker.exists() or marker.read_text() != recipe:
        shutil.rmtree(venv, ignore_errors=True)
        run([UV, "venv", "--quiet", "--seed", "--python", python, venv])
        run([UV, "pip", "install", "--quiet", "--python", venv / "bin" / "python", "--exclude-newer", day, *airflow])
        marker.write_text(recipe)
    exempt = [arg for name in EXEMPT for arg in ("--exclude-newer-package", f"{name}=2100-01-01")]
    run([UV, "pip", "install", "--quiet", "--python", venv / "bin" / "python", "--exclude-newer", day, *exempt,
         "--reinstall-package", "runtime-events-lakehouse", f"apache-airflow=={version}",
         f"runtime-events-lakehouse[embedded] @ {wheel.as_uri()}"])
    return venv


def python312() -> str:
    """A Python 3.12 interpreter of this machine (MWAA's Python): on the PATH, or pyenv's."""
    candidates = [shutil.which("python3.12"), "/usr/bin/python3.12", "/usr/local/bin/python3.12",
                  *sorted(str(p) for p in Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")).glob("versions/3.12*/bin/python3.12"))]
    for candidate in filter(None, candidates):
        if not Path(candidate).exists():
            continue
        done = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                              capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip() == "True":
            return candidate
    raise AssertionError(f"no Python 3.12 among {candidates}: MWAA runs 3.12, the bundle is checked there")


def readme_dag_file() -> str:
    readme = (REPO / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S)
                if "from runtime_events.dags.runtime_events_daily import" in b]
    return block


@pytest.fixture(scope="module", params=list(RELEASES))
def release(request, wheel, tmp_path_factory) -> dict:
    version = request.param
    venv = release_venv(version, RELEASES[version], wheel)
    tmp = tmp_path_factory.mktemp(f"airflow-{version}")
    home = tmp / "home"
    (home / "dags").mkdir(parents=True)
    (home / "dags" / "runtime_events_daily.py").write_text(readme_dag_file())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RUNTIME_EVENTS", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "NO_PROXY": "*", "RUNTIME_EVENTS_SKIP_AIRFLOW_VARIABLES": "1",
            "AIRFLOW_VAR_RUNTIME_EVENTS_RAW_LOCATION": str(tmp / "raw"),
            "AIRFLOW_VAR_RUNTIME_EVENTS_CURATED_LOCATION": str(tmp / "curated"),
            "AIRFLOW_VAR_RUNTIME_EVENTS_REJECT_THRESHOLD": "0.5"}
    run(["airflow", "db", "migrate"], env, tmp)
    run(["airflow", "dags", "reserialize"], env, tmp)  # what the DAG processor does
    return {"version": version, "venv": venv, "tmp": tmp, "env": env}


def test_installing_the_wheel_keeps_the_airflow_release(release):
    out = run(["python", "-c", "import airflow, runtime_events; print(airflow.__version__, runtime_events.__file__)"],
              release["env"], release["tmp"])
    version, package = out.split()
    assert version == release["version"]
    assert Path(package).is_relative_to(release["venv"])


PROBE = """
import json
try:
    from airflow.dag_processing.dagbag import DagBag  # 3.1+
except ImportError:
    from airflow.models.dagbag import DagBag  # 3.0
bag = DagBag()
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": list(bag.dags)}))
"""


def test_the_dag_imports_without_errors(release):
    out = run(["python", "-c", PROBE], release["env"], release["tmp"])
    found = json.loads(out.strip().splitlines()[-1])
    assert found == {"errors": {}, "dags": ["runtime_events_daily"]}


def test_a_day_through_airflow_equals_the_oracle(release):
    env, tmp = release["env"], release["tmp"]
    run(["runtime-events", "generate", "--start", DAYS[0], "--days", "2", "--clusters", "3",
         "--events-per-day", "80", "--seed", "21"], env, tmp)
    out = run(["airflow", "dags", "test", "runtime_events_daily", DAYS[-1]], env, tmp)
    assert "state=success" in out
    expected = oracle.expected_tables(tmp / "raw", ["2026-02-28", *DAYS])
    for name in TABLES:
        rows = [json.loads(line) for line in run(["runtime-events", "query", f"SELECT * FROM {name}", "--format", "json"],
                                                 env, tmp).splitlines()]
        got = oracle.pd.DataFrame(rows, columns=list(expected[name].columns)) if rows else expected[name].iloc[0:0]
        for column in ("event_time", "first_seen", "last_seen"):
            if column in got:
                got[column] = oracle.pd.to_datetime(got[column])
        assert len(expected[name]) > 0
        assert oracle.canonical(got).equals(oracle.canonical(expected[name])), (release["version"], name)


def test_the_athena_mode_on_the_oldest_release(wheel, tmp_path):
    venv = release_venv(OLDEST, RELEASES[OLDEST], wheel)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RUNTIME_EVENTS"))}
    env["RUNTIME_EVENTS_TEST_AIRFLOW_BIN"] = str(venv / "bin")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           str(REPO / "tests" / "test_athena_mode.py"), "--basetemp", str(tmp_path / "athena")],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert re.search(r"\b2[0-9] passed\b", done.stdout), done.stdout[-2000:]


def test_the_mwaa_bundle_installs_offline_into_the_oldest_release(wheel, tmp_path):
    """scripts/mwaa-bundle's files, as MWAA uses them: plugins.zip unpacked where MWAA puts it,
    requirements.txt installed by pip with no index, into Airflow 3.0.6 on Python 3.12 (MWAA's
    Python), the DAG file in an empty DAGs folder."""
    python = python312()
    bundle = tmp_path / "bundle"
    run([REPO / "scripts" / "mwaa-bundle", bundle], cwd=tmp_path)
    assert sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()) == [
        "dags/runtime_events_daily.py", "iam-policy.json", "plugins.zip", "requirements.txt", "variables.json"]
    plugins = tmp_path / "usr-local-airflow-plugins"
    shutil.unpack_archive(bundle / "plugins.zip", plugins)
    requirements = (bundle / "requirements.txt").read_text()
    assert "--no-index" in requirements and "/usr/local/airflow/plugins" in requirements
    local = tmp_path / "requirements.txt"  # MWAA's plugins folder is here, not at /usr/local/airflow
    local.write_text(requirements.replace("/usr/local/airflow/plugins", str(plugins)))
    venv = release_venv(OLDEST, RELEASES[OLDEST], wheel, python=python)
    run([UV, "pip", "uninstall", "--quiet", "--python", venv / "bin" / "python", "runtime-events-lakehouse"])
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "-r", local],
        env={k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": "/dev/null"})
    home = tmp_path / "home"
    shutil.copytree(bundle / "dags", home / "dags")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RUNTIME_EVENTS", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    env |= {f"AIRFLOW_VAR_{k.upper()}": v.replace("<", "x").replace(">", "x").replace(" ", "-")
            for k, v in json.loads((bundle / "variables.json").read_text()).items()}
    found = json.loads(run(["python", "-c", PROBE], env, tmp_path).strip().splitlines()[-1])
    assert found == {"errors": {}, "dags": ["runtime_events_daily"]}
    versions = run(["python", "-c", "import sys, airflow; print(airflow.__version__, sys.version_info[:2])"],
                   env, tmp_path).strip()
    assert versions == f"{OLDEST} (3, 12)"
