// Conveyor dashboard: plain JavaScript against the REST API. No build step, no third-party code.
//
// Sign-in: the bearer token lives in sessionStorage (opening /#token=<token> stores it and clears the
// address bar). Live updates: an EventSource per unfinished job (at most MAX_STREAMS at once, so the
// browser keeps connections for other requests), opened with a short-lived signed URL from
// POST /api/jobs/{id}/events/grant because EventSource cannot send the Authorization header; when a
// stream cannot be had, the page polls instead.
"use strict";

const TOKEN_KEY = "conveyor.token";
const MAX_STREAMS = 4;
const POLL_MS = 2500;
const TERMINAL = ["completed", "failed", "canceled"];
const WEBHOOK_SETTLED = ["delivered", "failed"];
const FILE_URL = /^\/api\/files\/([0-9a-f-]{36})$/;

const page = { token: null, streams: new Map(), timers: [], generation: 0, watching: false };

// --- small helpers -------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
}

function notice(text, isError) {
  const box = document.getElementById("notice");
  if (!text) { box.hidden = true; return; }
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = false;
}

function formatTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return isNaN(date) ? iso : date.toLocaleString();
}

function formatEta(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function isActive(job) { return !TERMINAL.includes(job.status); }

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${page.token}` };
  const options = { method, headers };
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; options.body = JSON.stringify(body); }
  const response = await fetch(path, options);
  if (response.status === 401) { signOut("Your token was not accepted; sign in again."); throw new ApiError(401, null); }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// --- live updates --------------------------------------------------------------------------------

function stopLive() {
  page.generation += 1;
  for (const source of page.streams.values()) source.close();
  page.streams.clear();
  for (const timer of page.timers) clearInterval(timer);
  page.timers = [];
}

function every(ms, fn) {
  const timer = setInterval(fn, ms);
  page.timers.push(timer);
  return timer;
}

// Follow a job's events; calls onJob with each new state. Returns false when no stream was opened.
async function follow(jobId, onJob) {
  if (page.streams.has(jobId)) return true;
  if (page.streams.size >= MAX_STREAMS || typeof EventSource === "undefined") return false;
  const generation = page.generation;
  let grant;
  try { grant = await api("POST", `/api/jobs/${jobId}/events/grant`); } catch (err) { return false; }
  if (generation !== page.generation) return true;  // the page changed meanwhile
  const source = new EventSource(grant.url);
  page.streams.set(jobId, source);
  const handle = (event) => {
    const job = JSON.parse(event.data);
    onJob(job);
    if (!isActive(job)) { source.close(); page.streams.delete(jobId); }
  };
  for (const kind of ["status", "progress", "stage"]) source.addEventListener(kind, handle);
  source.onerror = () => {
    // A dropped stream reconnects with the same (soon expired) grant: close it and let polling take over.
    source.close();
    page.streams.delete(jobId);
  };
  return true;
}

// --- progress bars -------------------------------------------------------------------------------

function progressBar(job, label, big) {
  const fill = el("div", { class: "fill" });
  const bar = el("div", { class: `bar ${job.status}${big ? " big" : ""}`, role: "progressbar",
    "aria-valuemin": "0", "aria-valuemax": "100", "aria-label": label }, fill);
  setProgress(bar, job);
  return bar;
}

function setProgress(bar, job) {
  const value = Math.round((job.progress || 0) * 10) / 10;
  bar.setAttribute("aria-valuenow", String(value));
  bar.setAttribute("aria-valuetext", `${value}%${job.step ? ", " + job.step : ""}`);
  bar.className = bar.className.replace(/\b(pending|processing|completed|failed|canceled)\b/g, "").trim() + ` ${job.status}`;
  bar.firstChild.style.width = `${value}%`;
}

function badge(status) { return el("span", { class: `badge ${status}`, "data-status": status }, status); }

// --- sign in -------------------------------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  page.token = null;
  stopLive();
  document.getElementById("nav").hidden = true;
  renderSignIn(message);
}

function renderSignIn(message) {
  const input = el("input", { type: "password", id: "token", name: "token", autocomplete: "off", required: true });
  const form = el("form", { class: "card", onsubmit: async (event) => {
    event.preventDefault();
    page.token = input.value.trim();
    try {
      await api("GET", "/api/pipelines");
      sessionStorage.setItem(TOKEN_KEY, page.token);
      location.hash = "#/jobs";
      route();
    } catch (err) { if (!(err instanceof ApiError && err.status === 401)) notice(err.message, true); }
  } },
  el("h1", {}, "Sign in"),
  el("p", { class: "muted" }, "Paste your API token (", el("code", {}, "conveyor users create NAME"), " prints one)."),
  el("div", { class: "field" }, el("label", { for: "token" }, "Token"), input),
  el("button", { type: "submit" }, "Sign in"));
  show(form);
  if (message) notice(message, true);
}

// --- the job list --------------------------------------------------------------------------------

async function renderJobs(params) {
  const status = params.get("status") || "";
  const query = new URLSearchParams({ limit: "25" });
  if (status) query.set("status", status);
  if (params.get("cursor")) query.set("cursor", params.get("cursor"));
  const filter = el("select", { id: "status-filter", "aria-label": "Status", onchange: (e) => {
    location.hash = e.target.value ? `#/jobs?status=${e.target.value}` : "#/jobs";
  } }, el("option", { value: "" }, "All statuses"),
  ...["pending", "processing", "completed", "failed", "canceled"].map(
    (s) => el("option", { value: s, selected: s === status }, s)));
  const body = el("tbody");
  const table = el("table", { id: "jobs" },
    el("thead", {}, el("tr", {}, el("th", {}, "Job"), el("th", {}, "Status"), el("th", {}, "Progress"),
      el("th", { class: "hide-small" }, "Step"), el("th", { class: "hide-small" }, "Created"))), body);
  const pager = el("div", { class: "pager" });
  show(el("div", { class: "row-actions" }, el("h1", {}, "Jobs"), filter,
    el("a", { class: "button", href: "#/new" }, "New job")), el("div", { class: "card" }, table, pager),
  el("section", { id: "stats-strip" }));
  const rows = new Map();
  const states = new Map();
  let loaded = false;

  const update = (job) => {
    const row = rows.get(job.id);
    if (!row) return;
    states.set(job.id, job.status);
    setProgress(row.bar, job);
    row.status.replaceChildren(badge(job.status));
    row.step.textContent = job.step || "";
    if (isActive(job) && job.eta_seconds !== null) row.step.append(el("span", { class: "muted small" }, ` · ETA ${formatEta(job.eta_seconds)}`));
  };

  const load = async () => {
    const generation = page.generation;
    const data = await api("GET", `/api/jobs?${query}`);
    if (generation !== page.generation) return;
    for (const job of data.jobs) {
      if (!rows.has(job.id)) {
        const bar = progressBar(job, `Progress of ${job.pipeline} job ${job.id.slice(0, 8)}`);
        const cells = { bar, status: el("td"), step: el("td", { class: "hide-small" }) };
        const tr = el("tr", { "data-job-id": job.id },
          el("td", {}, el("a", { href: `#/jobs/${job.id}` }, job.pipeline), " ", el("span", { class: "muted small" }, job.id.slice(0, 8))),
          cells.status, el("td", { class: "progress-cell" }, bar), cells.step,
          el("td", { class: "hide-small muted small" }, formatTime(job.created_at)));
        if (!rows.size) body.replaceChildren();  // drop the "No jobs yet" row
        if (loaded) body.prepend(tr); else body.append(tr);
        rows.set(job.id, cells);
      }
      update(job);
    }
    loaded = true;
    if (!rows.size) body.replaceChildren(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "No jobs yet.")));
    pager.replaceChildren(data.next_cursor ? el("a", { href: `#/jobs?${new URLSearchParams({ status, cursor: data.next_cursor })}` }, "Older jobs →") : "");
    // Stream the unfinished jobs we can; the others are refreshed by polling below.
    for (const job of data.jobs.filter(isActive)) await follow(job.id, update);
  };

  await load();
  renderStatsStrip();
  let ticks = 0;
  every(POLL_MS, async () => {
    ticks += 1;
    if (ticks % 6 === 0) return load().catch(() => {});  // now and then, for jobs started elsewhere
    const polled = [...states].filter(([id, status]) => !TERMINAL.includes(status) && !page.streams.has(id));
    if (polled.length) await load().catch(() => {});
  });
}

