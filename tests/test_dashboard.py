"""The dashboard in a real browser: Playwright (sync API) driving Debian's Chromium.

Each test drives a real ``relay-trio server`` subprocess on the test Redis, under
a key prefix of its own, and makes jobs move with the broker (``claim`` and
``ack``/``nack`` from the test). ``playwright install`` is never needed: the
browser is the system's Chromium (``/usr/bin/chromium`` or ``chromium`` on PATH);
without one the module is skipped.

``RELAY_SCREENSHOTS=1`` also saves the main states to ``docs/screenshots/``.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import trio
from playwright.sync_api import Browser, BrowserContext, expect
from support import make_dead
from support.browser import (
    HELP_SEEN,
    POLL,
    XSS,
    Console,
    needs_chromium,
    open_page,
    page_fixtures,
    screenshot,
    wait_live,
)
from support.servers import ServerProcess

from relay_trio.broker import Broker

pytestmark = needs_chromium

make_server, shared, browser, context = page_fixtures("relaytest-dash-", viewport_height=900)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def dead_letter(broker: Broker, queue: str, payload: str, error: str) -> Awaitable[list[str]]:
    """One job in the DLQ of ``queue``, 1 attempt of 1, with ``payload`` and ``error``."""
    return make_dead(broker, queue, 1, payload=payload, error=error, max_retries=1)


# -- tests ---------------------------------------------------------------------------------


def test_overview_loads_clean_and_tiles_follow_the_jobs(
    context: BrowserContext, shared: ServerProcess
) -> None:
    queue = "tiles"
    shared.broker(lambda b: b.enqueue_many(queue, [b.spec(f"job {i}") for i in range(5)]))
    page, console = open_page(context, f"{shared.url}/#queue={queue}")
    expect(page.locator("#queue-title")).to_have_text(queue)
    expect(page.locator("#t-ready")).to_have_text("5")
    expect(page.locator(f'#queue-list li[data-queue="{queue}"] .q-count-n')).to_have_text("5")

    claimed = shared.broker(lambda b: b.claim(queue, 2))
    expect(page.locator("#t-inflight")).to_have_text("2")
    expect(page.locator("#t-ready")).to_have_text("3")
    shared.broker(lambda b: b.ack_many(claimed.jobs))
    expect(page.locator("#t-inflight")).to_have_text("0")
    expect(page.locator("#t-processed")).to_have_text("2")

    async def traffic(broker: Broker) -> None:  # some throughput for the charts
        for round_ in range(12):
            await broker.enqueue_many(queue, [broker.spec("x") for _ in range(10 + round_)])
            await broker.ack_many((await broker.claim(queue, 8 + round_)).jobs)
            await trio.sleep(POLL)

    shared.broker(traffic)
    expect(page.locator("#t-rate")).not_to_have_text("0/s")
    expect(page.locator("#t-processed")).not_to_have_text("2")
    # the charts are uPlot canvases with data in them
    assert page.locator("#depth-chart canvas").count() == 1
    assert page.locator("#rate-chart canvas").count() == 1
    assert page.evaluate("document.querySelectorAll('.uplot').length") == 2
    screenshot(page, "overview")

    page.get_by_role("button", name="Pause").click()
    item = page.locator(f'#queue-list li[data-queue="{queue}"]')
    expect(item.locator(".badge-paused")).to_be_visible()
    expect(page.locator("#queue-sub")).to_contain_text("Paused")
    assert shared.broker(lambda b: b.claim(queue)).paused
    page.get_by_role("button", name="Resume").click()
    expect(item.locator(".badge-paused")).to_be_hidden()
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    assert console.errors == []


def test_dead_job_shows_in_the_dlq_table_and_requeue_removes_it(
    context: BrowserContext, shared: ServerProcess
) -> None:
    queue = "dlq-demo"
    ada = '{"to": "ada@example.com"}'
    (first,) = shared.broker(lambda b: dead_letter(b, queue, ada, "timeout"))
    (second,) = shared.broker(lambda b: dead_letter(b, queue, "report 7", "KeyError: 'x'"))
    page = context.new_page()
    dlq_requests: list[str] = []
    page.on("request", lambda r: dlq_requests.append(r.url) if "state=dead" in r.url else None)
    page.add_init_script(HELP_SEEN)
    page.goto(f"{shared.url}/#queue={queue}")
    rows = page.locator("#dlq-body tr")
    expect(rows).to_have_count(2)
    row = page.locator(f'#dlq-body tr[data-id="{first}"]')
    expect(row.locator("td").nth(1)).to_have_text("1/1")
    expect(row.locator("td.err")).to_have_text("timeout")
    expect(row.locator("td.payload")).to_have_text('{"to": "ada@example.com"}')
    expect(row.locator("td.age")).to_have_text(re.compile(r"^\d+s$"))
    expect(page.locator("#t-dlq")).to_have_text("2")
    screenshot(page, "dlq")

    # the DLQ page is fetched when the queue's DLQ changes, not on every snapshot
    # (waiting through Playwright, which delivers the page's request events meanwhile)
    page.wait_for_timeout(6 * POLL * 1000)
    assert len(dlq_requests) == 1, dlq_requests

    page.get_by_role("button", name=f"Requeue job {first}").click()
    expect(rows).to_have_count(1)
    expect(page.locator(f'#dlq-body tr[data-id="{second}"]')).to_have_count(1)
    expect(page.locator("#t-dlq")).to_have_text("1")
    expect(page.locator("#t-ready")).to_have_text("1")
    expect(page.locator("#notice")).to_contain_text("Requeued job")
    job = shared.broker(lambda b: b.get_job(queue, first))
    assert job.state.value == "ready" and job.attempts == 0

    page.get_by_role("button", name="Purge").click()  # asks first
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text(f"Delete all 1 dead jobs of {queue}")
    page.keyboard.press("Escape")
    expect(confirm).to_be_hidden()
    expect(rows).to_have_count(1)
    page.get_by_role("button", name="Purge").click()
    confirm.get_by_role("button", name="Purge").click()
    expect(rows).to_have_count(0)
    expect(page.locator("#dlq-empty")).to_be_visible()
    expect(page.locator("#t-dlq")).to_have_text("0")


def test_payloads_and_errors_are_text_and_run_nothing(
    context: BrowserContext, shared: ServerProcess
) -> None:
    queue = "xss"
    shared.broker(lambda b: dead_letter(b, queue, XSS, "<b onmouseover=window.__xss=2>boom</b>"))
    page, _ = open_page(context, f"{shared.url}/#queue={queue}", live=False)
    expect(page.locator("#dlq-body tr")).to_have_count(1)
    expect(page.locator("#dlq-body td.payload")).to_have_text(XSS)
    expect(page.locator("#dlq-body td.err")).to_have_text("<b onmouseover=window.__xss=2>boom</b>")
    assert page.locator("#dlq-body img").count() == 0
    assert page.locator("#dlq-body b").count() == 0
    page.locator("#dlq-body td.err").hover()
    assert page.evaluate("window.__xss") is None


def test_enqueue_form_reports_a_duplicate_idempotency_key(
    context: BrowserContext, shared: ServerProcess
) -> None:
    page, _ = open_page(context, shared.url)
    page.get_by_label("Queue", exact=True).fill("form-q")
    page.get_by_label("Payload").fill("hello")
    page.get_by_label("Idempotency key").fill("order-1")
    result = page.locator("#enqueue-result")
    page.get_by_role("button", name="Enqueue", exact=True).click()
    expect(result).to_have_text(re.compile(r"^Enqueued job [0-9a-f]{8} \(ready\)$"))
    page.get_by_role("button", name="Enqueue", exact=True).click()
    expect(result).to_have_text(re.compile(r"^409 · idempotency key 'order-1' already names job"))
    expect(result).to_have_class(re.compile(r"\berror\b"))

    page.get_by_label("Idempotency key").fill("")
    page.get_by_label("Count").fill("3")
    page.get_by_label("Priority").fill("9")
    page.get_by_role("button", name="Enqueue", exact=True).click()
    expect(result).to_have_text("Enqueued 3 jobs (ready)")
    page.get_by_label("Priority").fill("300")  # refused by the page, before any request
    page.get_by_role("button", name="Enqueue", exact=True).click()
    expect(result).to_have_text("Priority must be between 0 and 255")
    stats = shared.broker(lambda b: b.stats("form-q"))
    assert stats.ready == 4


def test_two_pages_add_no_redis_load(
    browser: Browser, shared: ServerProcess, rdb: redis.Redis
) -> None:
    """The hub polls once per tick whoever watches: Redis commands per poll and per
    second are the same with one page and with two."""

    def just_after_a_poll() -> tuple[float, int, float]:
        """Polls so far, Redis commands so far, and the time, read right after a poll
        ended: both ends of a measurement at the same phase of the hub's tick."""
        before = shared.metric("relay_hub_polls_total")
        while (polls := shared.metric("relay_hub_polls_total")) == before:
            time.sleep(0.005)
        return polls, int(rdb.info("stats")["total_commands_processed"]), time.monotonic()

    def measure(seconds: float = 2.0) -> tuple[float, float]:
        polls0, cmds0, t0 = just_after_a_poll()
        time.sleep(seconds)
        polls1, cmds1, t1 = just_after_a_poll()
        commands = cmds1 - cmds0 - 1  # less our own first INFO
        return commands / (polls1 - polls0), commands / (t1 - t0)

    def wait_subscribers(count: int) -> None:
        """``count`` pages stream, all through the broadcaster: one hub subscriber."""
        deadline = time.monotonic() + 5
        while shared.metric("relay_stream_fast_path_streams") != count:
            assert time.monotonic() < deadline, f"never {count} stream(s)"
            time.sleep(POLL)
        assert shared.metric("relay_hub_subscribers") == 1

    shared.broker(lambda b: b.enqueue_many("load", [b.spec("x") for _ in range(3)]))
    contexts = [browser.new_context() for _ in range(2)]
    try:
        open_page(contexts[0], shared.url)
        wait_subscribers(1)  # pages of earlier tests have left the hub
        per_poll_1, rate_1 = measure()
        open_page(contexts[1], shared.url)
        wait_subscribers(2)
        per_poll_2, rate_2 = measure()
    finally:
        for ctx in contexts:
            ctx.close()
    assert per_poll_1 > 0
    assert abs(per_poll_2 - per_poll_1) <= 0.1 * per_poll_1, (per_poll_1, per_poll_2)
    assert abs(rate_2 - rate_1) <= 0.1 * rate_1, (rate_1, rate_2)


