// The relay-trio dashboard. One EventSource on /api/stream feeds every view; the
// DLQ page is fetched only when the selected queue's DLQ changes. Whatever comes
// from the server (payloads, errors, queue names) is rendered as text, never as HTML.
import uPlot from "./vendor/uPlot.esm.js";
import * as L from "./logic.js";

const HISTORY_MS = 15 * 60_000; // what the charts can show at most
const RATE_SPAN_MS = 5_000; // the throughput tile averages over this
const DLQ_LIMIT = 50;
const TOKEN_KEY = "relay-trio.token";
const HELP_KEY = "relay-trio.help-seen";

const $ = (id) => document.getElementById(id);

const state = {
  token: storage(sessionStorage).get(TOKEN_KEY),
  info: null,
  names: [],
  entries: new Map(), // queue -> latest snapshot entry
  history: new Map(), // queue -> points, oldest first
  arrivals: [], // {t} of recent snapshots, for the poll interval
  selected: null,
  latestTs: null,
  clockOffset: 0, // server clock minus ours, from the snapshots' ts
  lastDataAt: null,
  startedAt: Date.now(),
  errored: false,
  stream: null,
  connecting: false,
  reopenTimer: null,
  reopenDelay: 0,
  seedTs: null, // ts of the current stream's first snapshot, until the second one came
  windowMs: 5 * 60_000,
  dlq: { key: "", queue: null, rows: [], loading: false, again: false, retryAt: 0 },
  formQueueEdited: false,
  connLabel: "",
};

// -- small helpers -------------------------------------------------------------------

function storage(area) {
  // private modes may refuse storage: the page still works, it only forgets
  return {
    get(key) {
      try {
        return area.getItem(key);
      } catch {
        return null;
      }
    },
    set(key, value) {
      try {
        area.setItem(key, value);
      } catch {
        /* not kept */
      }
    },
    remove(key) {
      try {
        area.removeItem(key);
      } catch {
        /* nothing to remove */
      }
    },
  };
}

/** An element; strings among ``children`` become text nodes (never markup). */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...children.filter((c) => c != null));
  return el;
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const queuePath = (queue) => `/api/queues/${encodeURIComponent(queue)}`;

class ApiError extends Error {
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${L.headerValue(state.token)}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, null, "The server cannot be reached");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(
      response.status,
      data,
      L.describeError(response.status, data, response.statusText || "request failed"),
    );
  }
  return data;
}

/** An action's failure: a notice, and a new token prompt on 401. */
function failed(err, what) {
  showNotice(`${what}: ${err.message}`);
  if (err.status === 401) reauthenticate(true);
}

// -- notices -------------------------------------------------------------------------

let noticeTimer = null;

function showNotice(text, kind = "error") {
  const box = $("notice");
  setText($("notice-text"), text);
  box.classList.toggle("ok", kind === "ok");
  box.setAttribute("role", kind === "ok" ? "status" : "alert");
  box.hidden = false;
  clearTimeout(noticeTimer);
  if (kind === "ok") noticeTimer = setTimeout(hideNotice, 4000);
}

function hideNotice() {
  $("notice").hidden = true;
}

// -- dialogs: focus moves in, stays in, and goes back to the opener ----------------------

const openers = new WeakMap();

function openModal(dialog, opener) {
  if (dialog.open) return;
  const active = document.activeElement;
  openers.set(dialog, opener ?? (active && active !== document.body ? active : null));
  dialog.showModal();
}

function focusables(root) {
  return [
    ...root.querySelectorAll(
      'button:not([disabled]), [href], input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])',
    ),
  ].filter((el) => !el.closest("[hidden]"));
}

function wireDialog(dialog) {
  dialog.addEventListener("close", () => {
    const opener = openers.get(dialog);
    openers.delete(dialog);
    if (opener && opener.isConnected) opener.focus();
  });
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") return;
    const items = focusables(dialog);
    if (items.length === 0) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  });
}

