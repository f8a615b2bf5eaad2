// Unit tests of the job view's and the schedules panel's pure logic: `node --test web/tests/`.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  ACTIVE_STATES,
  buildScheduleRequest,
  cancelLabel,
  formatDateTime,
  formatNextFire,
  formatRelative,
  jobPath,
  jobWatchKey,
  parseJobRef,
  parseTime,
  prettyText,
  resultText,
  schedulePath,
  schedulesDue,
} from "../logic.js";

const ID = "0123456789abcdef0123456789abcdef";

describe("finding a job", () => {
  test("a queue and an id", () => {
    assert.deepEqual(parseJobRef({ queue: " emails ", id: ` ${ID} ` }), { queue: "emails", id: ID });
  });

  test("an id pasted in capitals is read as the id", () => {
    assert.deepEqual(parseJobRef({ queue: "q", id: ID.toUpperCase() }), { queue: "q", id: ID });
  });

  test("queue/id in the id field names both", () => {
    assert.deepEqual(parseJobRef({ queue: "other", id: `emails.v2/${ID}` }), { queue: "emails.v2", id: ID });
    assert.deepEqual(parseJobRef({ id: `q/${ID}` }), { queue: "q", id: ID });
  });

  test("bad input is refused with a message", () => {
    assert.match(parseJobRef({ queue: "", id: ID }).error, /Queue/);
    assert.match(parseJobRef({ queue: "no spaces", id: ID }).error, /Queue/);
    assert.match(parseJobRef({ queue: "..", id: ID }).error, /Queue/);
    assert.match(parseJobRef({ queue: "q", id: "" }).error, /Job id/);
    assert.match(parseJobRef({ queue: "q", id: ID.slice(1) }).error, /Job id/);
    assert.match(parseJobRef({ queue: "q", id: `${ID.slice(1)}g` }).error, /Job id/);
    assert.match(parseJobRef({ queue: "q", id: `a/b/${ID}` }).error, /Queue/);
  });

  test("paths are encoded", () => {
    assert.equal(jobPath("q", ID), `/api/queues/q/jobs/${ID}`);
    assert.equal(jobPath("q", ID, "cancel"), `/api/queues/q/jobs/${ID}/cancel`);
    assert.equal(jobPath("a b", "x/y"), "/api/queues/a%20b/jobs/x%2Fy");
  });
});

describe("a job's view", () => {
  test("cancel while it waits, abort while it runs, nothing once it ended", () => {
    assert.equal(cancelLabel("ready"), "Cancel");
    assert.equal(cancelLabel("delayed"), "Cancel");
    assert.equal(cancelLabel("inflight"), "Abort");
    for (const ended of ["done", "dead", "cancelled", undefined, "new-state"]) assert.equal(cancelLabel(ended), null);
    assert.deepEqual([...ACTIVE_STATES].sort(), ["delayed", "inflight", "ready"]);
  });

  test("JSON payloads are pretty, anything else stays as it is", () => {
    assert.equal(prettyText('{"to":"ada","n":[1,2]}'), '{\n  "to": "ada",\n  "n": [\n    1,\n    2\n  ]\n}');
    assert.equal(prettyText(" [1] "), "[\n  1\n]");
    assert.equal(prettyText("plain text"), "plain text");
    assert.equal(prettyText("42"), "42");
    assert.equal(prettyText("{not json"), "{not json");
    assert.equal(prettyText("<img src=x onerror=alert(1)>"), "<img src=x onerror=alert(1)>");
    assert.equal(prettyText(null), "");
  });

  test("results: none, JSON values, bytes as their text", () => {
    assert.equal(resultText({ result: null, result_type: null }), null);
    assert.equal(resultText({}), null);
    assert.equal(resultText(null), null);
    assert.equal(resultText({ result: { sum: 5 }, result_type: "json" }), '{\n  "sum": 5\n}');
    assert.equal(resultText({ result: 0, result_type: "json" }), "0");
    assert.equal(resultText({ result: false, result_type: "json" }), "false");
    assert.equal(resultText({ result: "ok", result_type: "json" }), '"ok"');
    assert.equal(resultText({ result: "raw \u00e9", result_type: "bytes" }), "raw \u00e9");
  });

  test("the watch key moves with any count of the queue", () => {
    const e = { queue: "q", ready: 1, inflight: 1, delayed: 0, dlq: 0, processed_total: 5, dead_total: 0, ts: 1 };
    assert.equal(jobWatchKey(e), jobWatchKey({ ...e, ts: 2 }));
    for (const field of ["ready", "inflight", "delayed", "dlq", "processed_total", "dead_total"]) {
      assert.notEqual(jobWatchKey(e), jobWatchKey({ ...e, [field]: e[field] + 1 }), field);
    }
    assert.equal(jobWatchKey(undefined), "");
  });
});