def test_help_opens_on_first_visit_closes_with_escape_and_reopens(
    context: BrowserContext, shared: ServerProcess
) -> None:
    page, _ = open_page(context, shared.url, help_seen=False, live=False)
    dialog = page.locator("#help")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("at-least-once", ignore_case=True)
    in_dialog = "document.getElementById('help').contains(document.activeElement)"
    assert page.evaluate(in_dialog)
    for _ in range(6):  # focus is trapped in the dialog
        page.keyboard.press("Tab")
        assert page.evaluate(in_dialog)
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(in_dialog)
    screenshot(page, "help")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    page.reload()  # seen once: not opened again
    wait_live(page)
    expect(dialog).to_be_hidden()
    opener = page.get_by_role("button", name="Help: how a job moves")
    opener.click()
    expect(dialog).to_be_visible()
    assert page.evaluate(in_dialog)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.activeElement.id") == "help-open"
    page.locator("body").press("?")  # the keyboard shortcut
    expect(dialog).to_be_visible()
    page.get_by_role("button", name="Got it").click()
    expect(dialog).to_be_hidden()


def test_reconnecting_when_the_server_goes_and_live_when_it_returns(
    context: BrowserContext, make_server: Callable[..., ServerProcess]
) -> None:
    port = free_port()
    server = make_server(port=port)
    server.broker(lambda b: b.enqueue("comeback", "x"))
    page, _ = open_page(context, f"{server.url}/#queue=comeback")
    expect(page.locator("#t-ready")).to_have_text("1")
    server.kill()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#conn-label")).to_have_text("Reconnecting…")
    screenshot(page, "reconnecting")
    server.broker(lambda b: b.enqueue("comeback", "y"))
    make_server(port=port, prefix=server.prefix)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=12_000)
    expect(page.locator("#t-ready")).to_have_text("2")


