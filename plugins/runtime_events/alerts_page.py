"""The alerts page: what the aggregates and the load audit say, for a range of days and a cluster.

One page, three ways to see it: inside Airflow's UI (the plugin, Airflow 3.1+), from
``runtime-events serve`` (any Airflow, or none), and as one self-contained HTML file from
``runtime-events report``. The charts are inline SVG drawn here, with no script or style from the
network, so the file opens anywhere. Each bar carries its number (``data-value``) and the page
carries the data behind every chart (``<script type="application/json" id="page-data">``), so a
test (or a person) can check what is drawn against the tables.

It reads only the small aggregate tables and the load audit, through the configured engine, one
query per chart, and says what those queries scanned (and cost, on Athena). Empty tables or an
engine that cannot be reached give a message on the page, never an error page. Read-only: it runs
SELECT statements only, built here from validated dates and a cluster id passed as a literal.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from pathlib import Path
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

from runtime_events import costs, results
from runtime_events.settings import Settings

log = logging.getLogger(__name__)

SEVERITIES = ("Critical", "High", "Medium", "Low", "Info", "Unknown")
COLOURS = {"Critical": "#7f1d1d", "High": "#dc2626", "Medium": "#f59e0b", "Low": "#3b82f6", "Info": "#94a3b8",
           "Unknown": "#d4d4d8", "loaded": "#16a34a", "duplicates": "#a3a3a3", "rejected": "#dc2626",
           "bar": "#2563eb"}
TOP = 10
DEFAULT_DAYS = 14
# What the page may load: nothing from anywhere; its own inline style and script; its form.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
       "form-action 'self'; frame-ancestors 'self'")


class PageError(ValueError):
    """A request the page cannot answer (bad dates, bad cluster id): said on the page."""


@dataclass
class Chart:
    id: str
    title: str
    kind: str  # "stacked" (x: day, series), or "bars" (one bar per label)
    series: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # stacked: {"x", <series>: n}; bars: {"label", "value", ...}
    note: str = ""


@dataclass
class Page:
    dt_from: str
    dt_to: str
    cluster: str | None
    engine: str
    database: str = ""
    clusters: list[str] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    message: str | None = None  # why the charts are empty or missing
    error: bool = False  # the message is a failure (bad request, unreadable tables), not "no alerts"
    scanned_bytes: int = 0
    estimated_cost_usd: float = 0.0
    queries: int = 0

    def as_json(self) -> str:
        return json.dumps(asdict(self), default=str, sort_keys=True)


# -- reading ------------------------------------------------------------------------------------
def parse_range(dt_from: str | None, dt_to: str | None, latest: str | None) -> tuple[str, str]:
    """The days asked for, YYYY-MM-DD; by default the :data:`DEFAULT_DAYS` up to the latest day
    published (or today)."""
    for value in (dt_from, dt_to):
        if value and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            raise PageError(f"dates are YYYY-MM-DD: from={dt_from!r} to={dt_to!r}")
    try:
        end = date.fromisoformat(dt_to) if dt_to else date.fromisoformat(latest) if latest else date.today()
        start = date.fromisoformat(dt_from) if dt_from else end - timedelta(days=DEFAULT_DAYS - 1)
    except (ValueError, OverflowError):
        raise PageError(f"dates are YYYY-MM-DD, from 0001-01-14 on: from={dt_from!r} to={dt_to!r}") from None
    if start > end:
        raise PageError(f"from {start} is after to {end}")
    if (end - start).days > 366:
        raise PageError(f"at most 367 days at a time: from {start} to {end}")
    return start.isoformat(), end.isoformat()


def _literal(value: str) -> str:
    if "\x00" in value or len(value) > 1024:
        raise PageError("a cluster id is at most 1024 characters, without NUL")
    return "'" + value.replace("'", "''") + "'"


class Reader:
    """Runs the page's SELECTs on the configured engine and adds up what they scanned."""

    def __init__(self, settings: Settings, hook=None) -> None:
        from runtime_events.engines import backend

        self.settings = settings
        self.hook = hook or backend(settings).query_hook(log_query=False)
        self.scanned = 0
        self.billed = 0
        self.queries = 0

    def rows(self, sql: str) -> list[dict]:
        settings, hook = self.settings, self.hook
        query_id = hook.run_query(sql, {"Database": settings.database, "Catalog": "AwsDataCatalog"},
                                  settings.result_configuration(), None, settings.athena_workgroup)
        state = hook.poll_query_status(query_id, sleep_time=1)
        info = hook.get_query_info(query_id)["QueryExecution"]
        scanned = int(info.get("Statistics", {}).get("DataScannedInBytes", 0))
        self.queries += 1
        self.scanned += scanned
        self.billed += costs.billed_bytes(info.get("StatementType"), scanned)
        if state != "SUCCEEDED":
            raise RuntimeError(hook.get_state_change_reason(query_id) or state)
        pages, token = [], None
        while True:
            page = hook.get_query_results(query_id, next_token_id=token, max_results=1000)
            pages.append(page)
            token = page.get("NextToken")
            if not token:
                self._forget(query_id)
                return list(results.iter_rows(pages))

    def _forget(self, query_id: str) -> None:
        """The embedded engine keeps each result under _query_results/ (as Athena keeps them in its
        output location): a page view's are its own, so they go once read, and page views do not
        fill the disk. (On Athena, the workgroup's lifecycle rule ages them out.)"""
        folder = getattr(self.hook, "results_dir", None)
        if isinstance(folder, Path):
            for suffix in (".json", ".parquet"):
                (folder / f"{query_id}{suffix}").unlink(missing_ok=True)


