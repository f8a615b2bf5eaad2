// Unit tests of the job lists' and the workers panel's pure logic: `node --test web/tests/`.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  JOB_LIST_STATES,
  JOB_PAGE_SIZE,
  JOB_TABS,
  capacity,
  defaultTab,
  formatBytes,
  formatConcurrency,
  jobListPath,
  jobTab,
  listKey,
  pageSummary,
  runningJobs,
  sortWorkers,
  tabCount,
  timeMs,
  truncationNote,
  workerQueues,
  workersKey,
} from "../logic.js";

const entry = (fields = {}) => ({
  queue: "q",
  ready: 120,
  inflight: 2,
  delayed: 1,
  dlq: 0,
  processed_total: 7,
  dead_total: 0,
  ...fields,
});

describe("job list tabs", () => {
  test("one tab per state the API lists, in the lifecycle's order", () => {
    assert.deepEqual(
      JOB_TABS.map((t) => t.state),
      ["ready", "inflight", "delayed", "dead", "done", "cancelled"],
    );
    assert.ok(JOB_LIST_STATES.has("dead") && !JOB_LIST_STATES.has("dlq"));
    assert.equal(jobTab("dead").when, "dead_at");
    assert.equal(jobTab("done").whenLabel, "Finished");
    assert.equal(jobTab("ready").when, null);
    assert.equal(jobTab("nope"), undefined);
  });

  test("counts come from the snapshot where it has them", () => {
    const e = entry({ dlq: 3 });
    assert.equal(tabCount(e, "ready"), 120);
    assert.equal(tabCount(e, "inflight"), 2);
    assert.equal(tabCount(e, "dead"), 3);
    assert.equal(tabCount(e, "done"), null); // not in the snapshot
    assert.equal(tabCount({ ...e, done: 4 }, "done"), 4);
    assert.equal(tabCount({ ...e, cancelled: -1 }, "cancelled"), null);
    assert.equal(tabCount(undefined, "ready"), null);
    assert.equal(tabCount(e, "unknown"), null);
  });

  test("a queue opens on its dead-letter queue when it holds jobs, else on ready", () => {
    assert.equal(defaultTab(entry({ dlq: 2 }), null), "dead");
    assert.equal(defaultTab(entry(), null), "ready");
    assert.equal(defaultTab(undefined, null), "ready");
    assert.equal(defaultTab(entry({ dlq: 2 }), "done"), "done"); // the URL's tab wins
    assert.equal(defaultTab(entry(), "bogus"), "ready");
  });

  test("a page asks for one job more than it shows", () => {
    assert.equal(JOB_PAGE_SIZE, 50);
    assert.equal(jobListPath("emails", "ready", 0), "/api/queues/emails/jobs?state=ready&limit=51&offset=0");
    assert.equal(jobListPath("a b", "dead", 100), "/api/queues/a%20b/jobs?state=dead&limit=51&offset=100");
    assert.equal(jobListPath("q", "done", 0, 10), "/api/queues/q/jobs?state=done&limit=11&offset=0");
  });

  test("the dead-letter list is read again only when its own counters move", () => {
    const before = entry({ dlq: 2, dead_total: 2 });
    assert.equal(listKey(before, "dead"), listKey({ ...before, ready: 5, processed_total: 99 }, "dead"));
    assert.notEqual(listKey(before, "dead"), listKey({ ...before, dlq: 1 }, "dead"));
    assert.notEqual(listKey(before, "dead"), listKey({ ...before, dead_total: 3 }, "dead"));
  });

  test("the other lists when any count of the queue moves", () => {
    const before = entry();
    for (const state of ["ready", "inflight", "delayed", "done", "cancelled"]) {
      assert.equal(listKey(before, state), listKey({ ...before }, state));
      assert.notEqual(listKey(before, state), listKey({ ...before, processed_total: 8 }, state));
      assert.notEqual(listKey(before, state), listKey({ ...before, ready: 119 }, state));
      assert.notEqual(listKey(before, state), listKey({ ...before, cancelled: 1 }, state));
    }
    assert.notEqual(listKey(before, "ready"), listKey(before, "done"));
    assert.equal(listKey(undefined, "ready"), "");
  });
});

describe("paging", () => {
  test("pages of a counted list", () => {
    assert.equal(pageSummary(0, 50, 120, true), "1–50 of 120");
    assert.equal(pageSummary(50, 50, 120, true), "51–100 of 120");
    assert.equal(pageSummary(100, 20, 120, false), "101–120 of 120");
    assert.equal(pageSummary(0, 3, 3, false), "1–3 of 3");
  });

  test("the last page knows the total; before it, an unknown or lagging count says 'more'", () => {
    assert.equal(pageSummary(0, 50, null, true), "1–50 of more");
    assert.equal(pageSummary(50, 7, null, false), "51–57 of 57");
    assert.equal(pageSummary(0, 50, 50, true), "1–50 of more"); // the snapshot lags
    assert.equal(pageSummary(0, 40, 120, false), "1–40 of 40"); // jobs left meanwhile
    assert.equal(pageSummary(1000, 50, 5000, true), "1,001–1,050 of 5,000");
  });

  test("an empty page", () => {
    assert.equal(pageSummary(0, 0, 0, false), "");
    assert.equal(pageSummary(50, 0, 10, false), "none from 51");
  });
});

