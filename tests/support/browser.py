"""The browser of the page tests: the system's Chromium driven by Playwright.

:data:`needs_chromium` is the mark a page-test module sets as its ``pytestmark``:
without a Chromium executable its tests skip, saying so; in CI (``CI`` set, where
``.ci/run`` installs Chromium) a missing browser is an error instead.
:func:`launched_browser` starts it headless with the arguments the tests share.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, sync_playwright


def _find_chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = _find_chromium()
if CHROMIUM is None and os.environ.get("CI"):
    # .ci/run installs Chromium; in CI a missing browser is a failure, not a skip
    raise RuntimeError("CI: no Chromium for the browser tests (.ci/run should install it)")

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium executable (/usr/bin/chromium, or chromium on PATH)"
)

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def launched_browser() -> Iterator[Browser]:
    """Chromium, headless, for the block."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()
