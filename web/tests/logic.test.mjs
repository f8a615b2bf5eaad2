// Unit tests of the dashboard's pure logic: `node --test web/tests/`.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  ageMs,
  averageRate,
  appendPoint,
  buildEnqueueRequest,
  chartColumns,
  chartRange,
  connectionState,
  counterRates,
  describeError,
  dlqKey,
  formatAge,
  formatCompact,
  formatCount,
  formatRate,
  headerValue,
  latestRate,
  maxGap,
  medianInterval,
  offlineAfter,
  pickQueue,
  preview,
  rateBetween,
  shortId,
  streamUrl,
  toPoint,
  trimWindow,
} from "../logic.js";

describe("number formatting", () => {
  test("counts get thousands separators", () => {
    assert.equal(formatCount(0), "0");
    assert.equal(formatCount(999), "999");
    assert.equal(formatCount(1000), "1,000");
    assert.equal(formatCount(1234567), "1,234,567");
    assert.equal(formatCount(-4200), "-4,200");
    assert.equal(formatCount(12.6), "13");
  });

  test("what is not a number shows a dash", () => {
    for (const bad of [undefined, null, NaN, Infinity, "12"]) assert.equal(formatCount(bad), "—");
    assert.equal(formatCompact(undefined), "—");
    assert.equal(formatRate(NaN), "—");
  });

  test("compact counts", () => {
    assert.equal(formatCompact(999), "999");
    assert.equal(formatCompact(1000), "1k");
    assert.equal(formatCompact(1250), "1.3k");
    assert.equal(formatCompact(9990), "10k");
    assert.equal(formatCompact(12345), "12k");
    assert.equal(formatCompact(3_400_000), "3.4M");
    assert.equal(formatCompact(2_000_000_000), "2B");
  });

  test("rates", () => {
    assert.equal(formatRate(0), "0");
    assert.equal(formatRate(-3), "0");
    assert.equal(formatRate(0.44), "0.4");
    assert.equal(formatRate(2), "2");
    assert.equal(formatRate(12.5), "13");
    assert.equal(formatRate(4321), "4,321");
  });
});

describe("ages", () => {
  test("two largest units", () => {
    assert.equal(formatAge(0), "0s");
    assert.equal(formatAge(999), "0s");
    assert.equal(formatAge(12_000), "12s");
    assert.equal(formatAge(60_000), "1m");
    assert.equal(formatAge(192_000), "3m 12s");
    assert.equal(formatAge(3_600_000), "1h");
    assert.equal(formatAge(2 * 3_600_000 + 5 * 60_000 + 7_000), "2h 5m");
    assert.equal(formatAge(4 * 86_400_000 + 3 * 3_600_000), "4d 3h");
    assert.equal(formatAge(86_400_000), "1d");
  });

  test("a future time (clock skew) is 0s, an unknown one a dash", () => {
    assert.equal(formatAge(-5000), "0s");
    assert.equal(formatAge(NaN), "—");
    assert.equal(formatAge(undefined), "—");
  });

  test("age of an ISO time", () => {
    const now = Date.parse("2025-01-01T00:01:00Z");
    assert.equal(ageMs("2025-01-01T00:00:00Z", now), 60_000);
    assert.ok(Number.isNaN(ageMs("not a time", now)));
  });
});

describe("text", () => {
  test("preview is one line and cut with an ellipsis", () => {
    assert.equal(preview("a\n  b\tc"), "a b c");
    assert.equal(preview("x".repeat(100), 10), "xxxxxxxxx…");
    assert.equal(preview("short", 10), "short");
    assert.equal(preview(null), "");
  });

  test("preview never splits a surrogate pair", () => {
    const cut = preview("😀".repeat(20), 5);
    assert.equal(cut, "😀😀😀😀…");
  });

  test("markup stays text", () => {
    assert.equal(preview("<img src=x onerror=alert(1)>"), "<img src=x onerror=alert(1)>");
  });

  test("short ids", () => {
    assert.equal(shortId("0123456789abcdef0123456789abcdef"), "01234567");
    assert.equal(shortId(undefined), "");
  });
});