def build(settings: Settings, dt_from: str | None = None, dt_to: str | None = None, cluster: str | None = None,
          reader: Reader | None = None) -> Page:
    """The page for the days and the cluster asked for (``None``: every cluster)."""
    cluster = cluster or None
    page = Page(dt_from=dt_from or "", dt_to=dt_to or "", cluster=cluster, engine=settings.engine,
                database=settings.database)
    try:
        reader = reader or Reader(settings)
        db = settings.database
        latest = None if (dt_from and dt_to) else reader.rows(
            f"SELECT max(dt) AS dt FROM {db}.daily_severity_counts")[0]["dt"]
        page.dt_from, page.dt_to = parse_range(dt_from, dt_to, latest)
        where = f"dt BETWEEN '{page.dt_from}' AND '{page.dt_to}'"
        scoped = where + (f" AND cluster_id = {_literal(cluster)}" if cluster else "")
        page.clusters = [r["cluster_id"] for r in reader.rows(
            f"SELECT DISTINCT cluster_id FROM {db}.daily_severity_counts WHERE {where} ORDER BY 1")
            if r["cluster_id"] is not None]
        page.charts = _charts(reader, db, scoped, where, page)
    except PageError as exc:
        page.message, page.error = str(exc), True
    except Exception as exc:  # noqa: BLE001 - the page says what went wrong instead of failing
        log.warning("alerts page: the tables could not be read: %s", exc)
        hint = " Has a run published them yet?" if "not exist" in str(exc) or "not found" in str(exc).lower() else ""
        page.message, page.error = f"The tables could not be read ({type(exc).__name__}: {exc}).{hint}", True
    if reader is not None:
        page.scanned_bytes, page.queries = reader.scanned, reader.queries
        page.estimated_cost_usd = reader.billed / costs.TB * costs.USD_PER_TB
    if page.message is None and not any(_has_data(c) for c in page.charts if c.id != "load-health"):
        page.message = (f"No alerts from {page.dt_from} to {page.dt_to}"
                        + (f" in cluster {cluster}" if cluster else "") + ".")
    return page


