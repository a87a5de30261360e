"""Debian's Chromium, headless, driven by Playwright: the dashboard's tests open it here.

::

    with chromium() as browser:
        page = browser.new_page()
        page.goto("http://127.0.0.1:8780/#token=…")

Playwright's own browsers are never downloaded: it drives ``/usr/bin/chromium`` (Debian's
package), as a site's machine would have it. ``--no-sandbox``: the tests run as root.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import require


@contextmanager
def chromium() -> Iterator[object]:
    binary = shutil.which("chromium")
    require(binary is not None, "Debian's chromium is not installed (apt install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=binary, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()