function confirmAction(title, text, okLabel) {
  const dialog = $("confirm-dialog");
  setText($("confirm-title"), title);
  setText($("confirm-text"), text);
  setText($("confirm-ok"), okLabel);
  dialog.returnValue = "";
  openModal(dialog);
  $("confirm-cancel").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// -- the token (auth mode) -------------------------------------------------------------

let tokenWaiters = [];

function askToken(refused) {
  const dialog = $("token-dialog");
  $("token-error").hidden = !refused;
  setText($("token-error"), refused ? "That token was refused. Try again." : "");
  $("token-input").value = "";
  openModal(dialog);
  $("token-input").focus();
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

function setToken(token) {
  state.token = token;
  const store = storage(sessionStorage);
  if (token) store.set(TOKEN_KEY, token);
  else store.remove(TOKEN_KEY);
  renderTokenButton();
}

function renderTokenButton() {
  const button = $("forget-token");
  button.hidden = !state.info?.auth_required && !state.token;
  setText(button, state.token ? "Sign out" : "Enter token");
}

/** The token was refused (or forgotten): drop it, close the stream, ask again. */
function reauthenticate(refused) {
  setToken(null);
  closeStream();
  state.errored = true;
  renderConnection();
  connect(refused);
}

// -- connecting: /api/info first (auth, read-only), a ticket, then the stream --------------

async function connect(refused = false) {
  if (state.connecting) return;
  state.connecting = true;
  try {
    let delay = 1000;
    let ticket = null;
    for (;;) {
      try {
        state.info = await api("GET", "/api/info");
        // With a token, the stream takes a ticket good for this one connection: the
        // stream's URL, which proxies and the history keep, never holds the token.
        if (state.info.auth_required) ticket = (await api("POST", "/api/stream/ticket")).ticket;
        break;
      } catch (err) {
        if (err.status === 401) {
          const hadToken = refused || Boolean(state.token);
          setToken(null);
          setToken(await askToken(hadToken));
          refused = false;
          continue;
        }
        state.errored = true;
        renderConnection();
        await sleep(delay);
        delay = Math.min(delay * 2, 10_000);
      }
    }
    applyInfo();
    openStream(ticket);
  } finally {
    state.connecting = false;
  }
}

function applyInfo() {
  const info = state.info;
  document.body.classList.toggle("read-only", Boolean(info.read_only));
  $("readonly-badge").hidden = !info.read_only;
  setText($("version"), info.version ? `v${info.version}` : "");
  renderTokenButton();
}

function openStream(ticket) {
  closeStream();
  const source = new EventSource(L.streamUrl(ticket));
  state.stream = source;
  state.seedTs = undefined; // the first snapshot of this stream is the hub's cached one
  source.onmessage = (event) => {
    if (source !== state.stream) return;
    let entries;
    try {
      entries = JSON.parse(event.data);
    } catch {
      return;
    }
    if (Array.isArray(entries)) onSnapshot(entries);
  };
  source.onerror = () => {
    if (source !== state.stream) return;
    state.errored = true;
    renderConnection();
    // CONNECTING: the browser retries by itself (the server's retry: hint), but not
    // with a ticket: it would send the spent one again. CLOSED (an HTTP error such
    // as 401 or 503): we retry. Ours asks /api/info first, then for a fresh ticket.
    if (ticket || source.readyState === EventSource.CLOSED) scheduleReconnect();
  };
}

function closeStream() {
  if (state.stream) {
    state.stream.onmessage = null;
    state.stream.onerror = null;
    state.stream.close();
    state.stream = null;
  }
}

function scheduleReconnect() {
  closeStream();
  if (state.reopenTimer) return;
  state.reopenDelay = Math.min(state.reopenDelay ? state.reopenDelay * 2 : 1000, 15_000);
  state.reopenTimer = setTimeout(() => {
    state.reopenTimer = null;
    connect();
  }, state.reopenDelay);
}

// -- snapshots ---------------------------------------------------------------------------

function onSnapshot(entries) {
  const now = Date.now();
  const recovered = state.errored;
  state.lastDataAt = now;
  state.errored = false;
  state.reopenDelay = 0;
  let ts = now;
  const names = [];
  const seen = new Set();
  for (const entry of entries) {
    if (!entry || typeof entry.queue !== "string") continue;
    if (Number.isFinite(entry.ts)) ts = entry.ts;
    names.push(entry.queue);
    seen.add(entry.queue);
    state.entries.set(entry.queue, entry);
    const points = state.history.get(entry.queue) ?? [];
    state.history.set(entry.queue, L.appendPoint(points, L.toPoint(entry, ts), HISTORY_MS));
  }
  for (const name of [...state.entries.keys()]) {
    if (!seen.has(name)) {
      state.entries.delete(name);
      state.history.delete(name);
    }
  }
  dropStaleSeed(ts);
  state.names = names;
  state.latestTs = ts;
  state.clockOffset = ts - now;
  state.arrivals = L.appendPoint(state.arrivals, { t: ts }, 60_000).slice(-30);
  state.selected = L.pickQueue(names, hashQueue(), state.selected);
  if (recovered && state.info) refreshInfo();
  render();
}

/**
 * A new stream starts with the hub's cached snapshot, which is as old as the hub's
 * last poll: minutes, if nobody was watching. When the next snapshot shows that it
 * was stale, its point leaves the charts (the tiles showed it for one tick only).
 */
function dropStaleSeed(ts) {
  if (state.seedTs === undefined) {
    state.seedTs = ts;
    return;
  }
  const seed = state.seedTs;
  if (seed === null) return;
  state.seedTs = null;
  if (ts - seed <= L.maxGap(L.medianInterval(state.arrivals, 1000))) return;
  for (const [queue, points] of state.history) {
    if (points.length && points[0].t === seed) state.history.set(queue, points.slice(1));
  }
  state.arrivals = state.arrivals.filter((p) => p.t !== seed);
}

/** After a reconnect the server may have restarted with other settings. */
async function refreshInfo() {
  try {
    state.info = await api("GET", "/api/info");
    applyInfo();
  } catch {
    /* the stream decides what the header says */
  }
}

function hashQueue() {
  return new URLSearchParams(location.hash.slice(1)).get("queue");
}

function selectQueue(name, { focus = false } = {}) {
  state.selected = name;
  history.replaceState(null, "", `#queue=${encodeURIComponent(name)}`);
  $("f-queue").value = name;
  state.formQueueEdited = false;
  render();
  if (focus) $("main").focus();
}

// -- rendering ---------------------------------------------------------------------------

function render() {
  renderConnection();
  renderQueues();
  renderSelected();
  renderCharts();
  refreshDlq();
}

function renderConnection() {
  const now = Date.now();
  const interval = L.medianInterval(state.arrivals, 1000);
  const conn = L.connectionState({
    nowMs: now,
    startedAt: state.startedAt,
    lastDataAt: state.lastDataAt,
    errored: state.errored,
    offlineAfterMs: L.offlineAfter(interval),
  });
  const box = $("conn");
  if (box.dataset.state !== conn) box.dataset.state = conn;
  document.body.dataset.conn = conn; // numbers that may be stale are dimmed
  const label = { live: "Live", reconnecting: "Reconnecting…", offline: "Offline", connecting: "Connecting…" }[conn];
  setText($("conn-label"), label);
  let detail = "";
  if (conn === "live" && state.latestTs) detail = L.formatClock(state.latestTs - state.clockOffset);
  else if (state.lastDataAt && conn !== "connecting") {
    detail = `last data ${L.formatAge(now - state.lastDataAt)} ago`;
  }
  setText($("conn-detail"), detail);
}

function renderQueues() {
  const list = $("queue-list");
  const items = new Map([...list.children].map((li) => [li.dataset.queue, li]));
  state.names.forEach((name, index) => {
    let li = items.get(name);
    items.delete(name);
    if (!li) li = queueItem(name);
    if (list.children[index] !== li) list.insertBefore(li, list.children[index] ?? null);
    const entry = state.entries.get(name);
    const button = li.firstElementChild;
    button.setAttribute("aria-current", name === state.selected ? "true" : "false");
    setText(li.querySelector(".q-count-n"), L.formatCompact(entry.ready));
    li.querySelector(".badge-paused").hidden = !entry.paused;
    const dlq = li.querySelector(".q-dlq");
    dlq.hidden = !(entry.dlq > 0);
    setText(dlq, `${L.formatCompact(entry.dlq)} dead`);
    button.title = `${name}: ${L.formatCount(entry.ready)} ready${entry.paused ? ", paused" : ""}`;
  });
  for (const li of items.values()) li.remove();
  $("queues-empty").hidden = state.names.length > 0;
  setText($("queue-count"), state.names.length ? String(state.names.length) : "");
}

function queueItem(name) {
  const button = h(
    "button",
    { type: "button" },
    h("span", { class: "q-name" }, name),
    h("span", { class: "badge badge-paused", hidden: true }, "paused"),
    h("span", { class: "q-dlq", hidden: true }),
    h("span", { class: "q-count" }, h("span", { class: "q-count-n" }), h("span", { class: "sr-only" }, " ready")),
  );
  button.addEventListener("click", () => selectQueue(name));
  const li = h("li", {}, button);
  li.dataset.queue = name;
  return li;
}

function renderSelected() {
  const entry = state.entries.get(state.selected);
  const points = state.history.get(state.selected) ?? [];
  setText($("queue-title"), entry ? entry.queue : "No queue selected");
  document.title = entry ? `${entry.queue} · relay-trio` : "relay-trio dashboard";
  const sub = entry
    ? entry.paused
      ? "Paused: workers claim nothing from this queue until it is resumed."
      : "Active"
    : state.lastDataAt
      ? "No queues yet: enqueue a job below to make one."
      : "Waiting for the first snapshot…";
  setText($("queue-sub"), sub);
  $("queue-sub").classList.toggle("paused", Boolean(entry?.paused));
  const value = (field) => (entry ? L.formatCount(entry[field]) : "—");
  setText($("t-ready"), value("ready"));
  setText($("t-inflight"), value("inflight"));
  setText($("t-delayed"), value("delayed"));
  setText($("t-dlq"), value("dlq"));
  setText($("t-processed"), value("processed_total"));
  setText($("t-dead"), value("dead_total"));
  setText($("t-rate"), entry ? `${L.formatRate(L.averageRate(points, "processed_total", RATE_SPAN_MS))}/s` : "—");
  const pause = $("pause-btn");
  pause.disabled = !entry;
  setText(pause, entry?.paused ? "Resume" : "Pause");
  pause.dataset.paused = entry?.paused ? "1" : "0";
  if (!state.formQueueEdited && document.activeElement !== $("f-queue")) {
    $("f-queue").value = state.selected ?? ($("f-queue").value || "default");
  }
}

// -- charts (uPlot) ------------------------------------------------------------------------

const charts = {};
const DEPTH_SERIES = [
  ["ready", "Ready", "--ready"],
  ["inflight", "In flight", "--inflight"],
  ["delayed", "Delayed", "--delayed"],
  ["dlq", "Dead-letter", "--dlq"],
];
const RATE_SERIES = [
  ["processed_total", "Processed/s", "--processed"],
  ["dead_total", "Dead-lettered/s", "--dlq"],
];
const INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 1e7, 1e8, 1e9];

function xRange() {
  const end = state.latestTs ?? Date.now() + state.clockOffset;
  const first = state.history.get(state.selected)?.[0]?.t;
  return L.chartRange(first, end, state.windowMs).map((ms) => ms / 1000);
}

function makeChart(box, series, { integers, fill }) {
  const css = getComputedStyle(document.documentElement);
  const color = (name) => css.getPropertyValue(name).trim();
  const axis = {
    stroke: color("--muted"),
    grid: { stroke: color("--grid"), width: 1 },
    ticks: { stroke: color("--grid"), width: 1 },
  };
  const format = integers ? (v) => L.formatCount(v) : (v) => L.formatRate(v);
  const options = {
    width: Math.max(200, box.clientWidth),
    height: 220,
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: { time: true, range: () => xRange() },
      y: { range: (u, min, max) => [0, Math.max(integers ? 4 : 1, (max ?? 0) * 1.15)] },
    },
    axes: [
      axis,
      {
        ...axis,
        size: 52,
        ...(integers ? { incrs: INTEGER_STEPS } : {}),
        values: (u, values) => values.map((v) => (v >= 1000 ? L.formatCompact(v) : String(+v.toFixed(2)))),
      },
    ],
    series: [
      {},
      ...series.map(([, label, colorVar], index) => ({
        label,
        stroke: color(colorVar),
        width: 2,
        points: { size: 5, fill: color("--panel") }, // drawn only while the data is sparse
        fill: fill && index === 0 ? `${color(colorVar)}22` : undefined,
        value: (u, v) => (v == null ? "—" : format(v)),
      })),
    ],
  };
  const chart = new uPlot(options, [[], ...series.map(() => [])], box);
  new ResizeObserver(() => {
    const width = Math.max(200, box.clientWidth);
    if (width !== chart.width) chart.setSize({ width, height: 220 });
  }).observe(box);
  return chart;
}