def _charts(reader: Reader, db: str, scoped: str, where: str, page: Page) -> list[Chart]:
    severity = Chart("alerts-by-severity", "Alerts per day by severity", "stacked", list(SEVERITIES))
    by_day: dict[str, dict] = {}
    for r in reader.rows(f"SELECT dt, severity, sum(event_count) AS alerts FROM {db}.daily_severity_counts "
                         f"WHERE {scoped} GROUP BY dt, severity"):
        row = by_day.setdefault(r["dt"], {"x": r["dt"], **dict.fromkeys(SEVERITIES, 0)})
        row[r["severity"] if r["severity"] in SEVERITIES else "Unknown"] += int(r["alerts"])
    severity.rows = [by_day.get(d, {"x": d, **dict.fromkeys(SEVERITIES, 0)}) for d in _days(page)]

    def top(chart_id: str, title: str, sql: str, label, extra=()) -> Chart:
        chart = Chart(chart_id, title, "bars")
        for r in reader.rows(sql):
            chart.rows.append({"label": label(r), "value": int(r["alerts"]), **{k: r[k] for k in extra}})
        return chart

    rules = top("top-rules", "Top rules", f"SELECT rule_name, sum(event_count) AS alerts FROM {db}.daily_rule_counts "
                f"WHERE {scoped} GROUP BY rule_name ORDER BY alerts DESC, rule_name LIMIT {TOP}",
                lambda r: r["rule_name"])
    workloads = top(
        "top-workloads", "Top workloads",
        f"SELECT cluster_id, namespace, pod_name, sum(event_count) AS alerts, sum(high_severity_count) AS high "
        f"FROM {db}.daily_workload_counts WHERE {scoped} GROUP BY cluster_id, namespace, pod_name "
        f"ORDER BY alerts DESC, cluster_id, namespace, pod_name LIMIT {TOP}",
        lambda r: f"{r['namespace'] or '-'}/{r['pod_name'] or '-'}", extra=("cluster_id", "high"))
    cves = top("cves", "CVEs", f"SELECT cve_id, sum(event_count) AS alerts FROM {db}.daily_cve_counts "
               f"WHERE {scoped} GROUP BY cve_id ORDER BY alerts DESC, cve_id LIMIT {TOP}", lambda r: r["cve_id"])
    techniques = top(
        "attack-techniques", "MITRE ATT&CK techniques",
        f"SELECT technique_id, technique_name, sum(event_count) AS alerts FROM {db}.daily_attack_counts "
        f"WHERE {scoped} GROUP BY technique_id, technique_name ORDER BY alerts DESC, technique_id LIMIT {TOP}",
        lambda r: f"{r['technique_id']} {r['technique_name']}")
    health = Chart("load-health", "Pipeline health: lines per day (latest run of each day)", "stacked",
                   ["loaded", "duplicates", "rejected"], note="every cluster: the load audit is kept per day")
    audited = {}
    for r in reader.rows(
            f"SELECT dt, max_by(alerts_loaded, run_token) AS loaded, max_by(duplicates_dropped, run_token) AS duplicates, "
            f"max_by(lines_rejected, run_token) AS rejected FROM {db}.runtime_events_load_audit "
            f"WHERE {where} GROUP BY dt ORDER BY dt"):
        audited[r["dt"]] = {"x": r["dt"], "loaded": int(r["loaded"]), "duplicates": int(r["duplicates"]),
                            "rejected": int(r["rejected"])}
    health.rows = [audited[d] for d in _days(page) if d in audited]
    return [severity, rules, workloads, cves, techniques, health]


def _has_data(chart: Chart) -> bool:
    if chart.kind == "stacked":
        return any(row[s] for row in chart.rows for s in chart.series)
    return bool(chart.rows)


def _days(page: Page) -> list[str]:
    start, end = date.fromisoformat(page.dt_from), date.fromisoformat(page.dt_to)
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


# -- drawing ------------------------------------------------------------------------------------
def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _stacked_svg(chart: Chart) -> str:
    width, height, left, bottom, top_pad = 760, 260, 48, 40, 10
    if not _has_data(chart):
        return '<p class="empty">No data for these days.</p>'
    totals = [sum(r[s] for s in chart.series) for r in chart.rows]
    peak = max(max(totals), 1)
    slot = (width - left - 10) / len(chart.rows)
    bar = max(min(slot * 0.7, 48), 2)
    scale = (height - bottom - top_pad) / peak
    parts = [f'<svg class="plot" viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(chart.title)}">']
    for tick in _ticks(peak):
        y = height - bottom - tick * scale
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{tick:,}</text>')
    for i, row in enumerate(chart.rows):
        x, y = left + i * slot + (slot - bar) / 2, height - bottom
        for series in chart.series:
            value = row[series]
            if not value:
                continue
            h = value * scale
            y -= h
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{COLOURS[series]}" data-x="{_esc(row["x"])}" data-series="{_esc(series)}" '
                         f'data-value="{value}"><title>{_esc(row["x"])} {_esc(series)}: {value:,}</title></rect>')
        if len(chart.rows) <= 16 or i % math.ceil(len(chart.rows) / 16) == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 16}" class="tick" '
                         f'text-anchor="middle">{_esc(row["x"][5:])}</text>')
    parts.append("</svg>")
    legend = "".join(f'<span class="key"><i style="background:{COLOURS[s]}"></i>{_esc(s)}</span>' for s in chart.series)
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def _bars_svg(chart: Chart) -> str:
    if not chart.rows:
        return '<p class="empty">No data for these days.</p>'
    width, label_w, row_h = 760, 330, 24
    height = row_h * len(chart.rows) + 8
    peak = max(max(r["value"] for r in chart.rows), 1)
    scale = (width - label_w - 70) / peak
    parts = [f'<svg class="plot" viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(chart.title)}">']
    for i, row in enumerate(chart.rows):
        y, w = 4 + i * row_h, max(row["value"] * scale, 1)
        label = row["label"] if len(row["label"]) <= 46 else row["label"][:45] + "…"
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" class="label" text-anchor="end">{_esc(label)}'
                     f'<title>{_esc(_describe(row))}</title></text>'
                     f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
                     f'fill="{COLOURS["bar"]}" data-label="{_esc(row["label"])}" data-value="{row["value"]}">'
                     f'<title>{_esc(_describe(row))}: {row["value"]:,}</title></rect>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" class="tick">{row["value"]:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _describe(row: dict) -> str:
    """A bar's whole label, with what else its row knows (a workload's cluster, its high alerts)."""
    extra = [f"cluster {row['cluster_id']}" if "cluster_id" in row else "",
             f"{row['high']:,} Critical or High" if row.get("high") is not None else ""]
    return " · ".join([row["label"], *filter(None, extra)])


