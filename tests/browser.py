"""A real headless Chromium (Debian's package; scripts/env.sh installs it) for looking at pages
as a person would: the DOM after the page's scripts ran, what it logged to the console, and a
screenshot kept under test-artifacts/screenshots/ (README, "The alerts page")."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
_CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)$", re.MULTILINE)


def _run(url: str, action: list[str], size: tuple[int, int]) -> subprocess.CompletedProcess:
    assert CHROMIUM, "Chromium is missing: scripts/env.sh installs Debian's chromium (see .venv/chromium-install.log)"
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", f"--window-size={size[0]},{size[1]}",
             "--virtual-time-budget=10000", *action, url],
            capture_output=True, text=True, timeout=120)


def look(url: str, screenshot: str | None = None, size: tuple[int, int] = (1400, 1900)) -> tuple[str, list[str]]:
    """The page's DOM once drawn, and every console message it logged; with ``screenshot``, also
    a PNG of it at ``test-artifacts/screenshots/<screenshot>``."""
    done = _run(url, ["--dump-dom"], size)
    assert done.returncode == 0, done.stderr[-2000:]
    if screenshot:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = _run(url, [f"--screenshot={SCREENSHOTS / screenshot}"], size)
        assert shot.returncode == 0 and (SCREENSHOTS / screenshot).stat().st_size > 10_000, shot.stderr[-2000:]
    return done.stdout, _CONSOLE.findall(done.stderr)


class Charts(HTMLParser):
    """The bars of each chart section of the alerts page, in drawing order, with their data."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.charts: dict[str, list[dict]] = {}
        self.messages: list[str] = []
        self.body: dict[str, str] = {}
        self._section: str | None = None
        self._in_message = False
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        if tag == "section" and "chart" in (attrs.get("class") or ""):
            self._section = attrs["id"]
            self.charts[self._section] = []
        if tag == "rect" and "bar" in (attrs.get("class") or "").split() and self._section:
            self.charts[self._section].append({k.removeprefix("data-"): v for k, v in attrs.items()
                                               if k.startswith("data-")})
        if tag == "div" and attrs.get("class") == "message":
            self._in_message = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None
        if tag == "div":
            self._in_message = False

    def handle_data(self, data: str) -> None:
        if self._in_message and data.strip():
            self.messages.append(data.strip())
