"""``runtime-events serve``: the alerts page over HTTP, for an Airflow without plugin views (3.0)
or none at all. Standard library only; read-only (GET and HEAD); it has no login of its own,
so it listens on 127.0.0.1 unless told otherwise (put it behind your own proxy to share it).
Inside Airflow 3.1+ the same page is the plugin's, behind Airflow's login (airflow_plugin.py).
"""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from runtime_events import alerts_page
from runtime_events.settings import Settings

log = logging.getLogger(__name__)


def make_server(load_settings, host: str = "127.0.0.1", port: int = 8793) -> ThreadingHTTPServer:
    """A server of the page; ``load_settings`` is called for each request, so a changed setting
    applies to the next page without a restart."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "runtime-events"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._answer(head=False)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(head=True)

        def _refuse(self) -> None:
            self.send_response(405)
            self.send_header("Allow", "GET, HEAD")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

        def _answer(self, head: bool) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/healthz":
                self._send(200, "text/plain; charset=utf-8", b"ok\n", head)
                return
            if parts.path not in ("/", "/index.html"):
                self._send(404, "text/plain; charset=utf-8", b"not found: the page is at /\n", head)
                return
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            try:
                settings: Settings = load_settings()
                page = alerts_page.build(settings, query.get("from"), query.get("to"), query.get("cluster"))
            except ValueError as exc:  # a bad setting: said on the page
                page = alerts_page.Page("", "", None, "?", message=str(exc))
            body = alerts_page.render(page, action="/").encode("utf-8")
            self._send(200, "text/html; charset=utf-8", body, head)

        def _send(self, status: int, kind: str, body: bytes, head: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", alerts_page.CSP)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def log_message(self, form: str, *args) -> None:
            log.info("%s %s", self.address_string(), form % args)

    return ThreadingHTTPServer((host, port), Handler)
