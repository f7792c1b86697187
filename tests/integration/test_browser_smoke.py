"""The browser harness itself (tests/browser.py): Debian's Chromium, driven
by Playwright, loads a page from a real local HTTP server, submits a GET
form and gets the answer, on a desktop and a phone viewport, and saves
screenshots (look at them: real glyphs, not boxes, means the fonts are
there)."""

from __future__ import annotations

import html
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from browser import DESKTOP, PHONE, Chromium, screenshot
from netutil import free_port

GREETING = "Servicedesk portal — Grüße, ticket №42"

FORM_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Smoke</title>
<style>body {{ font-family: sans-serif; margin: 2rem; }} input, button {{ font-size: 1.2rem; }}</style>
</head><body>
<h1>{html.escape(GREETING)}</h1>
<p>The quick brown fox jumps over the lazy dog. 0123456789</p>
<form action="/search" method="get">
  <label for="q">Search tickets</label>
  <input id="q" name="q">
  <button type="submit">Search</button>
</form>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/":
            body = FORM_PAGE
        elif url.path == "/search":
            query = parse_qs(url.query).get("q", [""])[0]
            body = (f'<!doctype html><html><head><meta charset="utf-8"><title>Results</title></head>'
                    f'<body><p id="result">You searched for: {html.escape(query)}</p></body></html>')
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass   # no request log on stderr


@pytest.fixture
def site() -> Iterator[str]:
    """The base URL of a stdlib HTTP server on 127.0.0.1, in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_page_text_form_round_trip_and_screenshots(site: str, tmp_path: Path) -> None:
    with Chromium() as chromium:
        with chromium.page() as page:
            page.goto(site + "/")
            assert page.title() == "Smoke"
            assert page.locator("h1").inner_text() == GREETING
            shot = screenshot(page, "smoke-desktop", tmp_path)

            page.get_by_label("Search tickets").fill("printer on fire & <b>")
            page.get_by_role("button", name="Search").click()
            page.wait_for_url("**/search?*")
            assert urlsplit(page.url).query == "q=printer+on+fire+%26+%3Cb%3E"
            assert page.locator("#result").inner_text() == "You searched for: printer on fire & <b>"
        width, height = png_size(shot)
        assert width == DESKTOP["width"] and height >= 200

        with chromium.phone_page() as page:
            page.goto(site + "/")
            assert page.evaluate("window.innerWidth") == PHONE["width"]
            assert page.locator("h1").inner_text() == GREETING
            phone_shot = screenshot(page, "smoke-phone", tmp_path)
        width, _ = png_size(phone_shot)
        assert width == PHONE["width"] * 2   # device_scale_factor 2
