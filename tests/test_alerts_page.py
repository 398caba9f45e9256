"""The alerts page (issue 14), looked at in a real headless Chromium as a person would.

A lake is built from the test fixtures (Panoptica's and Falco's alerts, ``raw_format=auto``);
the numbers every chart should show are computed here from the raw files by tests/oracle.py with
pandas, never from the page's own queries. The page is checked three ways: the report file
(``runtime-events report``), the page of ``runtime-events serve`` for one cluster, and the page
inside Airflow (the plugin on the API server, test_alerts_page_in_airflow below); each time the
bars drawn carry exactly the expected numbers, the page logs nothing to the console, and a
screenshot is kept under test-artifacts/screenshots/.
"""

from __future__ import annotations

import html
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

import oracle
from alert_fixtures import write_falco_alerts, write_nasty_alerts
from browser import Charts, look
from local_pipeline import Pipeline, make_settings

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
TOP = 10


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alerts-page")
    write_nasty_alerts(tmp / "raw", DAYS)
    write_falco_alerts(tmp / "raw" / "falco", DAYS)
    Pipeline(make_settings(tmp, raw_format="auto")).run_day(DAYS[-1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_VAR_RUNTIME_EVENTS_")} | {
        "AIRFLOW_VAR_RUNTIME_EVENTS_RAW_LOCATION": str(tmp / "raw"),
        "AIRFLOW_VAR_RUNTIME_EVENTS_CURATED_LOCATION": str(tmp / "curated"),
        "AIRFLOW_VAR_RUNTIME_EVENTS_RAW_FORMAT": "auto",
        "AIRFLOW_VAR_RUNTIME_EVENTS_REJECT_THRESHOLD": "0.5",
        "RUNTIME_EVENTS_SKIP_AIRFLOW_VARIABLES": "1"}
    return tmp, env


def expected(tmp: Path, cluster: str | None = None) -> dict[str, object]:
    """What each chart must show, from the oracle's reading of the raw files."""
    tables = oracle.expected_tables(tmp / "raw", DAYS, "auto")
    alerts = tables["runtime_events_parquet"]
    attack = tables["daily_attack_counts"]
    if cluster is not None:
        alerts, attack = alerts[alerts["cluster_id"] == cluster], attack[attack["cluster_id"] == cluster]
    rows = alerts.to_dict("records")
    severity = Counter((r["dt"], r["severity"]) for r in rows)
    workloads = Counter(f"{r['namespace'] or '-'}/{r['pod_name'] or '-'}" for r in rows)
    # a workload's label drops its cluster: the same namespace/pod in two clusters is two bars
    per_cluster = Counter((r["cluster_id"], r["namespace"], r["pod_name"]) for r in rows)
    techniques = Counter()
    for r in attack.to_dict("records"):
        techniques[f"{r['technique_id']} {r['technique_name']}"] += r["event_count"]
    counts = oracle.expected_counts(tmp / "raw", "auto").set_index("dt")
    return {
        "alerts-by-severity": {(dt, s, n) for (dt, s), n in severity.items()},
        "top-rules": Counter(r["rule_name"] for r in rows),
        "top-workloads": (workloads, per_cluster),
        "cves": Counter(c for r in rows for c in r["related_cves"]),
        "attack-techniques": techniques,
        "load-health": {(dt, kind, int(n)) for dt in DAYS for kind, n in (
            ("loaded", counts.loc[dt, "loaded"]), ("duplicates", counts.loc[dt, "duplicate"]),
            ("rejected", sum(counts.loc[dt, c] for c in counts.columns if c.startswith("rejected_"))))
            if n},
    }


def check_charts(dom: str, want: dict) -> Charts:
    charts = Charts(dom)
    assert list(charts.charts) == ["alerts-by-severity", "top-rules", "top-workloads", "cves",
                                   "attack-techniques", "load-health"]
    for chart in ("alerts-by-severity", "load-health"):
        assert {(b["x"], b["series"], int(b["value"])) for b in charts.charts[chart]} == want[chart], chart
    for chart in ("top-rules", "cves", "attack-techniques"):
        bars = [(b["label"], int(b["value"])) for b in charts.charts[chart]]
        ranked = sorted(want[chart].values(), reverse=True)[:TOP]
        assert [v for _, v in bars] == ranked, chart  # the largest, largest first
        assert all(want[chart][label] == value for label, value in bars), chart
    workloads, per_cluster = want["top-workloads"]
    bars = [(b["label"], int(b["value"])) for b in charts.charts["top-workloads"]]
    assert [v for _, v in bars] == sorted(per_cluster.values(), reverse=True)[:TOP]
    assert all(value <= workloads[label] for label, value in bars)
    assert charts.body.get("data-drawn") == str(sum(len(b) for b in charts.charts.values()))  # the script ran
    return charts


def test_the_report_file_draws_the_aggregates(lake, tmp_path):
    tmp, env = lake
    out = tmp_path / "shared" / "report.html"
    done = subprocess.run([str(BIN / "runtime-events"), "report", "--from", DAYS[0], "--to", DAYS[-1], "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"{out}: {DAYS[0]} to {DAYS[-1]}"
    text = out.read_text()
    # self-contained: nothing to fetch (no src= or href= to anywhere, no @import, no url())
    assert "src=" not in text and "href=" not in text and "@import" not in text and "url(" not in text
    dom, console = look(out.as_uri(), screenshot="report.png")
    assert console == []
    check_charts(dom, expected(tmp))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_serve_draws_one_clusters_charts_and_is_read_only(lake):
    tmp, env = lake
    port = free_port()
    server = subprocess.Popen([str(BIN / "runtime-events"), "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz")
        cluster = sorted(oracle.expected_tables(tmp / "raw", DAYS, "auto")["runtime_events_parquet"]["cluster_id"])[0]
        from urllib.parse import quote

        url = f"http://127.0.0.1:{port}/?from={DAYS[0]}&to={DAYS[-1]}&cluster={quote(cluster)}"
        dom, console = look(url, screenshot="serve-one-cluster.png")
        assert console == []
        check_charts(dom, expected(tmp, cluster) | {"load-health": expected(tmp)["load-health"]})
        import re

        selected = re.findall(r'<option value="([^"]*)" selected', dom)
        assert [html.unescape(v) for v in selected] == [cluster]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize(("query", "message"), [
    ("from=2026-03-09&to=2026-03-01", "from 2026-03-09 is after to 2026-03-01"),
    ("from=yesterday", "dates are YYYY-MM-DD"),
    (f"from={DAYS[0]}&to={DAYS[-1]}&cluster=no-such-cluster", "No alerts from 2026-03-01 to 2026-03-03 in cluster no-such-cluster"),
])
def test_a_question_the_page_cannot_answer_is_a_message_not_an_error_page(lake, query, message):
    _, env = lake
    from runtime_events import alerts_page
    from runtime_events.settings import Settings
    from urllib.parse import parse_qs

    values = {k.removeprefix("AIRFLOW_VAR_").lower(): v for k, v in env.items() if k.startswith("AIRFLOW_VAR_")}
    settings = Settings.load(lambda key: values.get(key))
    asked = {k: v[0] for k, v in parse_qs(query).items()}
    page = alerts_page.build(settings, asked.get("from"), asked.get("to"), asked.get("cluster"))
    assert page.message and message in page.message
    assert Charts(alerts_page.render(page)).messages[0].startswith(message.split(" ")[0])


def test_a_lake_without_tables_says_so(tmp_path):
    from runtime_events import alerts_page

    (tmp_path / "raw").mkdir()
    page = alerts_page.build(make_settings(tmp_path), DAYS[0], DAYS[-1])
    assert page.message.startswith("The tables could not be read") and "Has a run published them yet?" in page.message
    charts = Charts(alerts_page.render(page))
    assert charts.charts == {} and charts.messages


@pytest.mark.slow
def test_alerts_page_in_airflow(lake, tmp_path):
    """The plugin's page on Airflow's API server: listed as a Browse view, behind Airflow's own
    login (a bad token is refused exactly as Airflow's own API refuses it), drawing the charts."""
    tmp, env = lake
    from airflow_env import airflow_env

    port = free_port()
    home = airflow_env(tmp_path / "airflow", {"raw_location": tmp / "raw", "curated_location": tmp / "curated",
                                               "raw_format": "auto", "reject_threshold": "0.5"})
    home["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "true"
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=home, cwd=tmp_path, check=True, capture_output=True)
    server = subprocess.Popen([str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port)],
                              env=home, cwd=tmp_path, stdout=open(tmp_path / "api-server.log", "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/api/v2/monitor/health", 240)
        import json

        with urllib.request.urlopen(f"{base}/api/v2/plugins", timeout=30) as answer:
            plugins = json.load(answer)["plugins"]
        (plugin,) = [p for p in plugins if p["name"] == "runtime_events"]
        view = plugin["external_views"][0]
        assert {k: view[k] for k in ("href", "destination", "url_route", "category")} == {
            "href": "/runtime-events/", "destination": "nav", "url_route": "runtime-alerts", "category": "browse"}
        for path in ("/runtime-events/", "/api/v2/dags"):
            bad = urllib.request.Request(base + path, headers={"Authorization": "Bearer not-a-token"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(bad, timeout=30)
            assert refused.value.code == 403, path
        dom, console = look(f"{base}/runtime-events/?from={DAYS[0]}&to={DAYS[-1]}", screenshot="airflow-alerts-page.png")
        assert console == []
        check_charts(dom, expected(tmp))
        look(f"{base}/plugin/runtime-alerts", screenshot="airflow-ui-runtime-alerts.png")
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_a_hostile_cluster_id_is_only_text_and_the_page_still_draws(tmp_path):
    """A cluster id is data from the alerts: `<!--<script>` in the page's embedded data used to
    make the browser swallow the rest of the page."""
    from runtime_events import alerts_page

    page = alerts_page.Page(DAYS[0], DAYS[0], None, "duckdb", "db",
                            clusters=["<!--<script>", "</script><img src=x onerror=alert(1)>", "x' OR '1'='1"])
    out = tmp_path / "hostile.html"
    out.write_text(alerts_page.render(page, action="/"))
    dom, console = look(out.as_uri())
    assert console == []
    charts = Charts(dom)
    assert charts.body.get("data-drawn") == "0"  # the script ran to its end
    assert "<img" not in dom.split("</form>")[0].split("<form")[1]  # the ids are option text, not markup


def test_page_views_leave_no_query_results_behind(lake):
    tmp, env = lake
    from runtime_events import alerts_page
    from runtime_events.settings import Settings

    values = {k.removeprefix("AIRFLOW_VAR_").lower(): v for k, v in env.items() if k.startswith("AIRFLOW_VAR_")}
    results = tmp / "curated" / "_query_results"
    before = set(results.iterdir())
    page = alerts_page.build(Settings.load(lambda key: values.get(key)), DAYS[0], DAYS[-1])
    assert page.queries == 7 and page.message is None
    assert set(results.iterdir()) == before


def test_the_report_command_fails_when_the_page_holds_only_an_error(lake, tmp_path):
    _, env = lake
    report = [str(BIN / "runtime-events"), "report", "--out"]
    done = subprocess.run([*report, str(tmp_path / "r.html"), "--from", DAYS[-1], "--to", DAYS[0]], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and f"from {DAYS[-1]} is after to {DAYS[0]}" in done.stdout
    (tmp_path / "a-folder").mkdir()
    done = subprocess.run([*report, str(tmp_path / "a-folder")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "cannot write the report" in done.stderr and "Traceback" not in done.stderr