async function renderStatsStrip() {
  const strip = document.getElementById("stats-strip");
  if (!strip) return;
  try {
    const stats = await api("GET", "/api/stats");
    const queued = Object.values(stats.queues || {}).reduce((n, q) => n + (q.ready || 0) + (q.delayed || 0), 0);
    strip.replaceChildren(el("p", { class: "muted small" },
      `${stats.jobs.by_status.processing} processing · ${stats.jobs.by_status.pending} pending · ${queued} queued messages · `,
      `${stats.workers.seen ?? "?"} worker(s) seen · `, el("a", { href: "#/stats" }, "queue details")));
  } catch (err) { /* stats are a nicety here */ }
}

// --- one job -------------------------------------------------------------------------------------

async function renderJob(jobId) {
  let job;
  try { job = await api("GET", `/api/jobs/${jobId}`); } catch (err) {
    show(el("h1", {}, "Job not found"), el("p", {}, err.message, " ", el("a", { href: "#/jobs" }, "Back to jobs")));
    return;
  }
  const bar = progressBar(job, "Job progress", true);
  const header = el("div");
  const facts = el("dl", { class: "facts" });
  const actions = el("div", { class: "row-actions" });
  const timeline = el("ol", { class: "timeline", id: "timeline" });
  const problems = el("div");
  const result = el("section", { class: "result", id: "result" });
  show(el("p", {}, el("a", { href: "#/jobs" }, "← Jobs")), header,
    el("div", { class: "card" }, bar, facts, actions),
    el("div", { class: "card" }, el("h2", {}, "Stages"), timeline), problems, result);

  let shownResult = null;
  const update = (current) => {
    job = current;
    header.replaceChildren(el("h1", {}, `${job.pipeline} `, badge(job.status)),
      el("p", { class: "muted small" }, `Job ${job.id}`));
    setProgress(bar, job);
    facts.replaceChildren(
      el("dt", {}, "Progress"), el("dd", { id: "job-progress" }, `${(job.progress || 0).toFixed(1)}%`),
      el("dt", {}, "Step"), el("dd", { id: "job-step" }, job.step || "–"),
      el("dt", {}, "ETA"), el("dd", { id: "job-eta" }, isActive(job) ? formatEta(job.eta_seconds) : "–"),
      el("dt", {}, "Attempt"), el("dd", {}, String(job.attempt || 1)),
      el("dt", {}, "Created"), el("dd", {}, formatTime(job.created_at)),
      el("dt", {}, "Finished"), el("dd", {}, formatTime(job.finished_at)),
      ...(job.webhook ? [el("dt", {}, "Webhook"), el("dd", { id: "job-webhook" }, webhookText(job.webhook))] : []));
    actions.replaceChildren(
      isActive(job) ? el("button", { class: "danger", type: "button", id: "cancel", onclick: () => act("cancel") }, "Cancel") : "",
      ["failed", "canceled"].includes(job.status) ? el("button", { type: "button", id: "retry", onclick: () => act("retry") }, "Retry") : "");
    timeline.replaceChildren(...(job.stages || []).map(stageItem));
    problems.replaceChildren(...problemBoxes(job));
    if (job.status === "completed" && shownResult !== job.updated_at) {
      shownResult = job.updated_at;
      renderResult(result, job.result);
    } else if (job.status !== "completed") {
      result.replaceChildren();
      shownResult = null;
    }
  };

  const act = async (action) => {
    try {
      const updated = await api("POST", `/api/jobs/${job.id}/${action}`);
      notice(`Job ${action === "retry" ? "resumed" : "canceled"}.`);
      update(updated);
      if (isActive(updated)) live();
    } catch (err) { notice(err.message, true); }
  };

  const live = async () => {
    if (!isActive(job)) return;
    if (await follow(job.id, update)) return;
    const generation = page.generation;
    const timer = every(POLL_MS, async () => {
      if (generation !== page.generation) return;
      try { update(await api("GET", `/api/jobs/${job.id}`)); } catch (err) { return; }
      if (!isActive(job)) clearInterval(timer);
    });
  };

  update(job);
  live();
  // If the stream drops, keep the page current anyway; a finished job's webhook settles after it ends.
  every(POLL_MS * 4, async () => {
    const unsettled = job.webhook && !WEBHOOK_SETTLED.includes(job.webhook.status);
    if ((isActive(job) && !page.streams.has(job.id)) || (!isActive(job) && unsettled)) {
      update(await api("GET", `/api/jobs/${job.id}`).catch(() => job));
    }
  });
}

