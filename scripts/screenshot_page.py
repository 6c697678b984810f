"""Screenshot of the search page for the README: serve INDEX, type QUERY, wait for thumbnails.

    .venv/bin/python scripts/screenshot_page.py .demo/index "a cat" docs/images/serve-page.png
"""

from __future__ import annotations

import shutil
import sys
import threading

import uvicorn
from playwright.sync_api import sync_playwright

from itr.server import create_app
from itr.server.loadgen import wait_for_server
from itr.service import IndexService


def main(index: str, query: str, out: str) -> None:
    service = IndexService.open(index, read_only=True)
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=8765, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    wait_for_server("http://127.0.0.1:8765")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        page.goto("http://127.0.0.1:8765/")
        page.wait_for_function("document.querySelector('#info').textContent.includes('images')")
        page.fill("#q", query)
        page.wait_for_function("(n) => { const i = [...document.querySelectorAll('#results .card img')];"
                               " return i.length >= n && i.slice(0, n).every((x) => x.complete && x.naturalWidth); }",
                               arg=12, timeout=30_000)
        page.screenshot(path=out)
        browser.close()
    server.should_exit = True
    service.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