def _ticks(peak: int) -> list[int]:
    step = 10 ** max(len(str(peak)) - 1, 0)
    for factor in (1, 2, 5, 10):
        if peak / (step * factor) <= 5:
            step *= factor
            break
    return list(range(0, peak + 1, step))


STYLE = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#18181b;background:#fafafa}
header{padding:14px 24px;background:#18181b;color:#fafafa}header h1{margin:0;font-size:18px}
header p{margin:4px 0 0;color:#a1a1aa}main{padding:16px 24px;display:grid;gap:16px;
grid-template-columns:repeat(auto-fit,minmax(560px,1fr))}form{padding:12px 24px;background:#fff;
border-bottom:1px solid #e4e4e7;display:flex;gap:12px;align-items:end;flex-wrap:wrap}
label{display:flex;flex-direction:column;font-size:12px;color:#52525b}input,select,button{font:inherit;padding:4px 6px}
section.chart{background:#fff;border:1px solid #e4e4e7;border-radius:8px;padding:12px 16px}
section.chart h2{font-size:15px;margin:0 0 8px}svg.plot{width:100%;height:auto}
.grid{stroke:#e4e4e7}.tick{font-size:11px;fill:#52525b}.label{font-size:12px;fill:#27272a}
.legend{display:flex;gap:12px;flex-wrap:wrap;font-size:12px}.key i{display:inline-block;width:10px;height:10px;
margin-right:4px;border-radius:2px}.message{margin:16px 24px;padding:12px 16px;border-radius:8px;
background:#fef3c7;border:1px solid #f59e0b}.note{font-size:12px;color:#71717a;margin:4px 0 0}
footer{padding:8px 24px 24px;color:#71717a;font-size:12px}.empty{color:#71717a}
rect.bar:hover{opacity:.8}
"""

# The only script: keeps the form's cluster choice and marks the page as drawn (no network).
SCRIPT = """
var cluster = document.getElementById('cluster');
if (cluster) { cluster.addEventListener('change', function () { this.form.submit(); }); }
document.body.dataset.drawn = String(document.querySelectorAll('rect.bar').length);
"""


def render(page: Page, action: str = "") -> str:
    """The whole page as one HTML document; ``action`` is where the form goes ("" for a file:
    the form is then left out, a report being a snapshot)."""
    scope = (f"{page.dt_from} to {page.dt_to}" if page.dt_from else "no days") + (
        f", cluster {page.cluster}" if page.cluster else ", every cluster")
    form = ""
    if action:
        options = "".join(f'<option value="{_esc(c)}"{" selected" if c == page.cluster else ""}>{_esc(c)}</option>'
                          for c in page.clusters)
        form = (f'<form method="get" action="{_esc(action)}"><label>From<input type="date" name="from" '
                f'value="{_esc(page.dt_from)}"></label><label>To<input type="date" name="to" value="{_esc(page.dt_to)}">'
                f'</label><label>Cluster<select id="cluster" name="cluster"><option value="">every cluster</option>'
                f'{options}</select></label><button type="submit">Show</button></form>')
    message = f'<div class="message" role="status">{_esc(page.message)}</div>' if page.message else ""
    sections = []
    for chart in page.charts:
        body = _stacked_svg(chart) if chart.kind == "stacked" else _bars_svg(chart)
        note = f'<p class="note">{_esc(chart.note)}</p>' if chart.note else ""
        sections.append(f'<section class="chart" id="{chart.id}" data-kind="{chart.kind}"><h2>{_esc(chart.title)}</h2>'
                        f"{body}{note}</section>")
    cost = (f"{page.queries} quer{'y' if page.queries == 1 else 'ies'} scanned {page.scanned_bytes / 1e6:,.2f} MB"
            + (f", about ${page.estimated_cost_usd:.4f} at ${costs.USD_PER_TB:.0f} per TB (10 MB minimum a query)"
               if page.engine == "athena" else " on the embedded engine"))
    data = page.as_json().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>Runtime alerts: {_esc(scope)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>Runtime alerts</h1><p>{_esc(scope)}; database {_esc(page.database)}, "
        f"read through the {_esc(page.engine)} engine</p></header>{form}{message}"
        f"<main>{''.join(sections)}</main><footer>{_esc(cost)}. Read-only: the aggregate tables and the load "
        "audit.</footer>"
        f'<script type="application/json" id="page-data">{data}</script><script>{SCRIPT}</script></body></html>')