function webhookText(webhook) {
  const tries = webhook.attempts > 1 ? ` after ${webhook.attempts} attempts` : "";
  return `${webhook.status}${tries}${webhook.error ? ` — ${webhook.error}` : ""}`;
}

function stageItem(stage) {
  const items = stage.items;
  return el("li", { class: stage.status, "data-stage": stage.name },
    el("div", { class: "stage-head" }, el("strong", {}, stage.name), badge(stage.status),
      el("span", { class: "muted small" }, `${(stage.progress || 0).toFixed(0)}%`),
      stage.attempts > 1 ? el("span", { class: "muted small" }, `${stage.attempts} attempts`) : ""),
    progressBar(stage, `Progress of stage ${stage.name}`),
    items && (items.total || stage.status !== "pending") ? el("div", { class: "small", "data-items": "" },
      `${items.completed} of ${items.total} items done`, items.failed ? `, ${items.failed} failed` : "") : "",
    stage.started_at ? el("div", { class: "muted small" }, `started ${formatTime(stage.started_at)}`,
      stage.finished_at ? `, finished ${formatTime(stage.finished_at)}` : "") : "",
    stage.error ? el("div", { class: "error-box small" }, `${stage.error.code}: ${stage.error.message}`) : "");
}

function problemBoxes(job) {
  const boxes = [];
  if (job.error) {
    boxes.push(el("div", { class: "card error-box", id: "job-error" },
      el("strong", {}, `Failed at ${job.error.stage}: `), `${job.error.code} — ${job.error.message}`));
  }
  if (job.warnings && job.warnings.length) {
    boxes.push(el("div", { class: "card warning-box", id: "job-warnings", role: "note" },
      el("h2", {}, job.warnings.length === 1 ? "1 warning" : `${job.warnings.length} warnings`),
      el("ul", {}, ...job.warnings.map((w) => el("li", { "data-code": w.code },
        el("strong", {}, `${w.stage}: `), `${w.message} `, el("span", { class: "muted small" }, `(${w.code})`))))));
  }
  if (job.errors && job.errors.length) {
    boxes.push(el("div", { class: "card", id: "item-errors" }, el("h2", {}, `${job.errors.length} item(s) failed and were skipped`),
      el("ul", {}, ...job.errors.map((e) => el("li", {}, `${e.stage || ""} item ${e.item ?? ""}: ${e.code || ""} ${e.message || ""}`)))));
  }
  return boxes;
}