function renderCharts() {
  charts.depth ??= makeChart($("depth-chart"), DEPTH_SERIES, { integers: true, fill: false });
  charts.rate ??= makeChart($("rate-chart"), RATE_SERIES, { integers: false, fill: true });
  const end = state.latestTs ?? Date.now();
  const points = L.trimWindow(state.history.get(state.selected) ?? [], end, state.windowMs);
  const gap = L.maxGap(L.medianInterval(state.arrivals, 1000));
  const { x, values, rates } = L.chartColumns(
    points,
    DEPTH_SERIES.map(([field]) => field),
    RATE_SERIES.map(([field]) => field),
    gap,
  );
  const seconds = x.map((ms) => ms / 1000);
  charts.depth.setData([seconds, ...values]);
  charts.rate.setData([seconds, ...rates]);
}

// -- the dead-letter queue -------------------------------------------------------------------

async function refreshDlq(force = false) {
  const dlq = state.dlq;
  const queue = state.selected;
  const entry = state.entries.get(queue);
  const key = L.dlqKey(entry);
  if (!force && key === dlq.key && queue === dlq.queue) return;
  if (!force && Date.now() < dlq.retryAt) return;
  if (dlq.loading) {
    dlq.again = true;
    return;
  }
  dlq.loading = true;
  try {
    // an empty DLQ needs no request
    const rows =
      entry && entry.dlq > 0
        ? await api("GET", `${queuePath(queue)}/dlq?limit=${DLQ_LIMIT}`)
        : [];
    if (queue === state.selected) {
      Object.assign(dlq, { key, queue, rows, retryAt: 0 });
      renderDlq();
    }
  } catch (err) {
    dlq.retryAt = Date.now() + 5000;
    failed(err, "Loading the dead-letter queue failed");
  } finally {
    dlq.loading = false;
    if (dlq.again) {
      dlq.again = false;
      refreshDlq();
    }
  }
}