describe("rolling windows", () => {
  const pts = (...ts) => ts.map((t) => ({ t }));

  test("points older than the window are dropped", () => {
    const kept = trimWindow(pts(0, 1000, 59_000, 60_000, 61_000), 120_000, 60_000);
    assert.deepEqual(
      kept.map((p) => p.t),
      [60_000, 61_000],
    );
  });

  test("nothing to drop returns the same array", () => {
    const points = pts(100, 200);
    assert.equal(trimWindow(points, 300, 1000), points);
    assert.deepEqual(trimWindow([], 10, 5), []);
  });

  test("append drops old points", () => {
    let points = [];
    for (let t = 0; t <= 10 * 60_000; t += 1000) points = appendPoint(points, { t }, 5 * 60_000);
    assert.equal(points[0].t, 5 * 60_000);
    assert.equal(points[points.length - 1].t, 10 * 60_000);
    assert.equal(points.length, 301);
  });

  test("append ignores a point that is not newer", () => {
    const points = pts(1000, 2000);
    assert.equal(appendPoint(points, { t: 2000 }, 60_000), points);
    assert.equal(appendPoint(points, { t: 1500 }, 60_000), points);
    assert.equal(appendPoint(points, { t: 3000 }, 60_000).length, 3);
  });

  test("the chart range grows with the data up to the window", () => {
    const minute = 60_000;
    assert.deepEqual(chartRange(100_000, 103_000, 5 * minute), [88_000, 103_000]); // 15 s at least
    assert.deepEqual(chartRange(0, 2 * minute, 5 * minute), [0, 2 * minute]);
    assert.deepEqual(chartRange(0, 10 * minute, 5 * minute), [5 * minute, 10 * minute]);
    assert.deepEqual(chartRange(undefined, minute, 5 * minute), [45_000, minute]);
    assert.deepEqual(chartRange(0, minute, 10_000), [50_000, minute]); // never past the window
  });

  test("median interval", () => {
    assert.equal(medianInterval([], 777), 777);
    assert.equal(medianInterval(pts(0, 1000, 2000, 9000)), 1000);
    assert.equal(medianInterval(pts(0, 1000, 3000)), 1500);
  });
});

describe("throughput", () => {
  const p = (t, processed_total) => ({ t, processed_total });

  test("rates from counter deltas per second", () => {
    const rates = counterRates([p(0, 0), p(1000, 10), p(3000, 30), p(3500, 31)], "processed_total");
    assert.deepEqual(rates, [null, 10, 10, 2]);
  });

  test("a counter reset reads as 0, never negative", () => {
    const rates = counterRates([p(0, 500), p(1000, 520), p(2000, 3), p(3000, 8)], "processed_total");
    assert.deepEqual(rates, [null, 20, 0, 5]);
    for (const r of rates.slice(1)) assert.ok(r >= 0);
  });

  test("a zero or backwards time step reads as 0", () => {
    assert.equal(rateBetween(p(1000, 0), p(1000, 50), "processed_total"), 0);
    assert.equal(rateBetween(p(2000, 0), p(1000, 50), "processed_total"), 0);
  });

  test("missing values read as 0", () => {
    assert.equal(rateBetween({ t: 0 }, p(1000, 5), "processed_total"), 0);
  });

  test("latest rate", () => {
    assert.equal(latestRate([], "processed_total"), 0);
    assert.equal(latestRate([p(0, 1)], "processed_total"), 0);
    assert.equal(latestRate([p(0, 1), p(500, 6)], "processed_total"), 10);
  });

  test("average rate over a span skips resets", () => {
    const pts = [p(0, 0), p(1000, 100), p(2000, 110), p(3000, 5), p(4000, 25)];
    // last 3 s: +10, reset (0), +20 over 3 s
    assert.equal(averageRate(pts, "processed_total", 3000), 10);
    // a span shorter than one step still uses the last step
    assert.equal(averageRate(pts, "processed_total", 10), 20);
    assert.equal(averageRate([p(0, 5)], "processed_total", 5000), 0);
    assert.equal(averageRate([p(0, 9), p(1000, 3)], "processed_total", 5000), 0);
  });

  test("chart columns: values, rates, and a null row across a gap", () => {
    const pts = [
      { t: 0, ready: 1, processed_total: 0 },
      { t: 1000, ready: 2, processed_total: 4 },
      { t: 60_000, ready: 5, processed_total: 10 }, // nothing known for a minute
      { t: 61_000, ready: 3, processed_total: 2 }, // and the counter was reset
    ];
    const { x, values, rates } = chartColumns(pts, ["ready"], ["processed_total"], 5000);
    assert.deepEqual(x, [0, 1000, 1001, 60_000, 61_000]);
    assert.deepEqual(values, [[1, 2, null, 5, 3]]);
    assert.deepEqual(rates, [[null, 4, null, null, 0]]);
    assert.deepEqual(chartColumns([], ["ready"], [], 5000), { x: [], values: [[]], rates: [] });
  });

  test("the gap threshold follows slow polls", () => {
    assert.equal(maxGap(200), 5000);
    assert.equal(maxGap(2000), 10_000);
    assert.equal(maxGap(undefined), 5000);
  });

  test("snapshot entries become points", () => {
    const entry = { queue: "q", ready: 3, inflight: 1, delayed: 0, dlq: 2, processed_total: 9 };
    assert.deepEqual(toPoint(entry, 42), {
      t: 42,
      ready: 3,
      inflight: 1,
      delayed: 0,
      dlq: 2,
      processed_total: 9,
      dead_total: 0,
    });
  });
});

