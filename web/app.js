// The relay-trio dashboard. One EventSource on /api/stream feeds every view; a page
// of a job list is fetched only when the selected queue's counts change (at most every
// LIST_MIN_INTERVAL_MS, and only while the list is on screen), an open job when its
// queue's counts change (and by a long-poll that its end wakes), the schedules every
// SCHEDULES_REFRESH_MS and the workers every WORKERS_REFRESH_MS while their panel is on
// screen. Whatever comes from the server (payloads, results, errors, names, hosts) is
// rendered as text, never as HTML.
import uPlot from "./vendor/uPlot.esm.js";
import * as L from "./logic.js";

const HISTORY_MS = 15 * 60_000; // what the charts can show at most
const RATE_SPAN_MS = 5_000; // the throughput tile averages over this
const PAGE = L.JOB_PAGE_SIZE; // jobs on one page of a list
const LIST_MIN_INTERVAL_MS = 2_000; // a list that keeps changing is read at most this often
const LIST_RETRY_MS = 5_000; // a list that failed to load is asked for again after this
const WORKERS_REFRESH_MS = 3_000; // workers are not in the stream: read this often while seen
const WORKER_LATE_MS = 10_000; // a worker not seen for this long is shown as late
const RUNNING_LINKS = 8; // running jobs linked per worker; the rest are counted
const TOKEN_KEY = "relay-trio.token";
const HELP_KEY = "relay-trio.help-seen";
const SCHEDULES_REFRESH_MS = 15_000; // schedules are not in the stream: fetched this often
const JOB_RETRY_MS = 5_000; // a failed long-poll waits this long before the next

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
  // the job lists: one page of one state of the selected queue. ``loadedFor`` is the view
  // (queue, tab, offset) the rows belong to, ``key`` the queue's counts they were read at.
  jobs: {
    queue: null,
    tab: "ready",
    chosen: false, // the user (or the URL) picked the tab: it stays across queues
    offset: 0,
    rows: [],
    more: false,
    loadedFor: "",
    key: "",
    loading: false,
    again: false,
    error: "",
    fetchedAt: 0,
    retryAt: 0,
    timer: null,
    inView: false,
  },
  // the live workers (GET /api/workers), read at the start, then every WORKERS_REFRESH_MS
  // while their panel is on screen, and at once when the stream's worker counts change
  workers: { rows: [], loaded: false, loading: false, again: false, dirty: false, error: "", fetchedAt: 0, key: null, inView: false },
  formQueueEdited: false,
  connLabel: "",
  // the open job: ``gen`` changes with every job opened (or closed), so that an answer
  // for an earlier one is dropped
  job: {
    gen: 0,
    queue: null,
    id: null,
    data: null,
    error: "", // why it could not be read
    actionError: "", // why a cancel was refused: kept until the next one, or another job
    abortRequested: false,
    fetching: false,
    again: false,
    watchKey: "",
    controller: null, // the long-poll's, while one runs
    updatedAt: null,
  },
  // the schedules are read once at the start, then every SCHEDULES_REFRESH_MS while their
  // panel is on screen (and on "Refresh"): a page nobody scrolls down costs Redis nothing
  schedules: { rows: [], fetchedAt: 0, loaded: false, loading: false, error: "", inView: false },
  findQueueEdited: false,
  scheduleQueueEdited: false,
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

async function api(method, path, body, { signal } = {}) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${L.headerValue(state.token)}`;
  const init = { method, headers, cache: "no-store", signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    if (signal?.aborted) throw new ApiError(-1, null, "aborted");
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
  renderJob();
  if (!state.schedules.loaded) refreshSchedules();
  if (!state.workers.loaded) refreshWorkers();
  // a job named in the URL opens once the server has said whether it wants a token
  if (state.job.id === null && hashJob()) openJobFromHash();
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

/** ``tab=<state>`` of the URL's fragment (a job list), or null. */
function hashTab() {
  const tab = new URLSearchParams(location.hash.slice(1)).get("tab");
  return L.JOB_LIST_STATES.has(tab) ? tab : null;
}

/** ``job=<queue>/<id>`` of the URL's fragment, or null. */
function hashJob() {
  return new URLSearchParams(location.hash.slice(1)).get("job");
}

/** The fragment says which queue is selected and which job is open: links can share both. */
function writeHash() {
  const params = new URLSearchParams();
  if (state.selected) params.set("queue", state.selected);
  if (state.jobs.chosen) params.set("tab", state.jobs.tab);
  if (state.job.id) params.set("job", `${state.job.queue}/${state.job.id}`);
  const text = params.toString();
  history.replaceState(null, "", text ? `#${text}` : location.pathname + location.search);
}

function selectQueue(name, { focus = false } = {}) {
  state.selected = name;
  writeHash();
  $("f-queue").value = name;
  state.formQueueEdited = false;
  render();
  if (focus) $("main").focus();
}

// -- rendering ---------------------------------------------------------------------------

