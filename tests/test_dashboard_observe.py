"""The dashboard's workers panel and job lists in a real browser (Playwright driving the
system's Chromium, as ``test_dashboard.py`` does; without one the module is skipped).

Each test drives a real ``relay-trio server`` subprocess on the test Redis under a key
prefix of its own. The workers tests run a real :class:`~relay_trio.Worker` (in a thread
with a Trio loop of its own), which registers itself and beats, and register made-up
workers with :meth:`Broker.beat_worker`; each has a server of its own (the registry is
per prefix). ``RELAY_SCREENSHOTS=1`` also saves ``docs/screenshots/workers.png`` and
``jobs.png``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from playwright.sync_api import BrowserContext, Page, Request, expect
from support import make_dead
from support.browser import (
    HELP_SEEN,
    XSS,
    Console,
    needs_chromium,
    open_page,
    page_fixtures,
    screenshot,
    wait_live,
    worker_thread,
)
from support.servers import ServerProcess

from relay_trio.broker import Broker
from relay_trio.job import JobState

pytestmark = needs_chromium

make_server, shared, browser, context = page_fixtures("relaytest-dashobs-")


def list_requests(page: Page) -> list[str]:
    """The URLs of the job list requests the page makes from now on."""
    urls: list[str] = []

    def on_request(request: Request) -> None:
        if re.search(r"/api/queues/[^/]+/jobs\?", request.url):
            urls.append(request.url)

    page.on("request", on_request)
    return urls


def shown(first: int, last: int, total: int) -> str:
    """What the job list's pager says: "51 to 100 of 120", with an en dash."""
    return f"{first}\u2013{last} of {total}"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the workers panel -------------------------------------------------------------------


def test_the_workers_panel_shows_a_real_worker_with_its_running_job_until_it_leaves(
    context: BrowserContext, make_server: Callable[..., ServerProcess]
) -> None:
    server = make_server()
    q = "emails"
    started_at = datetime.now(UTC) - timedelta(hours=2, minutes=5)
    other = {
        "host": "batch-7.internal",
        "pid": 4242,
        "queues": ["reports", q],
        "concurrency": {"reports": 4, q: 8},
        "running": [],
        "running_count": 0,
        "started_at": iso(started_at),
        "version": "0.9.0",
    }
    server.broker(lambda b: b.beat_worker("batch-7.internal:4242:abcd", other, 60_000))
    server.broker(lambda b: b.enqueue("reports", "r"))  # another queue (sorted first)
    job_id = server.broker(lambda b: b.enqueue(q, "runs until the worker stops")).id
    page, console = open_page(context, f"{server.url}/#queue={q}")
    card = page.locator("#workers-card")
    card.scroll_into_view_if_needed()
    rows = page.locator("#workers-body tr")
    expect(rows).to_have_count(1)
    expect(page.locator("#workers-summary")).to_have_text("· 1 live")
    batch = page.locator('#workers-body tr[data-id="batch-7.internal:4242:abcd"]')
    expect(batch.locator(".host-name")).to_have_text("batch-7.internal")
    expect(batch.locator("td.pid")).to_have_text("4242")
    expect(batch.locator("td.concurrency")).to_have_text(f"reports 4 · {q} 8")
    expect(batch.locator("td.running")).to_have_text("0 of 12")
    expect(batch.locator("td.uptime")).to_have_text(re.compile(r"^2h 5m$"))
    expect(batch.locator("td.seen")).to_have_text(re.compile(r"^(now|\d+ s ago)$"))
    expect(batch.locator(".chip")).to_have_text(["reports", q])
    expect(batch.locator(".chip-on")).to_have_text(q)  # the selected queue stands out

    started = threading.Event()
    with worker_thread(
        server, q, started, concurrency=2, grace_period=0.2, presence_interval=0.3
    ) as worker:
        assert started.wait(10), "the worker never started the job"
        expect(rows).to_have_count(2)
        expect(page.locator("#t-workers")).to_have_text("2")  # from the stream
        row = page.locator(f'#workers-body tr[data-id="{worker.id}"]')
        expect(row.locator(".host-name")).to_have_text(socket.gethostname())
        expect(row.locator("td.pid")).to_have_text(str(os.getpid()))
        expect(row.locator(".chip")).to_have_text([q])
        expect(row.locator("td.concurrency")).to_have_text("2")
        expect(row.locator(".run-count")).to_have_text("1 of 2")
        link = row.get_by_role("button", name=f"Open running job {job_id}")
        expect(link).to_have_text(job_id[:8])
        expect(row.locator("td.uptime")).to_have_text(re.compile(r"^\d+s$"))
        expect(row.locator("td.seen")).to_have_text(re.compile(r"^(now|[1-3] s ago)$"))
        expect(page.locator("#workers-empty")).to_be_hidden()
        screenshot(page, "workers", "#workers-card")

        link.click()  # the running job opens in the job view
        expect(page.locator("#job-state")).to_have_text("inflight")
        expect(page.locator("#job-full-id")).to_have_text(job_id)
        card.scroll_into_view_if_needed()

        # the other one stops beating: it is gone once its TTL passes
        server.broker(lambda b: b.beat_worker("batch-7.internal:4242:abcd", other, 500))
        expect(batch).to_have_count(0)
        expect(rows).to_have_count(1)
        expect(page.locator("#t-workers")).to_have_text("1")

    # the real worker stopped and left the registry: the panel drops it
    expect(rows).to_have_count(0)
    expect(page.locator("#workers-table")).to_be_hidden()
    expect(page.locator("#workers-empty")).to_be_visible()
    expect(page.locator("#workers-empty")).to_contain_text("No live workers")
    expect(page.locator("#workers-summary")).to_have_text("· 0 live")
    expect(page.locator("#t-workers")).to_have_text("0")
    expect(page.locator("#t-workers-note")).to_have_text("none: its jobs wait")  # released
    assert server.broker(lambda b: b.get_job(q, job_id)).state is JobState.READY
    assert console.errors == []