// --- results -------------------------------------------------------------------------------------

function renderResult(section, result) {
  section.replaceChildren(el("div", { class: "card" }, el("h2", {}, "Result"), resultDocument(result),
    el("details", {}, el("summary", {}, "JSON"), el("pre", { class: "json" }, JSON.stringify(result, null, 2)))));
}

const NOTES_KEYS = ["title", "summary", "sections", "key_takeaways", "definitions"];

// A result as a document: lecture notes as formatted text, subtitles as a cue list, files with players.
function resultDocument(result) {
  if (result && NOTES_KEYS.every((key) => key in result)) return notesDocument(result);
  if (result && typeof result.subtitles_url === "string" && FILE_URL.test(result.subtitles_url)) {
    return el("div", {}, cueList(result.subtitles_url.match(FILE_URL)[1]), fileView(result.subtitles_url.match(FILE_URL)[1]));
  }
  return renderValue(result);
}

// The notes as the Markdown file writes them: title, summary, sections, takeaways, definitions.
function notesDocument(notes) {
  const doc = el("article", { class: "notes", id: "notes" },
    el("h2", {}, notes.title), el("p", { class: "summary" }, notes.summary),
    ...notes.sections.flatMap((section) => [el("h3", {}, section.heading), el("p", {}, section.content)]));
  if (notes.key_takeaways.length) {
    doc.append(el("h3", {}, "Key takeaways"), el("ul", { class: "takeaways" }, ...notes.key_takeaways.map((t) => el("li", {}, t))));
  }
  if (notes.definitions.length) {
    doc.append(el("h3", {}, "Definitions"), el("dl", { class: "definitions" },
      ...notes.definitions.flatMap((d) => [el("dt", {}, d.term), el("dd", {}, d.definition)])));
  }
  const match = typeof notes.notes_url === "string" && notes.notes_url.match(FILE_URL);
  if (match) doc.append(fileView(match[1]));
  if (notes.transcript) doc.append(el("details", {}, el("summary", {}, "Transcript"), el("p", { class: "transcript" }, notes.transcript)));
  return doc;
}