function render() {
  renderConnection();
  syncJobsView();
  renderQueues();
  renderSelected();
  renderCharts();
  refreshJobs();
  watchJob();
  watchWorkers();
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
    const workers = typeof entry.workers === "number" ? `, ${L.formatCount(entry.workers)} worker${entry.workers === 1 ? "" : "s"}` : "";
    button.title = `${name}: ${L.formatCount(entry.ready)} ready${workers}${entry.paused ? ", paused" : ""}`;
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
  renderWorkersTile(entry);
  renderJobMeta();
  markSelectedQueue();
  const pause = $("pause-btn");
  pause.disabled = !entry;
  setText(pause, entry?.paused ? "Resume" : "Pause");
  pause.dataset.paused = entry?.paused ? "1" : "0";
  if (!state.formQueueEdited && document.activeElement !== $("f-queue")) {
    $("f-queue").value = state.selected ?? ($("f-queue").value || "default");
  }
  // the other forms' queue follows the selection too, until one is typed in
  for (const [id, edited] of [
    ["j-queue", state.findQueueEdited || state.job.id !== null], // an open job shows its own
    ["s-queue", state.scheduleQueueEdited],
  ]) {
    const input = $(id); // the schedule form is in the page only while it is open
    if (input && !edited && document.activeElement !== input && state.selected) input.value = state.selected;
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

// -- the workers tile ----------------------------------------------------------------------------

/** The live workers of the selected queue, from the stream (older servers do not say: "—"). */
function renderWorkersTile(entry) {
  const count = entry && typeof entry.workers === "number" ? entry.workers : null;
  setText($("t-workers"), count === null ? "—" : L.formatCount(count));
  const starving = count === 0 && (entry?.ready ?? 0) > 0;
  const note = count === 0 ? (starving ? "none: its jobs wait" : "none serving it") : "serving this queue";
  setText($("t-workers-note"), note);
  $("t-workers-note").classList.toggle("warn", starving);
}

// -- job lists: one page of one state of the selected queue ------------------------------------

/** The view the list shows: queue, tab and offset. Rows read for another view are not shown. */
function jobsView() {
  const jobs = state.jobs;
  return `${jobs.queue}|${jobs.tab}|${jobs.offset}`;
}

/** The list follows the selected queue: a new queue starts on its first page, on the tab the
 * user chose, else on its default one (the dead-letter queue when it holds jobs). */
function syncJobsView() {
  const jobs = state.jobs;
  if (state.selected === jobs.queue) return;
  jobs.queue = state.selected;
  jobs.offset = 0;
  if (!jobs.chosen) jobs.tab = L.defaultTab(state.entries.get(jobs.queue), null);
  Object.assign(jobs, { rows: [], more: false, loadedFor: "", key: "", error: "", retryAt: 0 });
  renderJobs();
}

/** Whether the list is on screen, in a tab that is seen, on a page that is connected. */
function jobsSeen() {
  return Boolean(state.info) && state.jobs.inView && document.visibilityState !== "hidden";
}

/**
 * Read the page the list shows, if it may have changed. ``force`` (the user asked: a tab,
 * a page, Refresh, an action) reads it at once; otherwise it is read only while seen, when
 * the view or the queue's counts changed, at most every LIST_MIN_INTERVAL_MS (a busy queue
 * changes every tick) and not within LIST_RETRY_MS of a failure.
 */
async function refreshJobs(force = false) {
  const jobs = state.jobs;
  syncJobsView();
  const queue = jobs.queue;
  const entry = state.entries.get(queue);
  if (!queue || !entry) return;
  const view = jobsView();
  const key = L.listKey(entry, jobs.tab);
  const changed = view !== jobs.loadedFor;
  if (!force) {
    if (!changed && key === jobs.key) return;
    if (!jobsSeen() || Date.now() < jobs.retryAt) return; // when seen again, or on a later snapshot
    const wait = jobs.fetchedAt + LIST_MIN_INTERVAL_MS - Date.now();
    if (!changed && wait > 0) {
      jobs.timer ??= setTimeout(() => {
        jobs.timer = null;
        refreshJobs();
      }, wait);
      return;
    }
  }
  if (jobs.loading) {
    jobs.again = true;
    return;
  }
  jobs.loading = true;
  const { tab, offset } = jobs;
  try {
    // a list the snapshot counts as empty needs no request
    const empty = L.tabCount(entry, tab) === 0 && offset === 0;
    const data = empty ? [] : await api("GET", L.jobListPath(queue, tab, offset));
    if (view === jobsView()) {
      const list = Array.isArray(data) ? data.filter((job) => job && typeof job === "object") : [];
      Object.assign(jobs, { rows: list.slice(0, PAGE), more: list.length > PAGE, loadedFor: view, key, error: "", retryAt: 0 });
      if (jobs.rows.length === 0 && jobs.offset > 0) {
        // the page emptied (its jobs moved on): show the one before it
        jobs.offset = Math.max(0, jobs.offset - PAGE);
        jobs.again = true;
      }
      renderJobs();
    }
  } catch (err) {
    if (view === jobsView()) {
      jobs.error = `Loading the jobs failed: ${err.message}`;
      jobs.retryAt = Date.now() + LIST_RETRY_MS;
      renderJobMeta();
    }
    if (err.status === 401) reauthenticate(true);
  } finally {
    jobs.fetchedAt = Date.now();
    jobs.loading = false;
    if (jobs.again) {
      jobs.again = false;
      refreshJobs(true);
    }
  }
}

/** Show another tab (its first page), and read it. */
function selectTab(tab, { focus = false } = {}) {
  const jobs = state.jobs;
  if (!L.JOB_LIST_STATES.has(tab)) return;
  jobs.chosen = true;
  if (tab !== jobs.tab) {
    jobs.tab = tab;
    jobs.offset = 0;
    jobs.more = false;
    jobs.error = "";
  }
  writeHash();
  renderJobs();
  $("jobs-scroll").scrollTop = 0;
  if (focus) $(`tab-${tab}`).focus();
  refreshJobs(true);
}

function turnPage(step) {
  const jobs = state.jobs;
  const offset = Math.max(0, jobs.offset + step * PAGE);
  if (offset === jobs.offset) return;
  jobs.offset = offset;
  jobs.error = "";
  renderJobs();
  $("jobs-scroll").scrollTop = 0;
  refreshJobs(true);
}

/** The rows of the list (when they change), then what follows the snapshots. */
function renderJobs() {
  const jobs = state.jobs;
  const loaded = jobs.loadedFor === jobsView();
  // another page of the same list keeps showing (dimmed) until its own rows come
  const samelist = jobs.loadedFor.startsWith(`${jobs.queue}|${jobs.tab}|`);
  const rows = loaded || samelist ? jobs.rows : [];
  const dead = jobs.tab === "dead";
  $("jobs-table").classList.toggle("stale", !loaded);
  const body = dead ? $("dlq-body") : $("jobs-body");
  const other = dead ? $("jobs-body") : $("dlq-body");
  other.hidden = true;
  other.replaceChildren();
  body.hidden = false;
  replaceRows(body, rows.map((job) => jobRow(jobs.queue, jobs.tab, job)));
  $("jobs-table").dataset.state = jobs.tab;
  $("jobs-scroll").hidden = rows.length === 0;
  const tab = L.jobTab(jobs.tab);
  const label = tab?.label ?? jobs.tab;
  setText($("jobs-caption"), `${label} jobs of ${jobs.queue ?? "no queue"}`);
  setText($("jobs-when-h"), tab?.whenLabel || "When");
  $("dlq-empty").hidden = !(loaded && dead && rows.length === 0);
  $("jobs-empty").hidden = !(loaded && !dead && rows.length === 0);
  setText($("jobs-empty"), jobs.offset > 0 ? "No jobs on this page." : `No ${label.toLowerCase()} jobs.`);
  renderJobMeta();
  markOpenJob();
  updateAges();
}

/** The tabs' counts, the page's summary and buttons, the DLQ's actions: on every snapshot. */
function renderJobMeta() {
  const jobs = state.jobs;
  const entry = state.entries.get(jobs.queue);
  for (const button of $("job-tabs").querySelectorAll('[role="tab"]')) {
    const selected = button.dataset.state === jobs.tab;
    if (button.getAttribute("aria-selected") !== String(selected)) button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
    const count = L.tabCount(entry, button.dataset.state);
    const badge = button.querySelector(".tab-count");
    setText(badge, count === null ? "" : L.formatCompact(count));
    badge.toggleAttribute("data-some", Boolean(count));
  }
  $("jobs-panel").setAttribute("aria-labelledby", `tab-${jobs.tab}`);
  setText($("jobs-queue"), jobs.queue ? `· ${jobs.queue}` : "");
  const loaded = jobs.loadedFor === jobsView();
  let summary = "";
  if (loaded) summary = L.pageSummary(jobs.offset, jobs.rows.length, L.tabCount(entry, jobs.tab), jobs.more);
  else if (jobs.queue && !jobs.error) summary = "Loading…";
  setText($("jobs-summary"), summary);
  const prev = $("jobs-prev");
  const next = $("jobs-next");
  prev.disabled = jobs.offset === 0;
  next.disabled = !loaded || !jobs.more;
  const single = jobs.offset === 0 && !jobs.more;
  prev.hidden = single;
  next.hidden = single;
  const error = $("jobs-error");
  error.hidden = !jobs.error;
  setText(error, jobs.error);
  $("dlq-actions").hidden = jobs.tab !== "dead";
  const dead = L.tabCount(entry, "dead") ?? 0;
  $("dlq-requeue-all").disabled = dead === 0;
  $("dlq-purge").disabled = dead === 0;
}

/**
 * ``body``'s rows replaced by ``rows``, keeping the keyboard focus: a focused element
 * with a ``data-key`` is focused again in the new rows (the same button of the same job).
 */
function replaceRows(body, rows) {
  const active = document.activeElement;
  const key = active && body.contains(active) ? active.dataset.key : undefined;
  body.replaceChildren(...rows);
  if (key) body.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

function jobLink(queue, id, label, text) {
  const attrs = { type: "button", class: "link-btn job-link", title: `${queue}/${id}`, "aria-label": label };
  const open = h("button", attrs, text);
  open.dataset.key = `open:${queue}/${id}`;
  open.addEventListener("click", () => openJob(queue, id));
  return open;
}

function jobRow(queue, tab, job) {
  const id = String(job.id);
  const errorText = job.last_error ? String(job.last_error) : "";
  const payload = String(job.payload ?? "");
  const created = L.parseTime(job.created_at);
  const age = h("td", { class: "num age", title: Number.isFinite(created) ? L.formatDateTime(created) : null });
  age.dataset.created = String(job.created_at ?? "");
  // the time that orders this state's list: lease end, ready at, dead since, finished
  const field = L.jobTab(tab)?.when;
  const whenMs = field ? L.parseTime(job[field]) : NaN;
  const when = h("td", { class: "num when-at col-when" });
  if (Number.isFinite(whenMs)) {
    when.dataset.at = String(whenMs);
    when.title = L.formatDateTime(whenMs);
  } else when.append(h("span", { class: "muted" }, "—"));
  const truncated = L.truncationNote(job);
  const payloadCell = h(
    "td",
    { class: "payload", title: payload.length > 100 ? L.preview(payload, 2000) : null },
    L.preview(payload, 100),
    truncated ? h("span", { class: "trunc", title: "Only the start of the payload is listed: open the job for all of it" }, truncated) : null,
  );
  const result = tab === "done" ? L.resultText(job) : null;
  const actions = h("td", { class: "actions col-actions", "data-mutating": true });
  if (tab === "dead") {
    const requeue = h("button", { type: "button", class: "btn btn-sm", "aria-label": `Requeue job ${id}` }, "Requeue");
    const remove = h("button", { type: "button", class: "btn btn-sm btn-danger", "aria-label": `Delete job ${id}` }, "Delete");
    requeue.dataset.key = `requeue:${id}`;
    remove.dataset.key = `delete:${id}`;
    requeue.addEventListener("click", () => dlqAction(queue, id, "requeue", requeue));
    remove.addEventListener("click", () => dlqAction(queue, id, "delete", remove));
    actions.append(requeue, remove);
  }
  const attempts = `${job.attempts ?? "—"}/${job.max_retries ?? "—"}`;
  const row = h(
    "tr",
    {},
    h("td", { class: "mono" }, jobLink(queue, id, `Open job ${id}`, L.shortId(id))),
    h("td", { class: "num" }, attempts),
    h("td", { class: "num" }, String(job.priority ?? "—")),
    age,
    when,
    h("td", { class: "err", title: errorText || null }, errorText ? L.preview(errorText, 120) : h("span", { class: "muted" }, "—")),
    payloadCell,
    h("td", { class: "result-preview col-result", title: result && result.length > 80 ? L.preview(result, 2000) : null }, result === null ? h("span", { class: "muted" }, "—") : L.preview(result, 80)),
    actions,
  );
  row.dataset.id = id;
  return row;
}

/** The open job's row, if the list shows it, is marked. */
function markOpenJob() {
  const { queue, id } = state.job;
  for (const row of $("jobs-panel").querySelectorAll("tbody tr")) {
    row.classList.toggle("is-open", Boolean(id) && queue === state.jobs.queue && row.dataset.id === id);
  }
}

function updateAges() {
  const now = Date.now() + state.clockOffset;
  for (const cell of $("jobs-panel").querySelectorAll("td.age")) {
    setText(cell, L.formatAge(L.ageMs(cell.dataset.created, now)));
  }
  for (const cell of $("jobs-panel").querySelectorAll("td.when-at[data-at]")) {
    setText(cell, L.formatRelative(Number(cell.dataset.at) - now));
  }
}

/** Focus the same action on the row now at ``index`` (or the last), else the heading. */
function refocusDlq(index, action) {
  const rows = $("dlq-body").rows;
  const row = rows[Math.min(index, rows.length - 1)];
  const target = row?.querySelector(action === "requeue" ? ".btn:not(.btn-danger)" : ".btn-danger");
  (target ?? $("jobs-title")).focus();
}

async function dlqAction(queue, id, action, button) {
  const hadFocus = document.activeElement === button;
  const jobs = state.jobs;
  const index = jobs.rows.findIndex((job) => job.id === id);
  button.disabled = true;
  try {
    if (action === "requeue") await api("POST", `${queuePath(queue)}/dlq/${encodeURIComponent(id)}/requeue`);
    else await api("DELETE", `${queuePath(queue)}/dlq/${encodeURIComponent(id)}`);
    if (jobs.queue === queue && jobs.tab === "dead") {
      jobs.rows = jobs.rows.filter((job) => job.id !== id);
      renderJobs();
    }
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
    if (state.jobs.queue === queue && state.jobs.tab === "dead") {
      state.jobs.offset = 0;
      state.jobs.rows = [];
      state.jobs.more = false; // nothing of it is left (or only jobs dead since)
      renderJobs();
    }
    await refreshJobs(true);
    if (document.activeElement?.disabled || document.activeElement === document.body) $("jobs-title").focus();
  } catch (err) {
    failed(err, action === "purge" ? "Purge failed" : "Requeue all failed");
  }
}

// -- workers -------------------------------------------------------------------------------------

/** Whether the workers panel is on screen, in a tab that is seen, on a page that is connected. */
function workersSeen() {
  return Boolean(state.info) && state.workers.inView && document.visibilityState !== "hidden";
}

/** Read the workers if they are seen and older than WORKERS_REFRESH_MS (or the stream says they changed). */
function refreshStaleWorkers() {
  const workers = state.workers;
  // (checked every second: a read due within the next tick is made now)
  const due = Date.now() - workers.fetchedAt >= WORKERS_REFRESH_MS - 500;
  if (workersSeen() && (workers.dirty || due)) refreshWorkers();
}

/** On a snapshot: a queue's count of live workers changed, so the list did. */
function watchWorkers() {
  const workers = state.workers;
  const key = L.workersKey(state.names.map((name) => state.entries.get(name)));
  if (key === workers.key) return;
  const first = workers.key === null;
  workers.key = key;
  if (!first) {
    workers.dirty = true;
    refreshStaleWorkers();
  }
}

async function refreshWorkers() {
  const workers = state.workers;
  if (workers.loading) {
    workers.again = true;
    return;
  }
  workers.loading = true;
  workers.dirty = false;
  try {
    const rows = await api("GET", "/api/workers");
    workers.rows = L.sortWorkers(rows);
    workers.error = "";
    workers.loaded = true;
  } catch (err) {
    workers.error = `Loading the workers failed: ${err.message}`;
  } finally {
    workers.fetchedAt = Date.now();
    workers.loading = false;
  }
  renderWorkers();
  if (workers.again) {
    workers.again = false;
    refreshWorkers();
  }
}

function renderWorkers() {
  const { rows, error, loaded, fetchedAt } = state.workers;
  replaceRows($("workers-body"), rows.map(workerRow));
  $("workers-table").hidden = rows.length === 0;
  $("workers-empty").hidden = rows.length > 0 || !loaded;
  setText($("workers-summary"), loaded ? `· ${L.formatCount(rows.length)} live` : "");
  setText($("workers-read"), fetchedAt ? `read ${L.formatClock(fetchedAt)}` : "");
  $("workers-error").hidden = !error;
  setText($("workers-error"), error);
  markSelectedQueue();
  updateWorkerTimes();
}

function workerRow(worker) {
  const id = String(worker.id ?? "");
  const queues = L.workerQueues(worker);
  const running = L.runningJobs(worker);
  // ``running`` lists at most so many; ``running_count`` counts them all
  const count = Number.isFinite(worker.running_count) ? worker.running_count : running.length;
  const cap = L.capacity(worker.concurrency);
  const version = worker.version ? ` · v${worker.version}` : "";
  const host = h(
    "td",
    { class: "host", title: `${id}${version}` },
    h("span", { class: "host-name" }, String(worker.host ?? "?")),
    h("span", { class: "worker-id" }, id),
  );
  const links = running.slice(0, RUNNING_LINKS).map((job) => {
    const since = Number.isFinite(job.startedMs) ? `, since ${L.formatDateTime(job.startedMs)}` : "";
    const link = jobLink(job.queue, job.id, `Open running job ${job.id}`, L.shortId(job.id));
    link.title = `${job.queue}/${job.id}${since}`;
    return h("li", {}, link);
  });
  const unlisted = Math.max(count, running.length) - links.length;
  if (unlisted > 0 && links.length) links.push(h("li", { class: "muted" }, `+${L.formatCount(unlisted)} more`));
  const runningCell = h(
    "td",
    { class: "running" },
    h("span", { class: "run-count" }, cap === null ? L.formatCount(count) : `${L.formatCount(count)} of ${L.formatCount(cap)}`),
    links.length ? h("ul", { class: "run-list" }, ...links) : null,
  );
  const uptime = h("td", { class: "num uptime" });
  const started = L.timeMs(worker.started_at);
  if (Number.isFinite(started)) {
    uptime.dataset.since = String(started);
    uptime.title = `started ${L.formatDateTime(started)}`;
  } else uptime.append("—");
  const seen = h("td", { class: "num seen" });
  const seenMs = L.timeMs(worker.last_seen ?? worker.last_seen_ms);
  if (Number.isFinite(seenMs)) {
    seen.dataset.at = String(seenMs);
    seen.title = L.formatDateTime(seenMs);
  } else seen.append("—");
  const row = h(
    "tr",
    {},
    host,
    h("td", { class: "num pid" }, worker.pid == null ? "—" : String(worker.pid)),
    h("td", { class: "queues" }, ...queues.map((queue) => h("span", { class: "chip" }, queue))),
    h("td", { class: "concurrency" }, L.formatConcurrency(worker.concurrency, queues)),
    runningCell,
    uptime,
    seen,
  );
  row.dataset.id = id;
  return row;
}

/** The selected queue stands out among the workers' queues. */
function markSelectedQueue() {
  for (const chip of $("workers-body").querySelectorAll(".chip")) {
    chip.classList.toggle("chip-on", chip.textContent === state.selected);
  }
}

/** Uptime and "last seen" follow the clock between reads. */
function updateWorkerTimes() {
  const now = Date.now() + state.clockOffset;
  for (const cell of $("workers-body").querySelectorAll("td.uptime[data-since]")) {
    setText(cell, L.formatAge(now - Number(cell.dataset.since)));
  }
  for (const cell of $("workers-body").querySelectorAll("td.seen[data-at]")) {
    const delta = Number(cell.dataset.at) - now;
    setText(cell, L.formatRelative(Math.min(0, delta)));
    cell.classList.toggle("late", -delta > WORKER_LATE_MS);
  }
}

// -- one job: find, follow, cancel -------------------------------------------------------------

/** Forget the open job (a new ``gen``: answers still coming for it are dropped), then set ``fields``. */
function resetJob(fields = {}) {
  stopFollowing();
  const job = state.job;
  Object.assign(job, {
    gen: job.gen + 1,
    queue: null,
    id: null,
    data: null,
    error: "",
    actionError: "",
    abortRequested: false,
    again: false,
    watchKey: "",
    updatedAt: null,
    ...fields,
  });
}

/** Open the job ``id`` of ``queue`` in the job panel (and forget the one open before). */
function openJob(queue, id, { focus = true } = {}) {
  resetJob({ queue, id, watchKey: L.jobWatchKey(state.entries.get(queue)) });
  $("j-queue").value = queue;
  $("j-id").value = id;
  writeHash();
  renderJob();
  fetchJob();
  if (focus) {
    $("job-card").scrollIntoView({ block: "nearest" });
    $("job-card-title").focus({ preventScroll: true });
  }
}

function closeJob() {
  resetJob();
  writeHash();
  renderJob();
  $("j-id").focus();
}

function openJobFromHash() {
  const ref = hashJob();
  if (!ref) return;
  const parsed = L.parseJobRef({ id: ref });
  if (parsed.error) return;
  if (parsed.queue === state.job.queue && parsed.id === state.job.id) return;
  openJob(parsed.queue, parsed.id, { focus: false });
}

function submitFind(event) {
  event.preventDefault();
  const parsed = L.parseJobRef(Object.fromEntries(new FormData(event.currentTarget)));
  if (parsed.error) {
    resetJob({ error: parsed.error });
    writeHash();
    renderJob();
    return;
  }
  openJob(parsed.queue, parsed.id);
}

/** Read the open job once (no wait); then follow it while it may still change. */
async function fetchJob() {
  const job = state.job;
  if (!job.id) return;
  if (job.fetching) {
    job.again = true;
    return;
  }
  const gen = job.gen;
  job.fetching = true;
  try {
    applyJob(await api("GET", L.jobPath(job.queue, job.id)), gen);
  } catch (err) {
    jobFailed(err, gen);
  } finally {
    job.fetching = false;
    if (job.again) {
      job.again = false;
      if (job.gen === gen) fetchJob();
    }
  }
}

function applyJob(data, gen) {
  const job = state.job;
  if (gen !== job.gen || !data || typeof data !== "object") return;
  job.data = data;
  job.error = "";
  job.updatedAt = Date.now();
  if (data.state !== "inflight") job.abortRequested = false;
  renderJob();
  follow();
}

function jobFailed(err, gen) {
  const job = state.job;
  if (gen !== job.gen || err.status === -1) return;
  job.error = err.message;
  if (err.status === 404) {
    job.data = null; // gone (or never was): nothing left to follow
    stopFollowing();
  }
  renderJob();
  if (err.status === 401) reauthenticate(true);
}

/**
 * While the open job may still end (ready, delayed, in flight) and the page is seen,
 * one ``?wait=`` request at a time waits for its end: the server answers as soon as
 * the job is done, dead or cancelled (an abort shows at once), or after JOB_WAIT_S
 * with the job as it is. What happens in between (claimed, retried) the snapshots
 * tell: see :func:`watchJob`.
 */
async function follow() {
  const job = state.job;
  if (job.controller || !job.data || !L.ACTIVE_STATES.has(job.data.state)) return;
  if (document.visibilityState === "hidden") return; // a hidden tab keeps no request open
  const gen = job.gen;
  const controller = new AbortController();
  job.controller = controller;
  renderJobLive();
  try {
    while (job.gen === gen && job.data && L.ACTIVE_STATES.has(job.data.state) && !controller.signal.aborted) {
      try {
        const path = `${L.jobPath(job.queue, job.id)}?wait=${L.JOB_WAIT_S}`;
        const asked = Date.now();
        const before = job.data.state;
        const data = await api("GET", path, undefined, { signal: controller.signal });
        if (job.gen !== gen || controller.signal.aborted) break;
        // a server that answered at once with nothing new (it did not wait) is not asked
        // again at once
        if (data?.state === before && Date.now() - asked < 1000) await sleep(1000);
        if (job.gen !== gen || controller.signal.aborted) break;
        job.data = data;
        job.error = "";
        job.updatedAt = Date.now();
        if (data.state !== "inflight") job.abortRequested = false;
        renderJob();
      } catch (err) {
        if (job.gen !== gen || controller.signal.aborted) break;
        if (err.status === 404 || err.status === 401) {
          jobFailed(err, gen);
          break;
        }
        // too many waits (429), a restart, a lost network: try again in a while; the
        // snapshots keep the panel current meanwhile
        await sleep(JOB_RETRY_MS);
      }
    }
  } finally {
    if (job.controller === controller) job.controller = null;
    renderJobLive();
  }
}

function stopFollowing() {
  const job = state.job;
  if (job.controller) {
    job.controller.abort();
    job.controller = null;
  }
}

/** On a snapshot: read the open job again if its queue's counts moved (it may have). */
function watchJob() {
  const job = state.job;
  if (!job.id || !job.data || !(L.ACTIVE_STATES.has(job.data.state) || job.data.state === "dead")) return;
  const key = L.jobWatchKey(state.entries.get(job.queue));
  if (key === job.watchKey) return;
  job.watchKey = key;
  fetchJob();
}

async function cancelJob() {
  const job = state.job;
  if (!job.id || !job.data) return;
  const gen = job.gen;
  const button = $("job-cancel");
  const hadFocus = document.activeElement === button;
  button.disabled = true;
  try {
    const result = await api("POST", L.jobPath(job.queue, job.id, "cancel"));
    if (gen !== job.gen) return;
    job.actionError = "";
    job.abortRequested = result.state === "inflight";
    job.data = { ...job.data, state: result.state };
    renderJob();
    showNotice(
      result.state === "inflight"
        ? `Abort requested for job ${L.shortId(job.id)}: its worker stops it within a second`
        : `Cancelled job ${L.shortId(job.id)}`,
      "ok",
    );
    fetchJob();
  } catch (err) {
    if (gen !== job.gen) return;
    job.actionError = err.message;
    if (err.status === 409 && typeof err.body?.state === "string") job.data = { ...job.data, state: err.body.state };
    if (err.status === 404) job.data = null;
    renderJob();
    if (err.status === 401) reauthenticate(true);
    else if (err.status !== 404) fetchJob();
  } finally {
    if (hadFocus && !button.disabled && !button.closest("[hidden]")) button.focus();
    else if (hadFocus) $("job-card-title").focus();
  }
}

function renderJob() {
  const job = state.job;
  const data = job.data;
  const error = $("job-error");
  const message = job.error || job.actionError;
  error.hidden = !message;
  setText(error, message);
  $("job-detail").hidden = !data;
  setText($("job-head-id"), job.id ? `· ${L.shortId(job.id)}` : "");
  if (!data) {
    renderJobLive();
    markOpenJob();
    return;
  }
  markOpenJob();
  const badge = $("job-state");
  badge.dataset.state = data.state;
  setText(badge, job.abortRequested && data.state === "inflight" ? "inflight · abort requested" : String(data.state));
  setText($("job-full-id"), String(data.id ?? job.id));
  setText($("job-queue-name"), String(data.queue ?? job.queue));
  setText($("job-attempts"), `${data.attempts}/${data.max_retries}`);
  setText($("job-priority"), String(data.priority ?? "—"));
  setTime($("job-created"), data.created_at);
  setTime($("job-finished"), data.finished_at);
  const timeout = Number.isFinite(data.timeout_ms) ? `${L.formatCount(data.timeout_ms)} ms` : "worker's default";
  setText($("job-timeout"), timeout);
  setText($("job-key"), data.idempotency_key ? String(data.idempotency_key) : "—");
  $("job-error-block").hidden = !data.last_error;
  setText($("job-last-error"), String(data.last_error ?? ""));
  setText($("job-payload"), L.prettyText(data.payload));
  const result = L.resultText(data);
  $("job-result-block").hidden = result === null;
  setText($("job-result"), result ?? "");
  setText($("job-result-type"), data.result_type === "bytes" ? "(bytes, as UTF-8 text)" : "");
  const label = L.cancelLabel(data.state);
  const cancel = $("job-cancel");
  cancel.hidden = label === null;
  setText(cancel, label ?? "Cancel");
  cancel.setAttribute("aria-label", `${label ?? "Cancel"} job ${job.id}`);
  cancel.disabled = Boolean(state.info?.read_only) || job.abortRequested;
  renderJobLive();
}

/** An ISO time as "2025-01-02 10:11:12" in this browser's time zone (the ISO text as its title), or "—". */
function setTime(el, iso) {
  const ms = L.parseTime(iso);
  el.title = Number.isFinite(ms) ? String(iso) : "";
  setText(el, Number.isFinite(ms) ? L.formatDateTime(ms) : "—");
}

function renderJobLive() {
  const job = state.job;
  let text = "";
  if (job.data && job.updatedAt) {
    text = `read ${L.formatClock(job.updatedAt)}`;
    if (job.controller) text += " · following";
  }
  setText($("job-live"), text);
}

// -- schedules ---------------------------------------------------------------------------------

/** Whether the schedules panel is on screen, in a tab that is seen, on a page that is connected. */
function schedulesSeen() {
  return Boolean(state.info) && state.schedules.inView && document.visibilityState !== "hidden";
}

/** Read the schedules if they are seen and older than SCHEDULES_REFRESH_MS. */
function refreshStaleSchedules() {
  const age = Date.now() + state.clockOffset - state.schedules.fetchedAt;
  if (schedulesSeen() && age >= SCHEDULES_REFRESH_MS) refreshSchedules();
}

async function refreshSchedules() {
  const schedules = state.schedules;
  if (schedules.loading) return;
  schedules.loading = true;
  try {
    const rows = await api("GET", "/api/schedules");
    schedules.rows = Array.isArray(rows) ? rows : [];
    schedules.error = "";
    schedules.loaded = true;
  } catch (err) {
    schedules.error = `Loading the schedules failed: ${err.message}`;
  } finally {
    schedules.fetchedAt = Date.now() + state.clockOffset;
    schedules.loading = false;
  }
  renderSchedules();
}

function renderSchedules() {
  const { rows, error, loaded } = state.schedules;
  $("schedules-body").replaceChildren(...rows.map(scheduleRow));
  $("schedules-table").hidden = rows.length === 0;
  $("schedules-empty").hidden = rows.length > 0 || !loaded;
  setText($("schedules-summary"), rows.length ? `· ${rows.length}` : "");
  $("schedules-error").hidden = !error;
  setText($("schedules-error"), error);
  updateScheduleTimes();
}

function timeCell(iso, none, kind) {
  const ms = L.parseTime(iso);
  const cell = h("td", { class: `num when ${kind}`, title: Number.isFinite(ms) ? String(iso) : null });
  if (!Number.isFinite(ms)) {
    cell.append(h("span", { class: "muted" }, none));
    return cell;
  }
  cell.dataset.at = String(ms);
  cell.append(h("span", { class: "rel" }), h("span", { class: "abs" }, L.formatDateTime(ms)));
  return cell;
}

function scheduleRow(schedule) {
  const name = String(schedule.name);
  const payload = String(schedule.payload ?? "");
  const remove = h(
    "button",
    { type: "button", class: "btn btn-sm btn-danger", "aria-label": `Delete schedule ${name}` },
    "Delete",
  );
  remove.addEventListener("click", () => deleteSchedule(name, remove));
  const row = h(
    "tr",
    {},
    h("td", { class: "mono name" }, name),
    h("td", { class: "mono cron" }, String(schedule.cron ?? "")),
    h("td", { class: "tz" }, String(schedule.timezone ?? "UTC")),
    h("td", { class: "mono queue" }, String(schedule.queue ?? "")),
    timeCell(schedule.next_fire_at, "none", "next"),
    timeCell(schedule.last_fire_at, "never", "last"),
    h("td", { class: "payload", title: payload.length > 60 ? L.preview(payload, 2000) : null }, L.preview(payload, 60)),
    h("td", { class: "actions", "data-mutating": true }, remove),
  );
  row.dataset.name = name;
  return row;
}

/** The relative times ("in 3 min", "5 min ago") follow the clock between fetches. */
function updateScheduleTimes() {
  const now = Date.now() + state.clockOffset;
  for (const cell of $("schedules-body").querySelectorAll("td.when[data-at]")) {
    const delta = Number(cell.dataset.at) - now;
    const text = cell.classList.contains("next") ? L.formatNextFire(delta) : L.formatRelative(delta);
    setText(cell.querySelector(".rel"), text);
  }
}

/** The "new schedule" form enters the page from its template, and leaves it when closed. */
function openScheduleForm() {
  const slot = $("schedule-form-slot");
  if (!$("schedule-form")) {
    slot.replaceChildren($("schedule-form-template").content.cloneNode(true));
    $("schedule-form").addEventListener("submit", submitSchedule);
    $("schedule-close").addEventListener("click", closeScheduleForm);
    $("s-queue").addEventListener("input", () => {
      state.scheduleQueueEdited = true;
    });
    $("schedule-form").addEventListener("keydown", (event) => {
      if (event.key === "Escape") closeScheduleForm();
    });
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && zone !== "UTC") $("s-zones").append(h("option", { value: zone }));
    state.scheduleQueueEdited = false;
    $("s-queue").value = state.selected ?? "";
  }
  $("schedule-new").setAttribute("aria-expanded", "true");
  $("s-name").focus();
}

function closeScheduleForm() {
  $("schedule-form-slot").replaceChildren();
  $("schedule-new").setAttribute("aria-expanded", "false");
  $("schedule-new").focus();
}

async function submitSchedule(event) {
  event.preventDefault();
  const out = $("schedule-result");
  out.className = "result";
  const request = L.buildScheduleRequest(Object.fromEntries(new FormData(event.currentTarget)));
  if (request.error) {
    out.classList.add("error");
    setText(out, request.error);
    return;
  }
  const submit = $("schedule-submit");
  submit.disabled = true;
  setText(out, "Saving…");
  try {
    const saved = await api("POST", "/api/schedules", request.body);
    out.classList.add("ok");
    const next = L.parseTime(saved?.next_fire_at);
    const when = Number.isFinite(next) ? `, next ${L.formatDateTime(next)}` : "";
    const replaced = state.schedules.rows.some((s) => s.name === request.body.name);
    setText(out, `${replaced ? "Replaced" : "Added"} schedule ${request.body.name}${when}`);
    $("s-name").value = "";
    $("s-cron").value = "";
    $("s-name").focus();
    await refreshSchedules();
  } catch (err) {
    out.classList.add("error");
    setText(out, err.message);
    if (err.status === 401) reauthenticate(true);
  } finally {
    submit.disabled = false;
  }
}

async function deleteSchedule(name, button) {
  const ok = await confirmAction(
    "Delete this schedule?",
    `Schedule ${name} stops firing. The jobs it has enqueued already stay.`,
    "Delete",
  );
  if (!ok) return;
  button.disabled = true;
  try {
    await api("DELETE", L.schedulePath(name));
    state.schedules.rows = state.schedules.rows.filter((s) => s.name !== name);
    renderSchedules();
    showNotice(`Deleted schedule ${name}`, "ok");
    $("schedules-title").focus();
    refreshSchedules();
  } catch (err) {
    button.disabled = false;
    failed(err, "Deleting the schedule failed");
    if (err.status === 404) refreshSchedules();
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
    const tab = hashTab();
    if (tab && tab !== state.jobs.tab) selectTab(tab);
    if (state.info) openJobFromHash();
  });

  $("job-find").addEventListener("submit", submitFind);
  $("job-close").addEventListener("click", closeJob);
  $("job-cancel").addEventListener("click", cancelJob);
  $("j-queue").addEventListener("input", () => {
    state.findQueueEdited = true;
  });
  $("jobs-reload").addEventListener("click", () => refreshJobs(true));
  $("jobs-prev").addEventListener("click", () => turnPage(-1));
  $("jobs-next").addEventListener("click", () => turnPage(1));
  const tabs = [...$("job-tabs").querySelectorAll('[role="tab"]')];
  for (const tab of tabs) tab.addEventListener("click", () => selectTab(tab.dataset.state));
  $("job-tabs").addEventListener("keydown", (event) => {
    // arrows, Home and End move between the tabs (and show the one reached)
    const index = tabs.findIndex((tab) => tab.dataset.state === state.jobs.tab);
    const moves = { ArrowLeft: index - 1, ArrowRight: index + 1, Home: 0, End: tabs.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const next = tabs[(moves[event.key] + tabs.length) % tabs.length];
    selectTab(next.dataset.state, { focus: true });
  });
  $("schedule-new").addEventListener("click", openScheduleForm);
  $("schedules-refresh").addEventListener("click", () => refreshSchedules());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") {
      stopFollowing(); // a hidden tab holds no request open; the snapshots still update it
      renderJobLive();
      return;
    }
    follow();
    refreshStaleSchedules();
    refreshStaleWorkers();
    refreshJobs();
  });
  new IntersectionObserver((entries) => {
    state.schedules.inView = entries.some((entry) => entry.isIntersecting);
    refreshStaleSchedules();
  }).observe($("schedules-card"));
  new IntersectionObserver((entries) => {
    state.workers.inView = entries.some((entry) => entry.isIntersecting);
    refreshStaleWorkers();
  }).observe($("workers-card"));
  new IntersectionObserver((entries) => {
    state.jobs.inView = entries.some((entry) => entry.isIntersecting);
    refreshJobs(); // what changed while it was off screen
  }).observe($("jobs-card"));

  setInterval(() => {
    renderConnection();
    updateAges();
    updateScheduleTimes();
    updateWorkerTimes();
    refreshStaleWorkers();
    const schedules = state.schedules;
    const now = Date.now() + state.clockOffset;
    if (schedulesSeen() && L.schedulesDue(schedules.rows, now, schedules.fetchedAt)) {
      refreshSchedules(); // a schedule fired: it has a new next fire time
    }
  }, 1000);
  setInterval(() => {
    if (schedulesSeen()) refreshSchedules();
  }, SCHEDULES_REFRESH_MS);
}

function start() {
  wire();
  const tab = hashTab();
  if (tab) Object.assign(state.jobs, { tab, chosen: true });
  renderSelected();
  renderJobs();
  renderWorkers();
  renderJob();
  renderSchedules();
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