def test_the_workers_panel_reads_only_while_on_screen_and_shows_text(
    context: BrowserContext, make_server: Callable[..., ServerProcess]
) -> None:
    """Workers are not in the stream: the page reads ``/api/workers`` every few seconds
    while the panel is seen, and not while it is scrolled away. What a worker says of
    itself is text, never markup."""
    server = make_server()
    info = {
        "host": XSS,
        "pid": 1,
        "queues": [XSS],
        "concurrency": {XSS: 1},
        "running": [{"queue": "q", "id": "0" * 32, "started_at": None}],
        "running_count": 1,
        "started_at": iso(datetime.now(UTC)),
    }
    server.broker(lambda b: b.beat_worker("w1", info, 60_000))
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 600})  # the panel is below the fold
    console = Console(page)
    reads: list[float] = []
    page.on(
        "request", lambda r: reads.append(time.monotonic()) if "/api/workers" in r.url else None
    )
    page.add_init_script(HELP_SEEN)
    page.goto(server.url)
    wait_live(page)
    page.locator("#workers-card").scroll_into_view_if_needed()
    expect(page.locator("#workers-body .host-name")).to_have_text(XSS)
    expect(page.locator("#workers-body .chip")).to_have_text(XSS)
    expect(page.locator("#workers-body td.concurrency")).to_have_text("1")
    assert page.locator("#workers-body img").count() == 0
    assert page.evaluate("window.__xss") is None

    seen = len(reads)
    # (wait_for_timeout, not time.sleep: Playwright delivers the page's events to the
    # listener only while one of its calls runs)
    page.wait_for_timeout(5000)  # refreshed while on screen (every 3 s)
    assert len(reads) > seen, reads
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(500)
    away = len(reads)
    page.wait_for_timeout(5000)  # and not while scrolled away
    assert len(reads) == away, reads
    assert console.errors == []


# -- job lists --------------------------------------------------------------------------