describe("payloads cut short in a list", () => {
  test("sizes", () => {
    assert.equal(formatBytes(0), "0 B");
    assert.equal(formatBytes(999), "999 B");
    assert.equal(formatBytes(1000), "1 kB");
    assert.equal(formatBytes(1536), "1.5 kB");
    assert.equal(formatBytes(20_000), "20 kB");
    assert.equal(formatBytes(4_100_000), "4.1 MB");
    assert.equal(formatBytes(2e9), "2 GB");
    for (const bad of [undefined, null, -1, NaN, "12"]) assert.equal(formatBytes(bad), "—");
  });

  test("the marker says so, with the whole size", () => {
    assert.equal(truncationNote({ payload_truncated: true, payload_bytes: 20_000 }), "truncated · 20 kB");
    assert.equal(truncationNote({ payload_truncated: true }), "truncated");
    assert.equal(truncationNote({ payload_truncated: false, payload_bytes: 20 }), null);
    assert.equal(truncationNote({}), null);
    assert.equal(truncationNote(null), null);
  });
});

describe("workers", () => {
  test("times as ISO text or ms", () => {
    assert.equal(timeMs("2025-01-02T03:04:05Z"), Date.UTC(2025, 0, 2, 3, 4, 5));
    assert.equal(timeMs(1_700_000_000_000), 1_700_000_000_000);
    assert.ok(Number.isNaN(timeMs(null)));
    assert.ok(Number.isNaN(timeMs("soon")));
    assert.ok(Number.isNaN(timeMs(Infinity)));
  });

  test("concurrency per queue", () => {
    assert.equal(formatConcurrency({ emails: 4 }), "4");
    assert.equal(formatConcurrency({ emails: 4, sms: 1000 }), "emails 4 · sms 1,000");
    assert.equal(formatConcurrency({ a: 1, emails: 4, sms: 2 }, ["sms", "emails"]), "sms 2 · emails 4 · a 1");
    assert.equal(formatConcurrency({ b: 1, a: 2 }), "a 2 · b 1");
    assert.equal(formatConcurrency(8), "8");
    for (const none of [null, undefined, {}, [], "x", { q: "4" }]) assert.equal(formatConcurrency(none), "—");
    assert.equal(capacity({ emails: 4, sms: 2 }), 6);
    assert.equal(capacity(3), 3);
    assert.equal(capacity(null), null);
    assert.equal(capacity({}), null);
  });

  test("queues and running jobs, whatever a worker wrote", () => {
    assert.deepEqual(workerQueues({ queues: ["a", 5] }), ["a", "5"]);
    assert.deepEqual(workerQueues({ queues: "a" }), []);
    assert.deepEqual(workerQueues(null), []);
    const running = runningJobs({
      running: [
        { queue: "emails", id: "abc", started_at: "2025-01-02T03:04:05Z" },
        { queue: "emails", id: "def", started_at: null },
        { queue: "emails" },
        null,
        "x",
      ],
    });
    assert.deepEqual(
      running.map((r) => [r.queue, r.id]),
      [
        ["emails", "abc"],
        ["emails", "def"],
      ],
    );
    assert.equal(running[0].startedMs, Date.UTC(2025, 0, 2, 3, 4, 5));
    assert.ok(Number.isNaN(running[1].startedMs));
    assert.deepEqual(runningJobs({ running: 3 }), []);
  });

  test("sorted by host, then pid", () => {
    const sorted = sortWorkers([
      { id: "c", host: "b", pid: 1 },
      { id: "b", host: "a", pid: 20 },
      { id: "a", host: "a", pid: 3 },
      null,
    ]);
    assert.deepEqual(
      sorted.map((w) => w.id),
      ["a", "b", "c"],
    );
    assert.deepEqual(sortWorkers(null), []);
    assert.deepEqual(sortWorkers({ error: "x" }), []);
  });

  test("the stream's worker counts make a key that moves when one does", () => {
    const a = [entry({ queue: "a", workers: 1 }), entry({ queue: "b", workers: 0 })];
    assert.equal(workersKey(a), "a=1,b=0");
    assert.notEqual(workersKey(a), workersKey([a[0], { ...a[1], workers: 1 }]));
    assert.equal(workersKey([entry({ queue: "a", workers: null })]), "a=");
    assert.equal(workersKey([]), "");
  });
});