function renderDlq() {
  const { rows, queue } = state.dlq;
  const entry = state.entries.get(queue);
  const body = $("dlq-body");
  body.replaceChildren(...rows.map((job) => dlqRow(queue, job)));
  $("dlq-empty").hidden = rows.length > 0;
  $("dlq-table").hidden = rows.length === 0;
  const total = entry?.dlq ?? rows.length;
  setText(
    $("dlq-summary"),
    total > rows.length ? `· oldest ${rows.length} of ${L.formatCount(total)}` : total ? `· ${L.formatCount(total)}` : "",
  );
  $("dlq-requeue-all").disabled = total === 0;
  $("dlq-purge").disabled = total === 0;
  updateAges();
}

function dlqRow(queue, job) {
  const id = String(job.id);
  const errorText = job.last_error ? String(job.last_error) : "";
  const payload = String(job.payload ?? "");
  const age = h("td", { class: "num age" });
  age.dataset.created = String(job.created_at ?? "");
  const requeue = h("button", { type: "button", class: "btn btn-sm", "aria-label": `Requeue job ${id}` }, "Requeue");
  const remove = h("button", { type: "button", class: "btn btn-sm btn-danger", "aria-label": `Delete job ${id}` }, "Delete");
  requeue.addEventListener("click", () => dlqAction(queue, id, "requeue", requeue));
  remove.addEventListener("click", () => dlqAction(queue, id, "delete", remove));
  const row = h(
    "tr",
    {},
    h("td", { class: "mono", title: id }, L.shortId(id)),
    h("td", { class: "num" }, `${job.attempts}/${job.max_retries}`),
    h("td", { class: "err", title: errorText || null }, errorText ? L.preview(errorText, 120) : "—"),
    h("td", { class: "payload", title: payload.length > 100 ? L.preview(payload, 2000) : null }, L.preview(payload, 100)),
    age,
    h("td", { class: "actions", "data-mutating": true }, requeue, remove),
  );
  row.dataset.id = id;
  return row;
}