def test_job_lists_page_through_120_ready_jobs(
    context: BrowserContext, shared: ServerProcess
) -> None:
    q = "lists-ready"
    shared.broker(lambda b: b.enqueue_many(q, [b.spec(f"job-{i:03}") for i in range(120)]))
    page, console = open_page(context, f"{shared.url}/#queue={q}")
    requests = list_requests(page)
    tab = page.get_by_role("tab", name=re.compile(r"^Ready"))
    expect(tab).to_have_attribute("aria-selected", "true")  # no dead jobs: ready first
    expect(tab.locator(".tab-count")).to_have_text("120")
    rows = page.locator("#jobs-body tr")
    payloads = page.locator("#jobs-body td.payload")
    summary = page.locator("#jobs-summary")
    expect(rows).to_have_count(50)
    expect(summary).to_have_text(shown(1, 50, 120))
    expect(payloads.first).to_have_text("job-000")  # claim order: oldest first
    expect(payloads.last).to_have_text("job-049")
    previous = page.get_by_role("button", name="Previous")
    following = page.get_by_role("button", name="Next")
    expect(previous).to_be_disabled()

    following.click()
    expect(summary).to_have_text(shown(51, 100, 120))
    expect(rows).to_have_count(50)
    expect(payloads.first).to_have_text("job-050")
    expect(payloads.last).to_have_text("job-099")
    following.click()
    expect(summary).to_have_text(shown(101, 120, 120))
    expect(rows).to_have_count(20)
    expect(payloads.first).to_have_text("job-100")
    expect(payloads.last).to_have_text("job-119")
    expect(following).to_be_disabled()
    previous.click()
    expect(summary).to_have_text(shown(51, 100, 120))
    expect(payloads.first).to_have_text("job-050")
    assert any("state=ready&limit=51&offset=100" in url for url in requests), requests

    # a job that leaves the list (claimed) leaves the page too, without a click
    previous.click()
    expect(payloads.first).to_have_text("job-000")
    shared.broker(lambda b: b.claim(q, 3))
    expect(payloads.first).to_have_text("job-003")
    expect(summary).to_have_text(shown(1, 50, 117))
    inflight = page.get_by_role("tab", name=re.compile(r"^In flight"))
    expect(inflight.locator(".tab-count")).to_have_text("3")
    inflight.click()
    expect(page.locator("#jobs-body tr")).to_have_count(3)
    expect(page.locator("#jobs-when-h")).to_have_text("Lease ends")
    expect(page.locator("#jobs-body td.when-at").first).to_have_text(re.compile(r"^in \d+ s$"))
    expect(page.locator("#jobs-body td.num").nth(0)).to_have_text("1/5")  # attempts
    assert "tab=inflight" in page.url  # a link to this list
    assert console.errors == []


def test_the_dead_letter_tab_pages_beyond_50_and_its_actions_work(
    context: BrowserContext, shared: ServerProcess
) -> None:
    q = "lists-dead"
    ids = shared.broker(lambda b: make_dead(b, q, 60, error="boom {id}", payload="dead-{}"))
    page, console = open_page(context, f"{shared.url}/#queue={q}")
    tab = page.get_by_role("tab", name=re.compile(r"^Dead-letter"))
    expect(tab).to_have_attribute("aria-selected", "true")  # a queue with dead jobs shows them
    expect(tab.locator(".tab-count")).to_have_text("60")
    rows = page.locator("#dlq-body tr")
    summary = page.locator("#jobs-summary")
    expect(rows).to_have_count(50)
    expect(summary).to_have_text(shown(1, 50, 60))
    expect(page.locator("#jobs-when-h")).to_have_text("Dead since")
    page.get_by_role("button", name="Next").click()
    expect(summary).to_have_text(shown(51, 60, 60))
    expect(rows).to_have_count(10)
    last = page.locator(f'#dlq-body tr[data-id="{ids[59]}"]')
    expect(last.locator("td.payload")).to_have_text("dead-59")
    expect(last.locator("td.err")).to_have_text(f"boom {ids[59]}")

    # the DLQ's actions on a later page: one job requeued, one deleted, then all requeued
    page.get_by_role("button", name=f"Requeue job {ids[59]}").click()
    expect(rows).to_have_count(9)
    expect(page.locator("#notice")).to_contain_text("Requeued job")
    expect(page.locator("#t-dlq")).to_have_text("59")
    page.get_by_role("button", name=f"Delete job {ids[58]}").click()
    expect(rows).to_have_count(8)
    expect(page.locator("#t-dlq")).to_have_text("58")
    expect(summary).to_have_text(shown(51, 58, 58))
    page.get_by_role("button", name="Requeue all").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_contain_text(f"Move all 58 dead jobs of {q} back to ready")
    confirm.get_by_role("button", name="Requeue all").click()
    expect(rows).to_have_count(0)
    expect(page.locator("#dlq-empty")).to_be_visible()
    expect(page.locator("#t-dlq")).to_have_text("0")
    expect(page.locator("#t-ready")).to_have_text("59")
    expect(page.get_by_role("button", name="Purge")).to_be_disabled()
    stats = shared.broker(lambda b: b.stats(q))
    assert (stats.ready, stats.dlq) == (59, 0)
    assert console.errors == []


