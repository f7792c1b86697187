"""Real-browser tests: Debian's headless Chromium driven by Playwright's
sync API. ``playwright install`` is never run (it downloads a browser build
of its own, which this project's machines cannot fetch): Playwright launches
``/usr/bin/chromium`` from the Debian package ``chromium``, which
``scripts/debian-packages.txt`` lists with the fonts screenshots need.

One browser per test::

    with desktop_page() as page:      # 1280x800
        page.goto(url)
    with phone_page() as page:        # 390x844, touch, honours <meta viewport>
        ...

or one browser for many tests (a module- or session-scoped fixture), each
test still getting a fresh context (no cookies or storage carried over)::

    with Chromium() as chromium, chromium.page() as page: ...

``screenshot(page, name, tmp_path)`` saves a full-page PNG into the
directory named by the environment variable ``GATEWAY_SCREENSHOTS`` when it
is set (created if missing; read when this module is imported, so the
``clean_env`` fixture, which drops GATEWAY_* variables, does not hide it),
else into ``tmp_path/screenshots`` (pytest's per-test temp directory)::

    GATEWAY_SCREENSHOTS=/tmp/shots .venv/bin/pytest tests/integration/test_browser_smoke.py

Without Chromium the test is skipped with the reason (not root) or fails
(root, where ``make test`` installs it): ``privileges.require_tool``. As
root Chromium's sandbox cannot start, so ``--no-sandbox`` is passed then,
and only then."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Playwright, ViewportSize, sync_playwright
from privileges import require_tool

SCREENSHOTS_ENV = "GATEWAY_SCREENSHOTS"
_SCREENSHOTS = os.environ.get(SCREENSHOTS_ENV) or None   # read at import: see the docstring

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}      # a current mid-size phone, in CSS pixels

TIMEOUT_MS = 10_000   # for every wait and action; Playwright's 30 s default only slows a failure down


def chromium_args() -> list[str]:
    """Flags for Chromium: no sandbox as root (it refuses to start there
    otherwise); /tmp instead of /dev/shm, which is 64 MiB in many containers."""
    args = ["--disable-dev-shm-usage"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


class Chromium:
    """``with Chromium() as chromium:`` one headless browser;
    ``chromium.page()`` / ``chromium.phone_page()`` a fresh context each."""

    def __init__(self) -> None:
        self.executable = require_tool("chromium")   # /usr/bin/chromium
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    def __enter__(self) -> Chromium:
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.executable, headless=True, args=chromium_args())
        except BaseException:
            self._playwright.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._browser is not None:
                self._browser.close()
        finally:
            self._browser = None
            if self._playwright is not None:
                self._playwright.stop()
                self._playwright = None

    @property
    def browser(self) -> Browser:
        assert self._browser is not None, "use `with Chromium() as chromium:`"
        return self._browser

    @contextmanager
    def page(self, viewport: ViewportSize = DESKTOP, **context_options: Any) -> Iterator[Page]:
        """A page in a new browser context (its own cookies and storage).
        ``context_options`` go to ``Browser.new_context`` (locale, ...)."""
        options: dict[str, Any] = {"locale": "en-US", "timezone_id": "UTC"}
        options.update(context_options)
        context = self.browser.new_context(viewport=viewport, **options)
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()

    @contextmanager
    def phone_page(self, viewport: ViewportSize = PHONE, **context_options: Any) -> Iterator[Page]:
        """A page as on a phone: narrow viewport, touch, <meta viewport> honoured."""
        options: dict[str, Any] = {"is_mobile": True, "has_touch": True, "device_scale_factor": 2}
        options.update(context_options)
        with self.page(viewport, **options) as page:
            yield page


@contextmanager
def desktop_page(**context_options: Any) -> Iterator[Page]:
    """A fresh browser with one desktop-sized page (1280x800)."""
    with Chromium() as chromium, chromium.page(**context_options) as page:
        yield page


@contextmanager
def phone_page(**context_options: Any) -> Iterator[Page]:
    """A fresh browser with one phone-sized page (390x844)."""
    with Chromium() as chromium, chromium.phone_page(**context_options) as page:
        yield page


def screenshot(page: Page, name: str, tmp_path: Path | None = None) -> Path:
    """Save a full-page PNG of ``page`` as ``name``(.png) in $GATEWAY_SCREENSHOTS,
    else in ``tmp_path/screenshots``; return its path."""
    if _SCREENSHOTS is not None:
        directory = Path(_SCREENSHOTS)
    elif tmp_path is not None:
        directory = tmp_path / "screenshots"
    else:
        raise ValueError(f"screenshot({name!r}): pass tmp_path or set {SCREENSHOTS_ENV}")
    directory.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.removesuffix(".png")).strip("._") or "page"
    path = directory / f"{stem}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