function updateAges() {
  const now = Date.now() + state.clockOffset;
  for (const cell of $("dlq-body").querySelectorAll("td.age")) {
    setText(cell, L.formatAge(L.ageMs(cell.dataset.created, now)));
  }
}

/** Focus the same action on the row now at ``index`` (or the last), else the heading. */
function refocusDlq(index, action) {
  const rows = $("dlq-body").rows;
  const row = rows[Math.min(index, rows.length - 1)];
  const target = row?.querySelector(action === "requeue" ? ".btn:not(.btn-danger)" : ".btn-danger");
  (target ?? $("dlq-title")).focus();
}

async function dlqAction(queue, id, action, button) {
  const hadFocus = document.activeElement === button;
  const index = state.dlq.rows.findIndex((job) => job.id === id);
  button.disabled = true;
  try {
    if (action === "requeue") await api("POST", `${queuePath(queue)}/dlq/${id}/requeue`);
    else await api("DELETE", `${queuePath(queue)}/dlq/${id}`);
    state.dlq.rows = state.dlq.rows.filter((job) => job.id !== id);
    if (state.dlq.queue === queue) renderDlq();
    if (hadFocus) refocusDlq(index, action);
    showNotice(`${action === "requeue" ? "Requeued" : "Deleted"} job ${L.shortId(id)}`, "ok");
  } catch (err) {
    button.disabled = false;
    failed(err, `${action === "requeue" ? "Requeue" : "Delete"} failed`);
  }
}