describe("times", () => {
  test("relative times, future and past", () => {
    assert.equal(formatRelative(0), "now");
    assert.equal(formatRelative(400), "now");
    assert.equal(formatRelative(42_000), "in 42 s");
    assert.equal(formatRelative(-42_000), "42 s ago");
    assert.equal(formatRelative(3 * 60_000), "in 3 min");
    assert.equal(formatRelative(3 * 60_000 + 20_000), "in 3 min");
    assert.equal(formatRelative(-5 * 60_000), "5 min ago");
    assert.equal(formatRelative(59 * 60_000 + 50_000), "in 1 h"); // rounds up to the hour
    assert.equal(formatRelative(2 * 3_600_000 + 5 * 60_000), "in 2 h 5 min");
    assert.equal(formatRelative(26 * 3_600_000), "in 1 d 2 h");
    assert.equal(formatRelative(-3 * 86_400_000), "3 d ago");
    assert.equal(formatRelative(NaN), "—");
    assert.equal(formatRelative(undefined), "—");
  });

  test("a next fire time that passed is due", () => {
    assert.equal(formatNextFire(3 * 60_000), "in 3 min");
    assert.equal(formatNextFire(0), "now");
    assert.equal(formatNextFire(-1500), "due now");
    assert.equal(formatNextFire(NaN), "—");
  });

  test("local date and time", () => {
    const ms = new Date(2025, 0, 2, 3, 4, 5).getTime(); // in the test's own time zone
    assert.equal(formatDateTime(ms), "2025-01-02 03:04:05");
    assert.equal(formatDateTime(NaN), "—");
    assert.equal(formatDateTime(null), "—");
  });

  test("ISO times", () => {
    assert.equal(parseTime("2025-01-01T00:00:00Z"), Date.UTC(2025, 0, 1));
    assert.ok(Number.isNaN(parseTime(null)));
    assert.ok(Number.isNaN(parseTime("soon")));
  });
});

describe("schedules", () => {
  const form = (extra = {}) => ({
    name: "nightly",
    cron: " 0 3 * * * ",
    queue: "reports",
    payload: "{}",
    timezone: "",
    ...extra,
  });

  test("the request body", () => {
    assert.deepEqual(buildScheduleRequest(form()), {
      body: { name: "nightly", cron: "0 3 * * *", queue: "reports", payload: "{}" },
    });
    assert.equal(buildScheduleRequest(form({ timezone: " Europe/Paris " })).body.timezone, "Europe/Paris");
    assert.equal(buildScheduleRequest(form({ payload: undefined })).body.payload, "");
  });

  test("what the page can judge is refused before any request", () => {
    assert.match(buildScheduleRequest(form({ name: "" })).error, /Name/);
    assert.match(buildScheduleRequest(form({ name: "a b" })).error, /Name/);
    assert.match(buildScheduleRequest(form({ name: "." })).error, /Name/);
    assert.match(buildScheduleRequest(form({ cron: "  " })).error, /Cron/);
    assert.match(buildScheduleRequest(form({ queue: "" })).error, /Queue/);
  });

  test("a cron expression is the server's to judge", () => {
    assert.equal(buildScheduleRequest(form({ cron: "61 * * * *" })).body.cron, "61 * * * *");
  });

  test("schedule paths are encoded", () => {
    assert.equal(schedulePath("nightly.v2"), "/api/schedules/nightly.v2");
    assert.equal(schedulePath("a/b"), "/api/schedules/a%2Fb");
  });

  test("the list is fetched again once a next fire time has passed", () => {
    const at = (iso) => ({ next_fire_at: iso });
    const fire = Date.UTC(2025, 0, 1, 12, 0);
    const rows = [at("2025-01-01T12:00:00Z"), at(null)];
    const fetched = fire - 60_000;
    assert.equal(schedulesDue(rows, fire - 1000, fetched), false); // not yet
    assert.equal(schedulesDue(rows, fire + 1000, fetched), false); // a grace period
    assert.equal(schedulesDue(rows, fire + 2500, fetched), true);
    // fetched after the fire time already: the server had nothing newer, ask no more
    assert.equal(schedulesDue(rows, fire + 60_000, fire + 5000), false);
    // never twice within the grace period
    assert.equal(schedulesDue(rows, fire + 3000, fire + 2000), false);
    assert.equal(schedulesDue([], fire, 0), false);
  });
});
