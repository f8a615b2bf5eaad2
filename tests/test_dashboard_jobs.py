"""The dashboard's job view and schedules panel in a real browser (Playwright driving
the system's Chromium, as ``test_dashboard.py`` does; without one the module is skipped).

Each test drives a real ``relay-trio server`` subprocess on the test Redis under a key
prefix of its own; jobs move with the broker from the test, and the abort test runs a
real :class:`~relay_trio.Worker` (in a thread with a Trio loop of its own) whose handler
never returns. ``RELAY_SCREENSHOTS=1`` also saves ``docs/screenshots/job.png`` and
``schedules.png``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, Page, Route, expect
from support import make_dead
from support.browser import (
    HELP_SEEN,
    XSS,
    Console,
    needs_chromium,
    open_page,
    page_fixtures,
    screenshot,
    worker_thread,
)
from support.servers import ServerProcess

from relay_trio.broker import Broker
from relay_trio.job import Job, JobState
from relay_trio.schedules import Schedule

pytestmark = needs_chromium

LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")

make_server, shared, browser, context = page_fixtures("relaytest-dashjobs-")


def find_job(page: Page, queue_name: str, job_id: str) -> None:
    page.locator("#j-queue").fill(queue_name)
    page.get_by_label("Job id").fill(job_id)
    page.get_by_role("button", name="Open", exact=True).click()


def job_state(server: ServerProcess, queue_name: str, job_id: str) -> JobState:
    job: Job = server.broker(lambda b: b.get_job(queue_name, job_id))
    return job.state


def api(server: ServerProcess, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, server.url + path, json=body, timeout=10)


# -- the job view -------------------------------------------------------------------------


def test_a_job_opens_by_id_and_shows_what_it_holds(
    context: BrowserContext, shared: ServerProcess
) -> None:
    q = "jobs-view"
    payload = json.dumps({"to": "ada@example.com", "items": [1, 2]})

    async def setup(b: Broker) -> tuple[str, str, str]:
        done = (await b.enqueue(q, "sum 2 3")).id
        (claimed,) = (await b.claim(q)).jobs
        await b.ack(claimed, {"sum": 5})
        waiting = (await b.enqueue(q, payload, priority=7, idempotency_key="order-7")).id
        xss = (await b.enqueue(q, XSS)).id
        return waiting, done, xss

    waiting, done, xss = shared.broker(setup)
    page, console = open_page(context, f"{shared.url}/#queue={q}")
    detail = page.locator("#job-detail")
    expect(detail).to_be_hidden()
    expect(page.locator("#j-queue")).to_have_value(q)  # follows the selected queue

    find_job(page, q, waiting.upper())  # pasted in capitals: still the id
    expect(page.locator("#job-state")).to_have_text("ready")
    expect(page.locator("#job-full-id")).to_have_text(waiting)
    expect(page.locator("#job-queue-name")).to_have_text(q)
    expect(page.locator("#job-attempts")).to_have_text("0/5")
    expect(page.locator("#job-priority")).to_have_text("7")
    expect(page.locator("#job-key")).to_have_text("order-7")
    expect(page.locator("#job-created")).to_have_text(LOCAL_TIME)
    expect(page.locator("#job-finished")).to_have_text("—")
    expect(page.locator("#job-payload")).to_have_text(json.dumps(json.loads(payload), indent=2))
    expect(page.locator("#job-result-block")).to_be_hidden()
    expect(page.get_by_role("button", name=f"Cancel job {waiting}")).to_be_visible()
    assert f"job={q}%2F{waiting}" in page.url  # a link to this job
    screenshot(page, "job", "#job-card")

    find_job(page, q, done)
    expect(page.locator("#job-state")).to_have_text("done")
    expect(page.locator("#job-result")).to_have_text('{\n  "sum": 5\n}')
    expect(page.locator("#job-finished")).to_have_text(LOCAL_TIME)
    expect(page.locator("#job-cancel")).to_be_hidden()  # nothing left to cancel

    find_job(page, q, xss)  # a payload is text, never markup
    expect(page.locator("#job-payload")).to_have_text(XSS)
    assert page.locator("#job-detail img").count() == 0
    assert page.evaluate("window.__xss") is None

    # the link opens the same job in a new page
    other, other_console = open_page(context, f"{shared.url}/#queue={q}&job={q}%2F{done}")
    expect(other.locator("#job-state")).to_have_text("done")
    other.close()

    # what the page can tell is wrong is said before any request; the rest is the server's
    find_job(page, q, "not-an-id")
    expect(page.locator("#job-error")).to_have_text("Job id: 32 hexadecimal characters")
    expect(detail).to_be_hidden()
    missing = "f" * 32
    find_job(page, q, missing)
    expect(page.locator("#job-error")).to_have_text(re.compile(rf"^404 · job {missing} not found"))
    expect(detail).to_be_hidden()
    page.get_by_label("Job id").fill(f"{q}/{done}")  # queue/id in one field
    page.get_by_role("button", name="Open", exact=True).click()
    expect(page.locator("#job-state")).to_have_text("done")
    expect(page.locator("#job-error")).to_be_hidden()
    page.get_by_role("button", name="Close", exact=True).click()
    expect(detail).to_be_hidden()
    assert "job=" not in page.url
    assert console.unexpected(404) == []
    assert other_console.unexpected() == []


def test_a_dead_job_opens_from_the_dlq_table_and_follows_a_requeue(
    context: BrowserContext, shared: ServerProcess
) -> None:
    q = "jobs-dlq"
    (dead,) = shared.broker(lambda b: make_dead(b, q, 1, payload="report 9", error="KeyError: 'x'"))
    page, console = open_page(context, f"{shared.url}/#queue={q}")
    page.get_by_role("button", name=f"Open job {dead}").click()
    expect(page.locator("#job-state")).to_have_text("dead")
    expect(page.locator("#job-last-error")).to_have_text("KeyError: 'x'")
    expect(page.locator("#job-attempts")).to_have_text("1/0")
    expect(page.locator("#job-cancel")).to_be_hidden()
    assert page.evaluate("document.activeElement.id") == "job-card-title"

    # requeued elsewhere: the snapshots show the queue moved, the panel reads the job again
    shared.broker(lambda b: b.dlq_requeue(q, dead))
    expect(page.locator("#job-state")).to_have_text("ready")
    expect(page.locator("#job-attempts")).to_have_text("0/0")
    expect(page.get_by_role("button", name=f"Cancel job {dead}")).to_be_visible()
    assert console.unexpected() == []


def test_cancel_a_ready_job_from_the_page(context: BrowserContext, shared: ServerProcess) -> None:
    q = "jobs-cancel"
    job_id = shared.broker(lambda b: b.enqueue(q, "not needed after all")).id
    page, console = open_page(context, f"{shared.url}/#queue={q}&job={q}%2F{job_id}")
    expect(page.locator("#job-state")).to_have_text("ready")
    expect(page.locator("#job-live")).to_contain_text("following")  # its end will show at once
    cancel = page.get_by_role("button", name=f"Cancel job {job_id}")
    expect(cancel).to_have_text("Cancel")
    cancel.click()
    expect(page.locator("#job-state")).to_have_text("cancelled")
    expect(page.locator("#job-finished")).to_have_text(LOCAL_TIME)
    expect(page.locator("#job-cancel")).to_be_hidden()
    expect(page.locator("#notice")).to_contain_text(f"Cancelled job {job_id[:8]}")
    assert job_state(shared, q, job_id) is JobState.CANCELLED
    expect(page.locator("#t-ready")).to_have_text("0")
    assert console.unexpected() == []


def test_cancel_of_a_job_that_ended_meanwhile_shows_the_servers_409(
    context: BrowserContext, shared: ServerProcess
) -> None:
    q = "jobs-409"
    job_id = shared.broker(lambda b: b.enqueue(q, "x")).id
    stale = httpx.get(f"{shared.url}/api/queues/{q}/jobs/{job_id}", timeout=5).text

    def frozen(route: Route) -> None:
        """The page keeps seeing the job as it was (ready); its waits fail."""
        if "wait=" in route.request.url:
            route.abort()
        else:
            route.fulfill(status=200, content_type="application/json", body=stale)

    page = context.new_page()
    page.route(re.compile(rf"/api/queues/{q}/jobs/{job_id}(\?.*)?$"), frozen)
    console = Console(page)
    page.add_init_script(HELP_SEEN)
    page.goto(f"{shared.url}/#queue={q}&job={q}%2F{job_id}")
    expect(page.locator("#job-state")).to_have_text("ready")
    shared.broker(lambda b: b.cancel(q, job_id))  # someone else was quicker
    expect(page.locator("#t-ready")).to_have_text("0")
    expect(page.locator("#job-state")).to_have_text("ready")
    page.unroute_all()  # (the page reads the job again only when its queue moves, or after 5 s)
    page.get_by_role("button", name=f"Cancel job {job_id}").click()
    expect(page.locator("#job-error")).to_have_text(
        re.compile(rf"^409 · job {job_id} in queue '{q}' has already ended: cancelled")
    )
    expect(page.locator("#job-state")).to_have_text("cancelled")
    expect(page.locator("#job-finished")).to_have_text(LOCAL_TIME)
    expect(page.locator("#job-cancel")).to_be_hidden()
    ignored = [e for e in console.unexpected(409) if "net::ERR_FAILED" not in e]
    assert ignored == []


def test_abort_a_running_job_and_the_page_sees_it_cancelled(
    context: BrowserContext, shared: ServerProcess
) -> None:
    q = "jobs-abort"
    started = threading.Event()
    with worker_thread(shared, q, started, abort_check_interval=0.2) as worker:
        job_id = shared.broker(lambda b: b.enqueue(q, "runs forever")).id
        assert started.wait(10), "the worker never started the job"
        page, console = open_page(context, f"{shared.url}/#queue={q}")
        find_job(page, q, job_id)
        expect(page.locator("#job-state")).to_have_text("inflight")
        expect(page.locator("#job-attempts")).to_have_text("1/5")
        abort = page.get_by_role("button", name=f"Abort job {job_id}")
        expect(abort).to_have_text("Abort")
        clicked = time.monotonic()
        abort.click()
        expect(page.locator("#notice")).to_contain_text("Abort requested")
        expect(page.locator("#job-state")).to_have_text("cancelled", timeout=5000)
        took = time.monotonic() - clicked
        expect(page.locator("#job-cancel")).to_be_hidden()
        assert job_state(shared, q, job_id) is JobState.CANCELLED
        expect(page.locator("#t-inflight")).to_have_text("0")
        time.sleep(0.5)
        assert worker.stats.aborted == 1 and worker.stats.failed == 0
    assert took < 5, took
    assert console.unexpected() == []


# -- schedules ----------------------------------------------------------------------------------


def test_schedules_are_listed_added_refused_and_deleted(
    context: BrowserContext, make_server: Callable[..., ServerProcess]
) -> None:
    server = make_server()
    created = api(
        server,
        "POST",
        "/api/schedules",
        {
            "name": "reports",
            "cron": "*/5 * * * *",
            "queue": "reports",
            "payload": '{"report": "daily"}',
            "timezone": "Europe/Paris",
        },
    )
    assert created.status_code == 201, created.text
    next_fire = created.json()["next_fire_at"]
    page, console = open_page(context, f"{server.url}/")
    rows = page.locator("#schedules-body tr")
    expect(rows).to_have_count(1)
    row = page.locator('#schedules-body tr[data-name="reports"]')
    expect(row.locator("td.cron")).to_have_text("*/5 * * * *")
    expect(row.locator("td.tz")).to_have_text("Europe/Paris")
    expect(row.locator("td.queue")).to_have_text("reports")
    expect(row.locator("td.payload")).to_have_text('{"report": "daily"}')
    when = row.locator("td.next")
    expect(when).to_have_attribute("title", next_fire)
    expect(when.locator(".rel")).to_have_text(re.compile(r"^(in \d+ (s|min)|now|due now)$"))
    expect(when.locator(".abs")).to_have_text(LOCAL_TIME)
    # the local time shown is the API's next fire time, in the browser's time zone
    shown = page.evaluate(
        "(iso) => { const d = new Date(iso), p = (n) => String(n).padStart(2, '0');"
        " return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} `"
        " + `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`; }",
        next_fire,
    )
    expect(when.locator(".abs")).to_have_text(shown)
    expect(row.locator("td.last")).to_have_text("never")

    # one made elsewhere shows on the next refresh (periodic, or asked for)
    api(
        server,
        "POST",
        "/api/schedules",
        {"name": "b", "cron": "0 3 * * *", "queue": "x", "payload": ""},
    )
    page.get_by_role("button", name="Refresh").click()
    expect(rows).to_have_count(2)

    page.get_by_role("button", name="New schedule").click()
    form = page.locator("#schedule-form")
    expect(form).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "s-name"
    form.get_by_label("Name").fill("hourly")
    form.get_by_label("Cron").fill("61 * * * *")
    form.get_by_label("Queue").fill("pings")
    form.get_by_label("Payload").fill("ping")
    result = page.locator("#schedule-result")
    form.get_by_role("button", name="Add schedule").click()
    expect(result).to_have_text(
        re.compile(r"^400 · cron: '61 \* \* \* \*' is not a cron expression")
    )
    expect(result).to_have_class(re.compile(r"\berror\b"))
    expect(rows).to_have_count(2)

    form.get_by_label("Cron").fill("0 * * * *")
    form.get_by_label("Time zone").fill("Asia/Tokyo")
    form.get_by_role("button", name="Add schedule").click()
    expect(result).to_have_text(re.compile(r"^Added schedule hourly, next \d{4}-"))
    expect(rows).to_have_count(3)
    hourly = page.locator('#schedules-body tr[data-name="hourly"]')
    expect(hourly.locator("td.tz")).to_have_text("Asia/Tokyo")
    expect(hourly.locator("td.next .rel")).to_have_text(re.compile(r"^in \d+ (s|min)$"))
    screenshot(page, "schedules", "#schedules-card")
    saved = api(server, "GET", "/api/schedules/hourly").json()
    assert (saved["cron"], saved["queue"], saved["payload"]) == ("0 * * * *", "pings", "ping")

    page.get_by_role("button", name="Delete schedule hourly").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_contain_text("Schedule hourly stops firing")
    confirm.get_by_role("button", name="Delete").click()
    expect(rows).to_have_count(2)
    expect(hourly).to_have_count(0)
    assert api(server, "GET", "/api/schedules/hourly").status_code == 404

    page.get_by_role("button", name="Close", exact=True).click()  # the form leaves the page
    expect(page.locator("#schedule-form")).to_have_count(0)
    assert console.unexpected(400) == []


def test_the_schedules_panel_reads_a_new_next_fire_time_once_one_passed(
    context: BrowserContext, make_server: Callable[..., ServerProcess]
) -> None:
    """Schedules are not in the stream: the page reads them again a moment after a
    next fire time passed (while the panel is on screen), without "Refresh"."""
    server = make_server()
    body = {"name": "often", "cron": "*/4 * * * * *", "queue": "ticks", "payload": "t"}
    assert api(server, "POST", "/api/schedules", body).status_code == 201
    page, console = open_page(context, f"{server.url}/")
    page.locator("#schedules-card").scroll_into_view_if_needed()
    when = page.locator('#schedules-body tr[data-name="often"] td.next')
    first = when.get_attribute("title")
    assert first is not None
    expect(when.locator(".rel")).to_have_text(re.compile(r"^(in [1-4] s|now|due now)$"))
    expect(when).not_to_have_attribute("title", first, timeout=12_000)
    assert api(server, "GET", "/api/schedules/often").json()["next_fire_at"] >= str(
        when.get_attribute("title")
    )
    assert console.unexpected() == []


# -- read-only mode -------------------------------------------------------------------------


def test_read_only_mode_shows_jobs_and_schedules_but_no_changes(
    context: BrowserContext, make_server: Callable[..., ServerProcess]
) -> None:
    server = make_server("--read-only")

    async def setup(b: Broker) -> str:
        await b.put_schedule(Schedule.create("nightly", "0 3 * * *", "ro", "x"))
        return (await b.enqueue("ro", "x")).id

    job_id = server.broker(setup)
    page, console = open_page(context, f"{server.url}/#queue=ro&job=ro%2F{job_id}")
    expect(page.locator("#readonly-badge")).to_be_visible()
    expect(page.locator("#job-state")).to_have_text("ready")
    expect(page.locator("#job-cancel")).to_be_hidden()
    expect(page.locator("#job-cancel")).to_be_disabled()
    expect(page.locator('#schedules-body tr[data-name="nightly"]')).to_have_count(1)
    for selector in ("#schedule-new", "#schedules-body .actions", "#schedule-form-slot"):
        expect(page.locator(selector)).to_be_hidden()
    # should a cancel be sent anyway, the server's refusal is shown
    page.evaluate(
        "(b => { b.disabled = false; b.click(); })(document.getElementById('job-cancel'))"
    )
    expect(page.locator("#job-error")).to_have_text("403 · the server is read-only")
    assert job_state(server, "ro", job_id) is JobState.READY
    assert console.unexpected(403) == []