def test_a_done_job_opens_from_the_done_tab_with_its_result(
    context: BrowserContext, shared: ServerProcess
) -> None:
    q = "lists-done"

    async def setup(b: Broker) -> tuple[str, str, str]:
        done = (await b.enqueue(q, json.dumps({"a": 2, "b": 3}))).id
        (claimed,) = (await b.claim(q)).jobs
        await b.ack(claimed, {"sum": 5})
        cancelled = (await b.enqueue(q, "not needed")).id
        await b.cancel(q, cancelled)
        delayed = (await b.enqueue(q, "later", delay_ms=120_000)).id
        return done, cancelled, delayed

    done, cancelled, delayed = shared.broker(setup)
    page, console = open_page(context, f"{shared.url}/#queue={q}&tab=done")  # a link to a tab
    tab = page.get_by_role("tab", name=re.compile(r"^Done"))
    expect(tab).to_have_attribute("aria-selected", "true")
    row = page.locator(f'#jobs-body tr[data-id="{done}"]')
    expect(page.locator("#jobs-body tr")).to_have_count(1)
    expect(row.locator("td.result-preview")).to_have_text('{ "sum": 5 }')
    expect(row.locator("td.when-at")).to_have_text(re.compile(r"^(now|\d+ s ago)$"))
    expect(page.locator("#jobs-when-h")).to_have_text("Finished")
    expect(row.locator("td.payload")).to_have_text('{"a": 2, "b": 3}')
    expect(page.locator("#jobs-summary")).to_have_text(shown(1, 1, 1))

    row.get_by_role("button", name=f"Open job {done}").click()
    expect(page.locator("#job-state")).to_have_text("done")
    expect(page.locator("#job-full-id")).to_have_text(done)
    expect(page.locator("#job-result")).to_have_text('{\n  "sum": 5\n}')
    expect(page.locator("#job-payload")).to_have_text('{\n  "a": 2,\n  "b": 3\n}')
    expect(row).to_have_class(re.compile(r"\bis-open\b"))  # the open job's row is marked

    page.get_by_role("tab", name=re.compile(r"^Cancelled")).click()
    expect(page.locator("#jobs-body tr")).to_have_count(1)
    expect(page.locator(f'#jobs-body tr[data-id="{cancelled}"] td.payload')).to_have_text(
        "not needed"
    )
    # the arrow keys move between the tabs
    page.get_by_role("tab", name=re.compile(r"^Cancelled")).press("ArrowLeft")
    expect(tab).to_have_attribute("aria-selected", "true")
    expect(tab).to_be_focused()
    page.get_by_role("tab", name=re.compile(r"^Delayed")).click()
    expect(page.locator("#jobs-when-h")).to_have_text("Ready")
    when = page.locator(f'#jobs-body tr[data-id="{delayed}"] td.when-at')
    expect(when).to_have_text(re.compile(r"^in [12] min$"))
    page.get_by_role("tab", name=re.compile(r"^Ready")).click()
    expect(page.locator("#jobs-empty")).to_have_text("No ready jobs.")
    assert console.errors == []


def test_a_big_payload_is_cut_in_the_list_and_whole_in_the_job_view(
    context: BrowserContext, shared: ServerProcess
) -> None:
    q = "lists-big"
    big = json.dumps({"rows": ["x" * 60 for _ in range(300)]})
    assert len(big) > 10_000

    async def setup(b: Broker) -> str:
        await make_dead(b, q, 2, error="KeyError: 'x'", payload="bad-{}")
        await b.enqueue(q, json.dumps({"to": "ada@example.com", "template": "welcome"}))
        job_id = (await b.enqueue(q, big, priority=9)).id
        await b.enqueue(q, XSS)
        await b.enqueue(q, "report 7", priority=3)
        await b.enqueue(q, "later", delay_ms=60_000)
        return job_id

    job_id = shared.broker(setup)
    page, console = open_page(context, f"{shared.url}/#queue={q}&tab=ready")
    row = page.locator(f'#jobs-body tr[data-id="{job_id}"]')
    expect(page.locator("#jobs-body tr")).to_have_count(4)
    expect(row.locator("td.num").nth(1)).to_have_text("9")  # priority: first in claim order
    marker = row.locator(".trunc")
    expect(marker).to_have_text(f"truncated · {round(len(big) / 1000)} kB")
    cell = row.locator("td.payload")
    shown = cell.text_content() or ""
    assert shown.startswith('{"rows": ["xxx') and len(shown) < 200, shown
    expect(page.locator("#jobs-body td.payload").filter(has_text="<img")).to_have_text(XSS)
    assert page.locator("#jobs-body img").count() == 0
    screenshot(page, "jobs", "#jobs-card")

    row.get_by_role("button", name=f"Open job {job_id}").click()
    expect(page.locator("#job-state")).to_have_text("ready")
    payload = page.locator("#job-payload").text_content() or ""
    assert json.loads(payload) == json.loads(big)  # whole (and pretty) in the detail
    assert page.evaluate("window.__xss") is None
    assert console.errors == []