// SRT or WebVTT cues: [{start, end, text}].
function parseCues(text) {
  const cues = [];
  for (const block of text.replace(/\r/g, "").split(/\n\s*\n/)) {
    const lines = block.split("\n").filter((line) => line.trim());
    const at = lines.findIndex((line) => line.includes("-->"));
    if (at < 0) continue;
    const [start, end] = lines[at].split("-->").map((t) => t.trim().split(/\s+/)[0].replace(",", "."));
    cues.push({ start, end, text: lines.slice(at + 1).join(" ") });
  }
  return cues;
}

function cueList(fileId) {
  const list = el("ol", { class: "cues", id: "cues" }, el("li", { class: "muted small" }, "Loading subtitles…"));
  api("POST", `/api/files/${fileId}/link`)
    .then((file) => fetch(file.link))
    .then((response) => { if (!response.ok) throw new Error(`HTTP ${response.status}`); return response.text(); })
    .then((text) => list.replaceChildren(...parseCues(text).map((cue) => el("li", { class: "cue" },
      el("span", { class: "cue-time muted small" }, `${cue.start} → ${cue.end}`), " ", el("span", {}, cue.text)))))
    .catch((err) => list.replaceChildren(el("li", { class: "muted" }, `Subtitles unavailable: ${err.message}`)));
  return list;
}

function renderValue(value) {
  if (value === null || value === undefined) return el("span", { class: "muted" }, "–");
  if (typeof value === "string") {
    const match = value.match(FILE_URL);
    if (match) return fileView(match[1]);
    return value.length > 120 || value.includes("\n") ? el("pre", {}, value) : el("span", {}, value);
  }
  if (Array.isArray(value)) {
    if (!value.length) return el("span", { class: "muted" }, "(none)");
    return el("ol", {}, ...value.map((item) => el("li", {}, renderValue(item))));
  }
  if (typeof value === "object") {
    return el("dl", {}, ...Object.entries(value).flatMap(([key, item]) => [
      el("dt", {}, key.replace(/_/g, " ")), el("dd", {}, renderValue(item))]));
  }
  return el("span", {}, String(value));
}