describe("connection state", () => {
  const base = { startedAt: 0, offlineAfterMs: 10_000 };

  test("connecting, then live on data", () => {
    assert.equal(connectionState({ ...base, nowMs: 500, lastDataAt: null, errored: false }), "connecting");
    assert.equal(connectionState({ ...base, nowMs: 1500, lastDataAt: 1000, errored: false }), "live");
  });

  test("an error is reconnecting, and offline after a while without data", () => {
    assert.equal(connectionState({ ...base, nowMs: 3000, lastDataAt: 1000, errored: true }), "reconnecting");
    assert.equal(connectionState({ ...base, nowMs: 11_000, lastDataAt: 1000, errored: true }), "offline");
  });

  test("no data at all for long is offline even without an error", () => {
    assert.equal(connectionState({ ...base, nowMs: 12_000, lastDataAt: 1000, errored: false }), "offline");
    assert.equal(connectionState({ ...base, nowMs: 12_000, lastDataAt: null, errored: false }), "offline");
  });

  test("the offline threshold follows slow polls", () => {
    assert.equal(offlineAfter(1000), 10_000);
    assert.equal(offlineAfter(30_000), 90_000);
    assert.equal(offlineAfter(NaN), 10_000);
  });
});

describe("queue selection and DLQ refreshes", () => {
  test("pick the wanted, else the current, else the first", () => {
    assert.equal(pickQueue(["a", "b"], "b", "a"), "b");
    assert.equal(pickQueue(["a", "b"], "zz", "b"), "b");
    assert.equal(pickQueue(["a", "b"], null, "gone"), "a");
    assert.equal(pickQueue([], "a", "a"), null);
  });

  test("the DLQ key changes with the size and with new dead jobs", () => {
    const e = { queue: "q", dlq: 1, dead_total: 4, ready: 0 };
    assert.equal(dlqKey(e), dlqKey({ ...e, ready: 99 }));
    assert.notEqual(dlqKey(e), dlqKey({ ...e, dlq: 2 }));
    assert.notEqual(dlqKey(e), dlqKey({ ...e, dead_total: 5 })); // one requeued, one new dead
    assert.notEqual(dlqKey(e), dlqKey({ ...e, queue: "r" }));
    assert.equal(dlqKey(undefined), "");
  });
});

describe("enqueue form", () => {
  const form = (extra = {}) => ({ queue: "emails", payload: "hi", count: "1", ...extra });

  test("one job", () => {
    assert.deepEqual(buildEnqueueRequest(form({ priority: "7", delay_ms: "" })), {
      path: "/api/queues/emails/jobs",
      body: { payload: "hi", priority: 7, delay_ms: 0 },
      count: 1,
    });
  });

  test("an idempotency key goes with a single job", () => {
    const req = buildEnqueueRequest(form({ idempotency_key: " order-1 " }));
    assert.equal(req.body.idempotency_key, "order-1");
  });

  test("a count above one is one bulk request", () => {
    assert.deepEqual(buildEnqueueRequest(form({ count: "500", delay_ms: "250" })), {
      path: "/api/queues/emails/jobs/bulk",
      body: { count: 500, payload: "hi", priority: 0, delay_ms: 250 },
      count: 500,
    });
    assert.match(buildEnqueueRequest(form({ count: "2", idempotency_key: "k" })).error, /count of 1/);
  });

  test("bad input is refused with a message", () => {
    assert.match(buildEnqueueRequest(form({ queue: "no spaces" })).error, /Queue/);
    assert.match(buildEnqueueRequest(form({ queue: ".." })).error, /Queue/);
    assert.match(buildEnqueueRequest(form({ queue: "x".repeat(65) })).error, /Queue/);
    assert.match(buildEnqueueRequest(form({ priority: "256" })).error, /Priority/);
    assert.match(buildEnqueueRequest(form({ priority: "1.5" })).error, /Priority/);
    assert.match(buildEnqueueRequest(form({ count: "0" })).error, /Count/);
    assert.match(buildEnqueueRequest(form({ count: "10001" })).error, /Count/);
    assert.match(buildEnqueueRequest(form({ delay_ms: "-1" })).error, /Delay/);
  });

  test("errors show the status and the server's text", () => {
    assert.equal(describeError(409, { error: "taken", id: "x" }), "409 · taken");
    assert.equal(describeError(500, "<html>", "oops"), "500 · oops");
    assert.equal(describeError(0, null, "network down"), "network down");
  });
});

describe("credentials", () => {
  test("a header value carries the token's UTF-8 bytes, one character each", () => {
    assert.equal(headerValue("s3cret"), "s3cret");
    assert.equal(headerValue("é"), "\u00c3\u00a9");
    assert.equal(headerValue("à"), "\u00c3\u00a0");
    assert.equal(headerValue("✓"), "\u00e2\u009c\u0093");
    for (const token of ["é-ünï", "日本", "🔑"]) {
      const value = headerValue(token);
      assert.ok([...value].every((c) => c.charCodeAt(0) <= 0xff));
      const bytes = Uint8Array.from(value, (c) => c.charCodeAt(0));
      assert.equal(new TextDecoder().decode(bytes), token);
    }
  });

  test("the stream URL carries a ticket, never anything else", () => {
    assert.equal(streamUrl(null), "/api/stream");
    assert.equal(streamUrl(""), "/api/stream");
    assert.equal(streamUrl("1.a-b_c.d/e+f"), "/api/stream?ticket=1.a-b_c.d%2Fe%2Bf");
  });
});
