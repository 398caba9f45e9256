"""The alerts page inside Airflow: a FastAPI app on the API server at ``/runtime-events/``,
behind Airflow's own login (the same JWT as the UI, from its cookie or a bearer token), and, on
Airflow 3.1+, an entry "Runtime alerts" in the UI's Browse menu that shows it. Read-only.

Airflow finds it in the plugins folder, or through the package's ``airflow.plugins`` entry point
when the wheel is installed.
"""

from __future__ import annotations

import os

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/runtime-events"


def _settings():
    """The settings as the API server sees them: the environment first, then the Variables of
    the metadata database (the API server reads it directly; task SDK calls are for tasks)."""
    from runtime_events.settings import Settings, environment_lookup

    env = environment_lookup(os.environ)

    def lookup(key: str) -> str | None:
        value = env(key)
        if value is not None:
            return value
        try:
            from airflow.models import Variable

            return Variable.get(key, default_var=None)
        except Exception:  # noqa: BLE001 - no metadata database: the defaults
            return None

    return Settings.load(lookup)


def _authenticated():
    """Airflow's own check that the caller is logged in (3.1+ names it; 3.0 has get_user)."""
    from airflow.api_fastapi.core_api import security

    if hasattr(security, "requires_authenticated"):
        return security.requires_authenticated()
    return security.get_user


def create_app():
    from fastapi import Depends, FastAPI, Query
    from fastapi.responses import HTMLResponse

    from runtime_events import alerts_page

    app = FastAPI(title="Runtime alerts", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(_authenticated())])
    def page(dt_from: str | None = Query(None, alias="from"), dt_to: str | None = Query(None, alias="to"),
             cluster: str | None = None) -> HTMLResponse:
        try:
            built = alerts_page.build(_settings(), dt_from, dt_to, cluster)
        except ValueError as exc:  # a bad setting: said on the page
            built = alerts_page.Page("", "", None, "?", message=str(exc))
        return HTMLResponse(alerts_page.render(built, action=f"{URL_PREFIX}/"),
                            headers={"Cache-Control": "no-store", "Content-Security-Policy": alerts_page.CSP})

    return app


class RuntimeEventsPlugin(AirflowPlugin):
    name = "runtime_events"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Runtime alerts"}]
    external_views = [{"name": "Runtime alerts", "href": f"{URL_PREFIX}/", "destination": "nav",
                       "category": "browse", "url_route": "runtime-alerts"}]