function fileView(fileId) {
  const box = el("div", { class: "media", "data-file-id": fileId }, el("span", { class: "muted small" }, "Loading file…"));
  api("POST", `/api/files/${fileId}/link`).then((file) => {
    const type = file.content_type || "";
    let player = "";
    if (type.startsWith("audio/")) player = el("audio", { controls: true, preload: "metadata", src: file.link });
    else if (type.startsWith("video/")) player = el("video", { controls: true, preload: "metadata", src: file.link });
    else if (type.startsWith("image/")) player = el("img", { src: file.link, alt: file.filename });
    box.replaceChildren(player, el("div", {}, el("a", { href: file.link, download: file.filename }, `Download ${file.filename}`),
      el("span", { class: "muted small" }, ` (${type}, ${Math.round(file.size / 1024)} KB)`)));
  }).catch((err) => box.replaceChildren(el("span", { class: "muted" }, `File unavailable: ${err.message}`)));
  return box;
}

// --- the new-job form ----------------------------------------------------------------------------

function isFileField(schema) {
  return schema.format === "conveyor-file" || /file:<id>/.test(schema.description || "");
}

function plainSchema(schema) {
  // Optional fields arrive as anyOf [X, null]: use X.
  if (schema.anyOf) {
    const inner = schema.anyOf.find((s) => s.type !== "null");
    if (inner) return { ...inner, ...schema, anyOf: undefined, type: inner.type };
  }
  return schema;
}

function fieldFor(name, rawSchema, required) {
  const schema = plainSchema(rawSchema);
  const id = `field-${name}`;
  const title = schema.title || name;
  const label = el("label", { for: id }, title, required ? " *" : "",
    schema.description ? el("span", { class: "hint" }, ` — ${schema.description}`) : "");
  const error = el("div", { class: "field-error", id: `${id}-error` });
  const wrap = el("div", { class: "field", "data-field": name });
  let read;
  if (isFileField(schema)) {
    const file = el("input", { type: "file", id, name, accept: "audio/*,video/*,image/*" });
    const url = el("input", { type: "url", id: `${id}-url`, placeholder: "or an https:// URL", "aria-label": `${title} URL` });
    wrap.append(label, file, el("div", { class: "or" }, "or"), url, error);
    read = async () => {
      if (file.files.length) {
        const form = new FormData();
        form.append("file", file.files[0]);
        const stored = await api("POST", "/api/files", form);
        return `file:${stored.id}`;
      }
      return url.value.trim() || undefined;
    };
  } else if (schema.enum || schema.const !== undefined) {
    const options = schema.enum || [schema.const];
    const select = el("select", { id, name }, required ? "" : el("option", { value: "" }, "(default)"),
      ...options.map((o) => el("option", { value: String(o), selected: o === schema.default }, String(o))));
    wrap.append(label, select, error);
    read = async () => select.value === "" ? undefined : options.find((o) => String(o) === select.value);
  } else if (schema.type === "boolean") {
    const box = el("input", { type: "checkbox", id, name, checked: schema.default === true });
    wrap.append(el("label", { for: id }, box, " ", title), error);
    read = async () => box.checked;
  } else if (schema.type === "integer" || schema.type === "number") {
    const input = el("input", { type: "number", id, name, step: schema.type === "integer" ? "1" : "any",
      min: schema.minimum ?? schema.exclusiveMinimum, max: schema.maximum ?? schema.exclusiveMaximum,
      value: schema.default ?? "" });
    wrap.append(label, input, error);
    read = async () => input.value === "" ? undefined : Number(input.value);
  } else if (schema.type === "array") {
    const numeric = schema.items && ["integer", "number"].includes(schema.items.type);
    const input = el("input", { type: "text", id, name, placeholder: numeric ? "comma-separated numbers" : "comma-separated",
      value: Array.isArray(schema.default) ? schema.default.join(", ") : "" });
    wrap.append(label, input, error);
    read = async () => {
      const parts = input.value.split(",").map((p) => p.trim()).filter(Boolean);
      if (!parts.length) return undefined;
      return numeric ? parts.map(Number) : parts;
    };
  } else if (schema.type === "object") {
    const area = el("textarea", { id, name, placeholder: "JSON object" });
    wrap.append(label, area, error);
    read = async () => (area.value.trim() ? JSON.parse(area.value) : undefined);
  } else {
    const long = (schema.maxLength || 0) > 200 || (schema.minLength || 0) > 20 || /script|text|prompt/i.test(name);
    const input = long ? el("textarea", { id, name }) : el("input", { type: "text", id, name });
    if (schema.default !== undefined && schema.default !== null) input.value = schema.default;
    wrap.append(label, input, error);
    read = async () => (input.value === "" ? undefined : input.value);
  }
  return { name, wrap, read, error };
}

