# Sourced by the other scripts: the repo's virtualenv and an Airflow home inside the repo.
# Installs what is missing (Python 3.11 venv, pinned packages), so a fresh clone needs nothing else.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO
PYTHON="${PYTHON:-python3.11}"

if [ ! -x "$REPO/.venv/bin/python" ]; then
    echo "==> creating $REPO/.venv with $PYTHON"
    "$PYTHON" -m venv "$REPO/.venv"
fi
if [ ! -f "$REPO/.venv/.installed" ] || [ "$REPO/pyproject.toml" -nt "$REPO/.venv/.installed" ] \
        || [ "$REPO/constraints.txt" -nt "$REPO/.venv/.installed" ]; then
    echo "==> installing pinned packages into .venv (first time: about a minute)"
    "$REPO/.venv/bin/python" -m pip install --quiet --disable-pip-version-check uv==0.13.8
    "$REPO/.venv/bin/uv" pip install --quiet --python "$REPO/.venv/bin/python" \
        --constraint "$REPO/constraints.txt" --editable "$REPO[embedded,deferrable,test]"
    touch "$REPO/.venv/.installed"
fi

# The browser tests (alerts page, report) look at pages in a real headless Chromium: Debian's
# package, installed once when missing (root or password-less sudo; else the tests say so).
if [ -z "${RUNTIME_EVENTS_NO_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Debian's chromium for the browser tests"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    { $SUDO apt-get install -y -q chromium || { $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium; }; } \
        >"$REPO/.venv/chromium-install.log" 2>&1 \
        || echo "    could not install chromium (see .venv/chromium-install.log): the browser tests will fail"
fi

export PATH="$REPO/.venv/bin:$PATH"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$REPO/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$REPO/dags}"
export AIRFLOW__CORE__PLUGINS_FOLDER="${AIRFLOW__CORE__PLUGINS_FOLDER:-$REPO/plugins}"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__UNIT_TEST_MODE=False
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-INFO}"
export NO_PROXY='*'
mkdir -p "$AIRFLOW_HOME"
if [ ! -f "$AIRFLOW_HOME/airflow.db" ]; then
    echo "==> creating the Airflow metadata database in $AIRFLOW_HOME"
    airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
fi