async function dlqBulk(action) {
  const queue = state.selected;
  const entry = state.entries.get(queue);
  if (!queue || !entry) return;
  const count = L.formatCount(entry.dlq);
  const ok =
    action === "purge"
      ? await confirmAction("Purge the dead-letter queue?", `Delete all ${count} dead jobs of ${queue}. This cannot be undone.`, "Purge")
      : await confirmAction("Requeue every dead job?", `Move all ${count} dead jobs of ${queue} back to ready, attempts reset.`, "Requeue all");
  if (!ok) return;
  try {
    const result = await api("POST", `${queuePath(queue)}/dlq/${action}`);
    const n = action === "purge" ? result.purged : result.requeued;
    showNotice(`${action === "purge" ? "Purged" : "Requeued"} ${L.formatCount(n)} job${n === 1 ? "" : "s"}`, "ok");
    await refreshDlq(true);
    if (document.activeElement?.disabled || document.activeElement === document.body) $("dlq-title").focus();
  } catch (err) {
    failed(err, action === "purge" ? "Purge failed" : "Requeue all failed");
  }
}

// -- actions -----------------------------------------------------------------------------------

async function togglePause() {
  const queue = state.selected;
  if (!queue) return;
  const button = $("pause-btn");
  const resume = button.dataset.paused === "1";
  button.disabled = true;
  try {
    const result = await api("POST", `${queuePath(queue)}/${resume ? "resume" : "pause"}`);
    const entry = state.entries.get(queue);
    if (entry) entry.paused = result.paused;
    showNotice(`${queue} ${result.paused ? "paused" : "resumed"}`, "ok");
    renderQueues();
    renderSelected();
  } catch (err) {
    failed(err, resume ? "Resume failed" : "Pause failed");
  } finally {
    button.disabled = !state.entries.get(queue);
  }
}