async function renderNew(pipelineName) {
  const { pipelines } = await api("GET", "/api/pipelines");
  const chosen = pipelines.find((p) => p.name === pipelineName) || pipelines[0];
  if (!chosen) { show(el("p", {}, "No pipelines are registered.")); return; }
  const picker = el("select", { id: "pipeline", name: "pipeline", onchange: (e) => { location.hash = `#/new/${e.target.value}`; } },
    ...pipelines.map((p) => el("option", { value: p.name, selected: p.name === chosen.name },
      p.available === false ? `${p.name} (not available here)` : p.name)));
  const schema = chosen.input_schema || {};
  const required = schema.required || [];
  const fields = Object.entries(schema.properties || {}).map(([name, s]) => fieldFor(name, s, required.includes(name)));
  const project = el("input", { type: "text", id: "project", name: "project_id" });
  const submit = el("button", { type: "submit", id: "start", disabled: chosen.available === false }, "Start job");
  const unavailable = chosen.available === false
    ? el("p", { class: "field-error", id: "unavailable" }, `Not available here: ${chosen.unavailable_reason}`) : null;
  const formError = el("div", { class: "field-error", role: "alert" });
  const form = el("form", { class: "card", id: "new-job", onsubmit: async (event) => {
    event.preventDefault();
    submit.disabled = true;
    formError.textContent = "";
    fields.forEach((f) => { f.error.textContent = ""; });
    try {
      const input = {};
      for (const field of fields) {
        submit.textContent = "Uploading…";
        const value = await field.read();
        if (value !== undefined) input[field.name] = value;
      }
      submit.textContent = "Starting…";
      const body = { pipeline: chosen.name, input };
      if (project.value.trim()) body.project_id = project.value.trim();
      const job = await api("POST", "/api/jobs", body);
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      const problems = (err.problem && err.problem.errors) || [];
      for (const p of problems) {
        const name = String(p.field || "").replace(/^input\./, "").split(".")[0];
        const field = fields.find((f) => f.name === name);
        if (field) field.error.textContent = p.message;
      }
      formError.textContent = err.message + (problems.length ? " (see the fields above)" : "");
      submit.disabled = false;
      submit.textContent = "Start job";
    }
  } },
  el("div", { class: "field" }, el("label", { for: "pipeline" }, "Pipeline"), picker,
    el("p", { class: "muted small" }, chosen.description || "", ` Stages: ${chosen.stages.join(" → ")}`), unavailable),
  ...fields.map((f) => f.wrap),
  el("div", { class: "field" }, el("label", { for: "project" }, "Project ", el("span", { class: "hint" }, "(optional, for filtering)")), project),
  formError, submit);
  show(el("h1", {}, "New job"), form);
}

// --- queue stats ---------------------------------------------------------------------------------