def test_read_only_mode_hides_changes_and_shows_a_403(
    context: BrowserContext, make_server: Callable[..., ServerProcess]
) -> None:
    server = make_server("--read-only")
    server.broker(lambda b: dead_letter(b, "ro", "payload", "err"))
    page, _ = open_page(context, f"{server.url}/#queue=ro")
    expect(page.locator("#readonly-badge")).to_be_visible()
    expect(page.locator("#dlq-body tr")).to_have_count(1)
    for selector in (
        "#enqueue-card",
        "#pause-btn",
        "#dlq-requeue-all",
        "#dlq-purge",
        "#dlq-body .actions",
    ):
        expect(page.locator(selector)).to_be_hidden()
    # should a change be sent anyway, the server's refusal is shown
    page.evaluate("document.getElementById('pause-btn').click()")
    expect(page.locator("#notice")).to_contain_text("403 · the server is read-only")


def test_auth_mode_asks_for_the_token_once(
    context: BrowserContext, make_server: Callable[..., ServerProcess]
) -> None:
    token = "s3cret-" + secrets.token_hex(4)
    server = make_server("--api-token", token)
    server.broker(lambda b: b.enqueue("guarded", "x"))
    page, _ = open_page(context, f"{server.url}/#queue=guarded", live=False)
    prompt = page.locator("#token-dialog")
    expect(prompt).to_be_visible()
    page.get_by_label("Token", exact=True).fill("wrong")
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#token-error")).to_have_text("That token was refused. Try again.")
    page.get_by_label("Token", exact=True).fill(token)
    page.get_by_role("button", name="Connect").click()
    expect(prompt).to_be_hidden()
    wait_live(page)
    expect(page.locator("#t-ready")).to_have_text("1")
    assert page.evaluate("sessionStorage.getItem('relay-trio.token')") == token

    page.get_by_label("Payload").fill("with a token")
    page.get_by_role("button", name="Enqueue", exact=True).click()
    expect(page.locator("#enqueue-result")).to_have_text(re.compile(r"^Enqueued job"))
    expect(page.locator("#t-ready")).to_have_text("2")

    page.reload()  # the token is kept for the tab: no new prompt
    wait_live(page)
    expect(prompt).to_be_hidden()


