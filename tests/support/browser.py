"""The browser of the page tests, and what the page-test modules share.

:data:`needs_chromium` is the mark a page-test module sets as its ``pytestmark``:
without a Chromium executable its tests skip, saying so; in CI (``CI`` set, where
``.ci/run`` installs Chromium) a missing browser is an error instead.
:func:`launched_browser` starts it headless with the arguments the tests share.

Also the page tests' fixtures (:func:`page_fixtures`: real servers, the browser and a
fresh profile of it), pages (:func:`open_page`, :func:`wait_live`, :class:`Console`,
:func:`screenshot`) and :func:`worker_thread`, a real worker beside the page.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

from relay_trio import QueueHandler, Worker
from relay_trio.broker import open_broker
from relay_trio.job import Job

from . import RedisServer, delete_prefix, running_worker
from .servers import ServerProcess


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


# -- the page tests' fixtures -------------------------------------------------------------

POLL = 0.2  # the servers' hub interval: quick updates, quick tests
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
HELP_SEEN = "localStorage.setItem('relay-trio.help-seen', '1')"
XSS = "<img src=x onerror=window.__xss=1>"


def page_fixtures(prefix_base: str, *, viewport_height: int = 1000) -> tuple[Any, Any, Any, Any]:
    """The fixtures of a page-test module, which binds them by their names::

        make_server, shared, browser, context = page_fixtures("relaytest-dash-")

    - ``make_server(*flags, port=0, prefix=None)`` starts a server of the test, under a
      prefix of its own (``prefix_base`` and a random part) unless ``prefix`` names
      one; all stop at teardown, and their keys go;
    - ``shared``: one plain server of the module, for the tests that need nothing
      special (each uses queues of its own);
    - ``browser``: the module's Chromium;
    - ``context``: a fresh profile (empty storage: the help overlay will open on the
      first visit), its viewport 1280 by ``viewport_height``.
    """

    @pytest.fixture
    def make_server(redis_server: RedisServer) -> Iterator[Callable[..., ServerProcess]]:
        started: list[ServerProcess] = []

        def make(*extra: str, port: int = 0, prefix: str | None = None) -> ServerProcess:
            prefix = prefix or prefix_base + secrets.token_hex(6)
            server = ServerProcess(redis_server.url, prefix, extra, port, POLL).start()
            started.append(server)
            return server

        yield make
        for server in started:
            server.stop()
        for prefix in {s.prefix for s in started}:
            delete_prefix(redis_server.url, prefix)

    @pytest.fixture(scope="module")
    def shared(redis_server: RedisServer) -> Iterator[ServerProcess]:
        prefix = prefix_base + secrets.token_hex(6)
        server = ServerProcess(redis_server.url, prefix, poll_interval=POLL).start()
        yield server
        server.stop()
        delete_prefix(redis_server.url, server.prefix)

    @pytest.fixture(scope="module")
    def browser() -> Iterator[Browser]:
        with launched_browser() as launched:
            yield launched

    @pytest.fixture
    def context(browser: Browser) -> Iterator[BrowserContext]:
        ctx = browser.new_context(viewport={"width": 1280, "height": viewport_height})
        ctx.set_default_timeout(8000)
        yield ctx
        ctx.close()

    return make_server, shared, browser, context


# -- pages ------------------------------------------------------------------------------------


class Console:
    """What the page logs as an error, and its uncaught exceptions."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def unexpected(self, *statuses: int) -> list[str]:
        """The errors, less Chromium's own line for a response with one of ``statuses``
        (a 404 or 409 the test asked for: the page shows it, the browser logs it)."""
        expected = tuple(f"the server responded with a status of {s}" for s in statuses)
        return [e for e in self.errors if not any(x in e for x in expected)]


def wait_live(page: Page) -> None:
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")


def open_page(
    context: BrowserContext, url: str, *, help_seen: bool = True, live: bool = True
) -> tuple[Page, Console]:
    """A new page of ``url`` and what it logs; with ``help_seen``, the help overlay
    does not open; with ``live``, once its stream is live."""
    page = context.new_page()
    console = Console(page)
    if help_seen:
        page.add_init_script(HELP_SEEN)
    page.goto(url)
    if live:
        wait_live(page)
    return page, console


def screenshot(page: Page, name: str, selector: str | None = None) -> None:
    """With ``RELAY_SCREENSHOTS=1``, ``docs/screenshots/<name>.png``: the element
    ``selector`` (a card of the page), or without one the whole page, once the charts
    have a few more snapshots."""
    if os.environ.get("RELAY_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = str(SCREENSHOTS / f"{name}.png")
        if selector is None:
            page.wait_for_timeout(1500)  # a few more snapshots in the charts
            page.screenshot(path=path)
        else:
            page.locator(selector).screenshot(path=path)


# -- a worker beside the page -----------------------------------------------------------------


@contextmanager
def worker_thread(
    server: ServerProcess,
    queue_name: str,
    started: threading.Event,
    *,
    concurrency: int | None = None,
    **config: Any,
) -> Iterator[Worker]:
    """A real worker on ``queue_name`` whose handler sets ``started`` and runs until the
    worker stops, in a thread with a Trio loop of its own; yields the worker. On exit it
    stops (and leaves the registry). ``concurrency``: its handler's, if not the default;
    ``config``: :func:`running_worker`'s."""
    handed: queue.Queue[Any] = queue.Queue()
    options = {} if concurrency is None else {"concurrency": concurrency}

    async def forever(job: Job) -> None:
        started.set()
        await trio.sleep_forever()

    async def main() -> None:
        stop = trio.Event()
        async with (
            open_broker(server.redis_url, prefix=server.prefix) as broker,
            running_worker(
                broker, [QueueHandler(queue_name, forever, **options)], **config
            ) as worker,
        ):
            handed.put((trio.lowlevel.current_trio_token(), stop, worker))
            await stop.wait()

    failure: list[BaseException] = []

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:
            failure.append(exc)
            handed.put(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    got = handed.get(timeout=30)
    if isinstance(got, BaseException):
        raise got
    token, stop, worker = got
    assert isinstance(worker, Worker)
    try:
        yield worker
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(timeout=15)
        assert not thread.is_alive(), "the worker did not stop"
        if failure:
            raise failure[0]