async function renderStats() {
  const holder = el("div", { id: "stats" });
  show(el("h1", {}, "Queues and jobs"), holder);
  const draw = async () => {
    const stats = await api("GET", "/api/stats");
    const byStatus = Object.entries(stats.jobs.by_status).map(([s, n]) =>
      el("div", { class: "card" }, el("div", { class: "stat", "data-count": s }, String(n)), badge(s)));
    const queues = Object.entries(stats.queues || {}).map(([name, q]) =>
      el("tr", { "data-queue": name }, el("td", {}, name), el("td", {}, String(q.ready)), el("td", {}, String(q.delayed)),
        el("td", {}, q.in_progress === null ? "–" : String(q.in_progress))));
    const pipelines = Object.entries(stats.jobs.by_pipeline).map(([name, counts]) =>
      el("tr", {}, el("td", {}, name), el("td", {}, Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", "))));
    holder.replaceChildren(el("div", { class: "grid" }, ...byStatus),
      el("div", { class: "card" }, el("h2", {}, "Queues"), el("table", { id: "queues" },
        el("thead", {}, el("tr", {}, el("th", {}, "Queue"), el("th", {}, "Ready"), el("th", {}, "Delayed"), el("th", {}, "In progress"))),
        el("tbody", {}, ...queues)),
      el("p", { class: "muted small", id: "workers" }, `Workers seen in the last ${stats.workers.window_seconds} s: ${stats.workers.seen ?? "unknown"}`)),
      el("div", { class: "card" }, el("h2", {}, "Your jobs by pipeline"), el("table", {}, el("tbody", {}, ...pipelines))));
  };
  await draw();
  every(5000, () => draw().catch(() => {}));
}

// --- toasts: a job of yours finished while the page is open ---------------------------------------

const TOAST_MS = 10000;

function toast(job) {
  const box = document.getElementById("toasts");
  const item = el("div", { class: `toast ${job.status}`, role: "status", "data-job-id": job.id },
    el("strong", {}, `${job.pipeline} ${job.status}`), " ",
    el("a", { href: `#/jobs/${job.id}` }, `job ${job.id.slice(0, 8)}`),
    job.error ? el("div", { class: "small" }, `${job.error.code}: ${job.error.message}`) : "",
    el("button", { type: "button", class: "link", "aria-label": "Dismiss", onclick: () => item.remove() }, "×"));
  box.append(item);
  setTimeout(() => item.remove(), TOAST_MS);
}

// Jobs that finished before the page opened are marked seen without a toast; later ones get one.
async function watchFinishedJobs() {
  if (page.watching) return;
  page.watching = true;
  try { await api("GET", "/api/notifications?mark_seen=true"); } catch (err) { return; }
  setInterval(async () => {
    if (!page.token) return;
    try {
      const data = await api("GET", "/api/notifications?mark_seen=true");
      for (const job of data.notifications) toast(job);
    } catch (err) { /* a toast is a nicety */ }
  }, POLL_MS);
}

// --- routing -------------------------------------------------------------------------------------

async function route() {
  stopLive();
  notice("");
  if (!page.token) { renderSignIn(); return; }
  document.getElementById("nav").hidden = false;
  watchFinishedJobs();
  const [path, queryString] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(queryString || "");
  const parts = path.split("/").filter(Boolean);
  try {
    if (parts[0] === "jobs" && parts[1]) await renderJob(parts[1]);
    else if (parts[0] === "new") await renderNew(parts[1]);
    else if (parts[0] === "stats") await renderStats();
    else await renderJobs(params);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) notice(err.message, true);
  }
}

function start() {
  if (location.hash.startsWith("#token=")) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(location.hash.slice("#token=".length)));
    history.replaceState(null, "", `${location.pathname}#/jobs`);
  }
  page.token = sessionStorage.getItem(TOKEN_KEY);
  document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));
  window.addEventListener("hashchange", route);
  route();
}

start();