def test_auth_mode_streams_with_one_time_tickets_and_never_puts_the_token_in_a_url(
    context: BrowserContext, make_server: Callable[..., ServerProcess]
) -> None:
    token = "tökén-✓-" + secrets.token_hex(4)  # any text: sent as its UTF-8 bytes
    port = free_port()
    server = make_server("--api-token", token, port=port)
    server.broker(lambda b: b.enqueue("tickets", "x"))
    page = context.new_page()
    console = Console(page)
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.add_init_script(HELP_SEEN)
    page.goto(f"{server.url}/#queue=tickets")
    page.get_by_label("Token", exact=True).fill(token)
    page.get_by_role("button", name="Connect").click()
    wait_live(page)
    expect(page.locator("#t-ready")).to_have_text("1")

    # the server goes and comes back: a spent ticket is never sent again, a fresh one is
    server.kill()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    server.broker(lambda b: b.enqueue("tickets", "y"))
    make_server("--api-token", token, port=port, prefix=server.prefix)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=12_000)
    expect(page.locator("#t-ready")).to_have_text("2")
    page.reload()  # the token is kept for the tab: a new ticket, no new prompt
    wait_live(page)

    streams = [url for url in urls if urlsplit(url).path == "/api/stream"]
    tickets = [parse_qs(urlsplit(url).query)["ticket"][0] for url in streams]
    assert len(tickets) >= 3 and len(set(tickets)) == len(tickets), streams
    assert not any(token in unquote(url) for url in urls), urls
    assert not any("access_token" in url for url in urls), urls
    uncaught = [e for e in console.errors if e.startswith("uncaught")]
    assert uncaught == []  # (a 401, a cut stream: logged)