async function submitEnqueue(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const out = $("enqueue-result");
  const request = L.buildEnqueueRequest(Object.fromEntries(new FormData(form)));
  out.className = "result";
  if (request.error) {
    out.classList.add("error");
    setText(out, request.error);
    return;
  }
  const submit = $("enqueue-submit");
  submit.disabled = true;
  setText(out, "Enqueueing…");
  try {
    const result = await api("POST", request.path, request.body);
    out.classList.add("ok");
    if (request.count === 1) {
      setText(out, `Enqueued job ${L.shortId(result.id)} (${result.state})`);
    } else {
      const dup = result.duplicates ? `, ${L.formatCount(result.duplicates)} duplicates` : "";
      setText(out, `Enqueued ${L.formatCount(result.enqueued)} jobs (${result.state ?? "none"})${dup}`);
    }
  } catch (err) {
    out.classList.add("error");
    setText(out, err.message);
    if (err.status === 401) reauthenticate(true);
  } finally {
    submit.disabled = false;
  }
}

// -- wiring ------------------------------------------------------------------------------------

function isTyping(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

function wire() {
  for (const id of ["help", "token-dialog", "confirm-dialog"]) wireDialog($(id));
  const help = $("help");
  $("help-open").addEventListener("click", (e) => openModal(help, e.currentTarget));
  $("help-close").addEventListener("click", () => help.close());
  $("help-ok").addEventListener("click", () => help.close());
  document.addEventListener("keydown", (event) => {
    if (event.key !== "?" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (isTyping(event.target) || document.querySelector("dialog[open]")) return;
    event.preventDefault();
    openModal(help, $("help-open"));
  });

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) {
      $("token-error").hidden = false;
      setText($("token-error"), "Enter the server's API token.");
      return;
    }
    $("token-dialog").close();
    const waiters = tokenWaiters;
    tokenWaiters = [];
    for (const resolve of waiters) resolve(token);
  });
  // Without a token nothing works: Escape does not dismiss the prompt (the browser
  // may still close it on a second Escape; then the header's button reopens it).
  $("token-dialog").addEventListener("cancel", (event) => event.preventDefault());
  $("token-dialog").addEventListener("close", () => {
    if (tokenWaiters.length) showNotice("This server needs an API token: use “Enter token” above.");
  });
  $("forget-token").addEventListener("click", (event) => {
    if (tokenWaiters.length) openModal($("token-dialog"), event.currentTarget);
    else reauthenticate(false);
  });

  $("notice-close").addEventListener("click", hideNotice);
  $("pause-btn").addEventListener("click", togglePause);
  $("dlq-requeue-all").addEventListener("click", () => dlqBulk("requeue-all"));
  $("dlq-purge").addEventListener("click", () => dlqBulk("purge"));
  $("enqueue-form").addEventListener("submit", submitEnqueue);
  $("f-queue").addEventListener("input", () => {
    state.formQueueEdited = true;
  });
  $("f-count").addEventListener("input", (event) => {
    const bulk = Number(event.currentTarget.value) > 1;
    $("f-key").disabled = bulk;
    if (bulk) $("f-key").value = "";
  });
  $("window-select").addEventListener("change", (event) => {
    state.windowMs = Number(event.currentTarget.value) * 60_000;
    renderCharts();
  });
  window.addEventListener("hashchange", () => {
    const wanted = hashQueue();
    if (wanted && state.entries.has(wanted)) selectQueue(wanted);
  });

  setInterval(() => {
    renderConnection();
    updateAges();
  }, 1000);
}

function start() {
  wire();
  renderSelected();
  renderDlq();
  renderCharts();
  renderConnection();
  const seen = storage(localStorage);
  if (!seen.get(HELP_KEY)) {
    seen.set(HELP_KEY, "1");
    openModal($("help"));
  }
  connect();
}

start();
