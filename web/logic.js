// Pure logic of the dashboard: no DOM, no network, no clock of its own (every
// function that needs "now" takes it as an argument). The page imports this
// module; web/tests/logic.test.mjs tests it with Node's built-in test runner.

export const QUEUE_NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
export const MAX_BULK_COUNT = 10000;
export const MAX_PRIORITY = 255;
export const MAX_DELAY_MS = 366 * 86_400_000;

// -- numbers -----------------------------------------------------------------------

/** An integer count with thousands separators ("1,234,567"); "—" if not a number. */
export function formatCount(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  const sign = value < 0 ? "-" : "";
  const digits = String(Math.round(Math.abs(value)));
  return sign + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** A short count for tight places: 999, 1.2k, 12k, 3.4M, 1.2B. */
export function formatCompact(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  const abs = Math.abs(value);
  const sign = value < 0 ? "-" : "";
  for (const [size, suffix] of [
    [1e9, "B"],
    [1e6, "M"],
    [1e3, "k"],
  ]) {
    if (abs >= size) {
      const scaled = abs / size;
      // one decimal below 10 (1.2k), none above (12k); never "10.0k"
      const text = scaled < 9.95 ? scaled.toFixed(1).replace(/\.0$/, "") : String(Math.round(scaled));
      return sign + text + suffix;
    }
  }
  return sign + String(Math.round(abs));
}

/** A rate per second: "0", "0.4", "12.5", "1,234". */
export function formatRate(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  if (value <= 0) return "0";
  if (value < 10) return value.toFixed(1).replace(/\.0$/, "");
  return formatCount(value);
}

// -- time --------------------------------------------------------------------------

/** An age in the two largest units: "12s", "3m 12s", "2h 5m", "4d 3h". */
export function formatAge(ms) {
  if (typeof ms !== "number" || Number.isNaN(ms)) return "—";
  if (ms === Infinity) return "—";
  const total = Math.max(0, Math.floor(ms / 1000)); // a clock skew never shows a negative age
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  if (days > 0) return hours ? `${days}d ${hours}h` : `${days}d`;
  if (hours > 0) return minutes ? `${hours}h ${minutes}m` : `${hours}h`;
  if (minutes > 0) return seconds ? `${minutes}m ${seconds}s` : `${minutes}m`;
  return `${seconds}s`;
}

/** Milliseconds since an ISO 8601 time (NaN when it cannot be read). */
export function ageMs(isoTime, nowMs) {
  const then = Date.parse(isoTime);
  return Number.isNaN(then) ? NaN : nowMs - then;
}

/** "HH:MM:SS" of a time in ms, in the page's time zone. */
export function formatClock(ms) {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

// -- text --------------------------------------------------------------------------

/** One line of at most ``max`` characters (code points), whitespace collapsed, "…" if cut. */
export function preview(text, max = 80) {
  const flat = String(text ?? "").replace(/\s+/g, " ").trim();
  const chars = Array.from(flat);
  if (chars.length <= max) return flat;
  return chars.slice(0, Math.max(0, max - 1)).join("") + "…";
}

export function shortId(id) {
  return String(id ?? "").slice(0, 8);
}

// -- rolling windows and throughput ----------------------------------------------------

/** The points no older than ``windowMs`` before ``nowMs`` (points are ``{t, ...}``). */
export function trimWindow(points, nowMs, windowMs) {
  const oldest = nowMs - windowMs;
  let start = 0;
  while (start < points.length && points[start].t < oldest) start += 1;
  return start === 0 ? points : points.slice(start);
}

/**
 * ``points`` with ``point`` appended and everything older than ``windowMs`` before
 * it dropped. A point not newer than the last one (the same snapshot seen again after
 * a reconnect, or a clock step back) replaces nothing and is ignored.
 */
export function appendPoint(points, point, windowMs) {
  const last = points[points.length - 1];
  if (last !== undefined && !(point.t > last.t)) return points;
  return trimWindow([...points, point], point.t, windowMs);
}

/**
 * Per-second rates of a lifetime counter between consecutive points: one value per
 * point, ``null`` for the first (nothing to compare with). A counter that went down
 * (reset, or the queue was deleted and made again) reads as 0; a rate is never
 * negative, and a zero or negative time step reads as 0 too.
 */
export function counterRates(points, field) {
  const out = new Array(points.length);
  for (let i = 0; i < points.length; i += 1) {
    if (i === 0) {
      out[i] = null;
      continue;
    }
    out[i] = rateBetween(points[i - 1], points[i], field);
  }
  return out;
}

export function rateBetween(before, after, field) {
  const a = before[field];
  const b = after[field];
  const seconds = (after.t - before.t) / 1000;
  if (!Number.isFinite(a) || !Number.isFinite(b) || !(seconds > 0)) return 0;
  const delta = b - a;
  return delta > 0 ? delta / seconds : 0;
}

/** The newest per-second rate of ``field`` in ``points`` (0 with fewer than two). */
export function latestRate(points, field) {
  const n = points.length;
  return n < 2 ? 0 : rateBetween(points[n - 2], points[n - 1], field);
}

/**
 * The mean per-second rate of ``field`` over the last ``spanMs`` of ``points``: the sum
 * of the positive steps (a reset step counts 0) over the time they span; 0 with fewer
 * than two points in the span.
 */
export function averageRate(points, field, spanMs) {
  const n = points.length;
  if (n < 2) return 0;
  const newest = points[n - 1].t;
  let first = n - 1;
  while (first > 0 && newest - points[first - 1].t <= spanMs) first -= 1;
  if (first === n - 1) first = n - 2; // at least one step, however long
  let sum = 0;
  for (let i = first + 1; i < n; i += 1) {
    const a = points[i - 1][field];
    const b = points[i][field];
    if (Number.isFinite(a) && Number.isFinite(b) && b > a) sum += b - a;
  }
  const seconds = (newest - points[first].t) / 1000;
  return seconds > 0 ? sum / seconds : 0;
}

/**
 * The time range a chart shows, in ms: the last ``windowMs`` before ``endMs``, but on a
 * fresh page only as far back as the first point goes (and at least ``minSpanMs``), so
 * that the first seconds of data fill the chart instead of a sliver at its edge.
 */
export function chartRange(firstMs, endMs, windowMs, minSpanMs = 15_000) {
  const span = Math.min(windowMs, Math.max(minSpanMs, endMs - (firstMs ?? endMs)));
  return [endMs - span, endMs];
}

/**
 * Columns for a chart: ``{x, values, rates}`` with ``x`` in ms, one array per field of
 * ``fields`` (the points' values) and of ``rateFields`` (per-second rates of those
 * counters). Where two points are more than ``maxGapMs`` apart (an outage, a stopped
 * poller) a null row is put between them, so that no line is drawn across the time
 * nothing was known; a rate across such a gap is null too.
 */
export function chartColumns(points, fields, rateFields, maxGapMs) {
  const x = [];
  const values = fields.map(() => []);
  const rates = rateFields.map(() => []);
  for (let i = 0; i < points.length; i += 1) {
    const point = points[i];
    const prev = points[i - 1];
    const broken = prev !== undefined && point.t - prev.t > maxGapMs;
    if (broken) {
      x.push(prev.t + 1);
      for (const column of values) column.push(null);
      for (const column of rates) column.push(null);
    }
    x.push(point.t);
    fields.forEach((field, k) => values[k].push(point[field] ?? null));
    rateFields.forEach((field, k) => rates[k].push(prev === undefined || broken ? null : rateBetween(prev, point, field)));
  }
  return { x, values, rates };
}

/** How far apart two snapshots may be before a chart shows a gap between them. */
export function maxGap(intervalMs) {
  return Math.max(5_000, 5 * (Number.isFinite(intervalMs) ? intervalMs : 0));
}

/** The median gap between consecutive points in ms (``fallback`` with fewer than two). */
export function medianInterval(points, fallback = 1000) {
  const gaps = [];
  for (let i = 1; i < points.length; i += 1) gaps.push(points[i].t - points[i - 1].t);
  if (gaps.length === 0) return fallback;
  gaps.sort((x, y) => x - y);
  const mid = gaps.length >> 1;
  return gaps.length % 2 ? gaps[mid] : (gaps[mid - 1] + gaps[mid]) / 2;
}

/** A snapshot entry as a chart point at its time ``t`` (ms). */
export function toPoint(entry, t) {
  return {
    t,
    ready: entry.ready ?? 0,
    inflight: entry.inflight ?? 0,
    delayed: entry.delayed ?? 0,
    dlq: entry.dlq ?? 0,
    processed_total: entry.processed_total ?? 0,
    dead_total: entry.dead_total ?? 0,
  };
}

// -- the stream ------------------------------------------------------------------------

/**
 * The connection as the header shows it.
 * - ``live``: data came within ``offlineAfterMs`` and the stream has no error;
 * - ``reconnecting``: the stream failed and is being opened again, for less than
 *   ``offlineAfterMs`` since the last data;
 * - ``offline``: no data for ``offlineAfterMs`` or more;
 * - ``connecting``: no data yet, and not for long.
 */
export function connectionState({ nowMs, startedAt, lastDataAt, errored, offlineAfterMs }) {
  const since = lastDataAt ?? startedAt;
  if (nowMs - since >= offlineAfterMs) return "offline";
  if (errored) return "reconnecting";
  return lastDataAt == null ? "connecting" : "live";
}

/** How long without data reads as offline: 10 s, or 3 poll intervals if those are longer. */
export function offlineAfter(intervalMs) {
  return Math.max(10_000, 3 * (Number.isFinite(intervalMs) ? intervalMs : 0));
}

/** A key that changes whenever the content of a queue's DLQ may have changed. */
export function dlqKey(entry) {
  if (!entry) return "";
  return `${entry.queue}:${entry.dlq}:${entry.dead_total}`;
}

/** The queue to show: ``wanted`` if it exists, else the current one, else the first. */
export function pickQueue(names, wanted, current) {
  if (wanted && names.includes(wanted)) return wanted;
  if (current && names.includes(current)) return current;
  return names.length ? names[0] : null;
}

// -- credentials -----------------------------------------------------------------------

/**
 * A token as an HTTP header value: its UTF-8 bytes, one character per byte. fetch()
 * sends each character of a header as one byte (and refuses any above U+00FF), and the
 * server compares its token's UTF-8 bytes: so a token of any text works.
 */
export function headerValue(text) {
  let out = "";
  for (const byte of new TextEncoder().encode(String(text ?? ""))) out += String.fromCharCode(byte);
  return out;
}

/**
 * The stream's URL: with the one-time ticket of this connection when the server wants
 * a token (EventSource cannot send headers), else none. Never the token itself: proxies
 * and the browser's history keep URLs.
 */
export function streamUrl(ticket) {
  return ticket ? `/api/stream?ticket=${encodeURIComponent(ticket)}` : "/api/stream";
}

// -- the enqueue form ------------------------------------------------------------------

function integerField(raw, name, low, high, fallback) {
  const text = String(raw ?? "").trim();
  if (text === "") return { value: fallback };
  if (!/^-?\d+$/.test(text)) return { error: `${name} must be a whole number` };
  const value = Number(text);
  if (value < low || value > high) return { error: `${name} must be between ${low} and ${high}` };
  return { value };
}

/**
 * The request the enqueue form stands for: ``{path, body}``, or ``{error}`` with a
 * message for the user. A count of 1 is a single job (and may carry an idempotency
 * key); a larger count is one bulk request.
 */
export function buildEnqueueRequest(form) {
  const queue = String(form.queue ?? "").trim();
  if (!QUEUE_NAME_RE.test(queue) || queue === "." || queue === "..") {
    return { error: "Queue: 1–64 characters of A–Z a–z 0–9 . _ -" };
  }
  const fields = [
    ["count", "Count", 1, MAX_BULK_COUNT, 1],
    ["priority", "Priority", 0, MAX_PRIORITY, 0],
    ["delay_ms", "Delay", 0, MAX_DELAY_MS, 0],
  ];
  const values = {};
  for (const [key, label, low, high, fallback] of fields) {
    const checked = integerField(form[key], label, low, high, fallback);
    if (checked.error) return { error: checked.error };
    values[key] = checked.value;
  }
  const payload = String(form.payload ?? "");
  const key = String(form.idempotency_key ?? "").trim();
  const base = `/api/queues/${encodeURIComponent(queue)}`;
  const body = { payload, priority: values.priority, delay_ms: values.delay_ms };
  if (values.count === 1) {
    if (key) body.idempotency_key = key;
    return { path: `${base}/jobs`, body, count: 1 };
  }
  if (key) return { error: "An idempotency key names one job: use a count of 1" };
  return { path: `${base}/jobs/bulk`, body: { count: values.count, ...body }, count: values.count };
}

/** The text to show for a failed API call: "409 · <server's error>". */
export function describeError(status, body, fallback = "request failed") {
  const message =
    body && typeof body === "object" && typeof body.error === "string" ? body.error : fallback;
  return status ? `${status} · ${message}` : message;
}

// -- one job ---------------------------------------------------------------------------

export const JOB_ID_RE = /^[0-9a-f]{32}$/;
/** States a job can still leave by itself: the detail keeps following it. */
export const ACTIVE_STATES = new Set(["ready", "inflight", "delayed"]);
/** The longest ``?wait=`` the job detail asks for (the server takes up to 60 s). */
export const JOB_WAIT_S = 25;

function checkQueue(raw) {
  const queue = String(raw ?? "").trim();
  return QUEUE_NAME_RE.test(queue) && queue !== "." && queue !== ".." ? queue : null;
}

/**
 * The job a "find job" form names: ``{queue, id}``, or ``{error}``. The id may be
 * pasted with spaces around it or in capitals; ``queue/id`` in the id field names
 * both at once.
 */
export function parseJobRef(form) {
  let queueText = form.queue;
  let idText = String(form.id ?? "").trim();
  const slash = idText.lastIndexOf("/");
  if (slash > 0) {
    queueText = idText.slice(0, slash);
    idText = idText.slice(slash + 1);
  }
  const queue = checkQueue(queueText);
  if (!queue) return { error: "Queue: 1–64 characters of A–Z a–z 0–9 . _ -" };
  const id = idText.trim().toLowerCase();
  if (!JOB_ID_RE.test(id)) return { error: "Job id: 32 hexadecimal characters" };
  return { queue, id };
}

/** The path of a job, or of one of its actions (``"cancel"``). */
export function jobPath(queue, id, action = "") {
  const base = `/api/queues/${encodeURIComponent(queue)}/jobs/${encodeURIComponent(id)}`;
  return action ? `${base}/${action}` : base;
}

/** What the cancel button of a job in ``state`` says: "Abort" while it runs, else "Cancel"; null if none. */
export function cancelLabel(state) {
  if (state === "inflight") return "Abort";
  return ACTIVE_STATES.has(state) ? "Cancel" : null;
}

/** Text pretty-printed as JSON when it is a JSON object or array, else as it is. */
export function prettyText(text) {
  const raw = String(text ?? "");
  const trimmed = raw.trim();
  if (!/^[[{]/.test(trimmed)) return raw;
  try {
    return JSON.stringify(JSON.parse(trimmed), null, 2);
  } catch {
    return raw;
  }
}

/** A job's result as text: ``null`` when none is kept, bytes as their text, JSON pretty. */
export function resultText(job) {
  if (!job || job.result === null || job.result === undefined) return null;
  if (job.result_type === "bytes") return String(job.result);
  return JSON.stringify(job.result, null, 2) ?? String(job.result);
}

/** A key that changes whenever a job of this queue may have moved (a snapshot entry). */
export function jobWatchKey(entry) {
  if (!entry) return "";
  return ["queue", "ready", "inflight", "delayed", "dlq", "processed_total", "dead_total"]
    .map((field) => entry[field])
    .join(":");
}

// -- times -----------------------------------------------------------------------------

/** "YYYY-MM-DD HH:MM:SS" of a time in ms, in the page's time zone; "—" if unknown. */
export function formatDateTime(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${formatClock(ms)}`;
}

/** Milliseconds of an ISO 8601 time; ``NaN`` for null or what cannot be read. */
export function parseTime(iso) {
  return typeof iso === "string" ? Date.parse(iso) : NaN;
}

/** How far a time is: "in 42 s", "in 3 min", "in 2 h 5 min", "in 3 d 4 h", "5 min ago", "now". */
export function formatRelative(deltaMs) {
  if (typeof deltaMs !== "number" || Number.isNaN(deltaMs)) return "—";
  const seconds = Math.round(Math.abs(deltaMs) / 1000);
  if (seconds < 1) return "now";
  let text;
  if (seconds < 60) text = `${seconds} s`;
  else {
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) text = `${minutes} min`;
    else {
      const hours = Math.floor(minutes / 60);
      const rest = minutes % 60;
      if (hours < 24) text = rest ? `${hours} h ${rest} min` : `${hours} h`;
      else {
        const days = Math.floor(hours / 24);
        text = hours % 24 ? `${days} d ${hours % 24} h` : `${days} d`;
      }
    }
  }
  return deltaMs > 0 ? `in ${text}` : `${text} ago`;
}

/**
 * A next fire time: as :func:`formatRelative`, but "due now" once it passed (the
 * schedule is firing; the page reads the list again soon).
 */
export function formatNextFire(deltaMs) {
  return deltaMs < 0 ? "due now" : formatRelative(deltaMs);
}

// -- schedules -------------------------------------------------------------------------

export const SCHEDULE_NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The request the "add schedule" form stands for: ``{body}`` or ``{error}``. The cron
 * expression and the time zone are the server's to judge (its message is shown); an
 * empty time zone is left out (the server's default, UTC).
 */
export function buildScheduleRequest(form) {
  const name = String(form.name ?? "").trim();
  if (!SCHEDULE_NAME_RE.test(name) || name === "." || name === "..") {
    return { error: "Name: 1–64 characters of A–Z a–z 0–9 . _ -" };
  }
  const cron = String(form.cron ?? "").trim();
  if (!cron) return { error: "Cron: a cron expression, such as */5 * * * *" };
  const queue = checkQueue(form.queue);
  if (!queue) return { error: "Queue: 1–64 characters of A–Z a–z 0–9 . _ -" };
  const body = { name, cron, queue, payload: String(form.payload ?? "") };
  const timezone = String(form.timezone ?? "").trim();
  if (timezone) body.timezone = timezone;
  return { body };
}

/** The path of one schedule. */
export function schedulePath(name) {
  return `/api/schedules/${encodeURIComponent(name)}`;
}

/**
 * Whether the list should be fetched again: some next fire time passed more than
 * ``graceMs`` ago (the schedule has a new one by now), and the last fetch is older than it.
 */
export function schedulesDue(schedules, nowMs, fetchedAtMs, graceMs = 2000) {
  if (nowMs - fetchedAtMs < graceMs) return false;
  return schedules.some((s) => {
    const next = parseTime(s.next_fire_at);
    return Number.isFinite(next) && next + graceMs <= nowMs && next >= fetchedAtMs - graceMs;
  });
}

// -- job lists ---------------------------------------------------------------------------

/**
 * The job lists' tabs: the state the API takes, its label, the snapshot field that counts
 * it, and the time that orders the state's list (the job's field, and its column's title).
 */
export const JOB_TABS = [
  { state: "ready", label: "Ready", field: "ready", when: null, whenLabel: "" },
  { state: "inflight", label: "In flight", field: "inflight", when: "deadline", whenLabel: "Lease ends" },
  { state: "delayed", label: "Delayed", field: "delayed", when: "ready_at", whenLabel: "Ready" },
  { state: "dead", label: "Dead-letter", field: "dlq", when: "dead_at", whenLabel: "Dead since" },
  { state: "done", label: "Done", field: "done", when: "finished_at", whenLabel: "Finished" },
  { state: "cancelled", label: "Cancelled", field: "cancelled", when: "finished_at", whenLabel: "Finished" },
];

/** The tab of ``state`` (undefined for none). */
export function jobTab(state) {
  return JOB_TABS.find((tab) => tab.state === state);
}
export const JOB_LIST_STATES = new Set(JOB_TABS.map((tab) => tab.state));
/** Jobs on one page of a list. */
export const JOB_PAGE_SIZE = 50;

/** How many jobs of ``state`` a snapshot entry counts; null when it does not say. */
export function tabCount(entry, state) {
  const tab = JOB_TABS.find((t) => t.state === state);
  const value = entry && tab ? entry[tab.field] : undefined;
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : null;
}

/**
 * The tab a queue opens on when none was chosen: the dead-letter queue when it holds
 * jobs (what needs a look), else ready. An explicit ``wanted`` tab (the URL's) wins.
 */
export function defaultTab(entry, wanted) {
  if (JOB_LIST_STATES.has(wanted)) return wanted;
  return (tabCount(entry, "dead") ?? 0) > 0 ? "dead" : "ready";
}

/**
 * The request for one page of a list: one job more than the page shows, so that the
 * answer says whether there is a next page (done and cancelled jobs have no count).
 */
export function jobListPath(queue, state, offset, pageSize = JOB_PAGE_SIZE) {
  const params = new URLSearchParams({ state, limit: String(pageSize + 1), offset: String(offset) });
  return `/api/queues/${encodeURIComponent(queue)}/jobs?${params}`;
}

/**
 * A key that changes whenever the jobs of a list may have changed: for the dead-letter
 * queue only its own counters, for the others any count of the queue (a job enters or
 * leaves ready, in flight and delayed on every claim, ack, retry or cancel).
 */
export function listKey(entry, state) {
  if (!entry) return "";
  if (state === "dead") return `dead:${dlqKey(entry)}`;
  return `${state}:${jobWatchKey(entry)}:${entry.done ?? ""}:${entry.cancelled ?? ""}`;
}

/**
 * What a page shows, as "51–100 of 120": ``shown`` jobs from ``offset``. On the last page
 * (no ``more``) the total is what the pages hold; before it, ``total`` is the snapshot's
 * count, shown only when it is ahead of the page ("51–100 of more" when it is unknown or
 * lags behind).
 */
export function pageSummary(offset, shown, total, more) {
  if (shown <= 0) return offset > 0 ? `none from ${formatCount(offset + 1)}` : "";
  const end = offset + shown;
  const range = `${formatCount(offset + 1)}–${formatCount(end)}`;
  if (!more) return `${range} of ${formatCount(end)}`;
  return typeof total === "number" && total > end ? `${range} of ${formatCount(total)}` : `${range} of more`;
}

/** A size in bytes, short: "512 B", "12.3 kB", "4.1 MB". */
export function formatBytes(value) {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return "—";
  if (value < 1000) return `${Math.round(value)} B`;
  for (const [size, unit] of [
    [1e9, "GB"],
    [1e6, "MB"],
    [1e3, "kB"],
  ]) {
    if (value >= size) {
      const scaled = value / size;
      return `${scaled < 9.95 ? scaled.toFixed(1).replace(/\.0$/, "") : Math.round(scaled)} ${unit}`;
    }
  }
  return `${value} B`;
}

/** The marker of a payload cut short in a list: "truncated · 1.2 MB", or null when whole. */
export function truncationNote(job) {
  if (!job || job.payload_truncated !== true) return null;
  const size = formatBytes(job.payload_bytes);
  return size === "—" ? "truncated" : `truncated · ${size}`;
}

// -- workers -----------------------------------------------------------------------------

/** A time the API gives as ISO 8601 text or as ms since the epoch: ms, or NaN. */
export function timeMs(value) {
  if (typeof value === "number") return Number.isFinite(value) ? value : NaN;
  return parseTime(value);
}

/** A worker's queues: the names it lists, as text. */
export function workerQueues(worker) {
  return Array.isArray(worker?.queues) ? worker.queues.map((q) => String(q)) : [];
}

/**
 * A worker's concurrency: ``{queue: n}`` as "emails 4 · sms 2" (just "4" for one queue),
 * in the order of ``queues`` (the worker's list; others after it, by name), a plain
 * number as itself; "—" when unknown.
 */
export function formatConcurrency(concurrency, queues = []) {
  if (typeof concurrency === "number") return formatCount(concurrency);
  if (!concurrency || typeof concurrency !== "object" || Array.isArray(concurrency)) return "—";
  const rank = (queue) => {
    const index = queues.indexOf(queue);
    return index < 0 ? queues.length : index;
  };
  const pairs = Object.entries(concurrency)
    .filter(([, n]) => typeof n === "number" && Number.isFinite(n))
    .sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
  if (pairs.length === 0) return "—";
  if (pairs.length === 1) return formatCount(pairs[0][1]);
  return pairs.map(([queue, n]) => `${queue} ${formatCount(n)}`).join(" · ");
}

/** How many jobs a worker can run at once (the sum over its queues); null if unknown. */
export function capacity(concurrency) {
  if (typeof concurrency === "number") return Number.isFinite(concurrency) ? concurrency : null;
  if (!concurrency || typeof concurrency !== "object") return null;
  const values = Object.values(concurrency).filter((n) => typeof n === "number" && Number.isFinite(n));
  return values.length ? values.reduce((a, b) => a + b, 0) : null;
}

/** The jobs a worker runs, as ``{queue, id, startedMs}`` (entries without an id left out). */
export function runningJobs(worker) {
  if (!Array.isArray(worker?.running)) return [];
  const out = [];
  for (const item of worker.running) {
    if (!item || typeof item !== "object" || item.id == null) continue;
    out.push({ queue: String(item.queue ?? ""), id: String(item.id), startedMs: timeMs(item.started_at) });
  }
  return out;
}

/** Workers in a stable order for the table: by host, then pid, then id. */
export function sortWorkers(workers) {
  const list = Array.isArray(workers) ? workers.filter((w) => w && typeof w === "object") : [];
  return [...list].sort(
    (a, b) =>
      String(a.host ?? "").localeCompare(String(b.host ?? "")) ||
      (Number(a.pid) || 0) - (Number(b.pid) || 0) ||
      String(a.id ?? "").localeCompare(String(b.id ?? "")),
  );
}

/** A key that changes whenever the number of live workers of some queue does (the stream's). */
export function workersKey(entries) {
  return entries.map((e) => `${e.queue}=${typeof e.workers === "number" ? e.workers : ""}`).join(",");
}
