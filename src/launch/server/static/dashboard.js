// Launch dashboard: log in with an API key (sessionStorage), poll /v1/status every 2 s, render with the DOM
// (never innerHTML with data: names, logs and tracebacks are user text).
"use strict";

const POLL_MS = 2000;
const KEY = "launch-api-key";
let timer = null;
let generation = 0;
const lastTotals = new Map();  // endpoint id -> [time, requests]: the request rate between two polls

function rate(e) {
  const now = Date.now() / 1000, total = sum(e.requests);
  const last = lastTotals.get(e.id);
  lastTotals.set(e.id, [now, total]);
  if (!last || now - last[0] < 0.5) return e._rate ?? null;
  return Math.max(0, (total - last[1]) / (now - last[0]));
}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "style") el.setAttribute("style", v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const fmtMs = (s) => (s === null || s === undefined ? "–" : s < 1 ? `${(s * 1000).toFixed(1)} ms` : `${s.toFixed(2)} s`);
const fmtS = (s) => (s === null || s === undefined ? "–" : `${s.toFixed(2)} s`);
const fmtTime = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "–");
const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);
const badge = (text) => h("span", { class: `badge ${text}` }, text);
const PHASES = ["environment", "process_start", "imports", "load_model", "ready"];

async function api(path) {
  const key = sessionStorage.getItem(KEY);
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${key}` }, cache: "no-store" });
  if (resp.status === 401) { logout("Your API key was not accepted."); throw new Error("unauthenticated"); }
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.detail || resp.statusText);
  return body;
}

function logout(message) {
  sessionStorage.removeItem(KEY);
  clearTimeout(timer);
  $("view").replaceChildren();
  $("who").textContent = "";
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("crumbs").replaceChildren();
}

function tile(n, label, id) {
  return h("div", { class: "tile" }, h("div", { class: "n", id }, n), h("div", { class: "l" }, label));
}

function latencyCells(q) {
  return ["p50", "p90", "p99"].map((p) => h("td", { class: "num" }, fmtMs(q[p])));
}

function workersText(e) {
  const w = e.workers || {};
  const extra = ["starting", "draining", "broken"].filter((s) => w[s]).map((s) => `${w[s]} ${s}`);
  return `${w.serving || 0}/${e.desired_workers ?? "–"} (${e.min_workers}-${e.max_workers})` +
    (extra.length ? `, ${extra.join(", ")}` : "");
}

function endpointsTable(endpoints, admin) {
  if (!endpoints.length) return h("p", { class: "muted" }, "No endpoints yet.");
  return h("table", { id: "endpoints-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "endpoint"), admin && h("th", {}, "owner"), h("th", {}, "type"),
      h("th", {}, "status"), h("th", {}, "workers serving/desired (min-max)"), h("th", { class: "num" }, "in flight"),
      h("th", { class: "num" }, "queued"), h("th", { class: "num" }, "req/s"), h("th", { class: "num" }, "requests"),
      h("th", { class: "num" }, "failed"),
      h("th", { class: "num" }, "p50"), h("th", { class: "num" }, "p90"), h("th", { class: "num" }, "p99"))),
    h("tbody", {}, endpoints.map((e) => {
      const r = e.requests || {};
      const failed = (r.failure || 0) + (r.task_failure || 0) + (r.server_error || 0) + (r.timeout || 0);
      return h("tr", { "data-endpoint": e.name },
        h("td", {}, h("a", { href: `#/endpoints/${e.id}` }, e.name)), admin && h("td", {}, e.owner),
        h("td", {}, e.type), h("td", {}, badge(e.status)), h("td", {}, workersText(e)),
        h("td", { class: "num" }, e.in_flight), h("td", { class: "num" }, e.queued),
        h("td", { class: "num" }, e._rate === null ? "–" : e._rate.toFixed(1)),
        h("td", { class: "num requests" }, sum(r)), h("td", { class: "num" }, failed), ...latencyCells(e.latency));
    })));
}

function progress(job) {
  const total = job.total || 0;
  const pct = (n) => (total ? (100 * n) / total : 0);
  return h("div", { class: "bar", title: `${job.done} done, ${job.failed} failed of ${total}` },
    h("span", { class: "done", style: `left:0;width:${pct(job.done)}%` }),
    h("span", { class: "failed", style: `left:${pct(job.done)}%;width:${pct(job.failed)}%` }));
}

function batchTable(jobs, admin) {
  if (!jobs.length) return h("p", { class: "muted" }, "No batch jobs yet.");
  return h("table", { id: "batch-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "job"), admin && h("th", {}, "owner"), h("th", {}, "bundle"),
      h("th", {}, "status"), h("th", {}, "progress"), h("th", { class: "num" }, "done/total"),
      h("th", { class: "num" }, "failed"), h("th", {}, "created"))),
    h("tbody", {}, jobs.map((j) => h("tr", { "data-job": j.id },
      h("td", {}, h("a", { href: `#/batch-jobs/${j.id}` }, j.id.slice(0, 12))), admin && h("td", {}, j.owner),
      h("td", {}, j.bundle), h("td", {}, badge(j.status)), h("td", {}, progress(j)),
      h("td", { class: "num" }, `${j.done + j.failed}/${j.total}`), h("td", { class: "num" }, j.failed),
      h("td", {}, fmtTime(j.created_at))))));
}

function failuresList(failures) {
  if (!failures.length) return h("p", { class: "muted" }, "No failures recently.");
  return h("table", { id: "failures" },
    h("thead", {}, h("tr", {}, h("th", {}, "when"), h("th", {}, "kind"), h("th", {}, "request / task id"),
      h("th", {}, "traceback"))),
    h("tbody", {}, failures.map((f) => {
      const lines = (f.traceback || "").trim().split("\n");
      return h("tr", {}, h("td", {}, fmtTime(f.at)), h("td", {}, f.kind), h("td", {}, h("code", {}, f.request_id || "–")),
        h("td", {}, h("details", {}, h("summary", {}, lines[lines.length - 1] || "(no traceback)"),
          h("pre", {}, f.traceback || ""))));
    })));
}

function renderOverview(data) {
  for (const e of data.endpoints) e._rate = rate(e);
  const failing = data.endpoints.filter((e) => e.status === "UPDATE_FAILED").length;
  return [
    h("div", { class: "tiles" },
      tile(data.endpoints.length, "endpoints", "tile-endpoints"),
      tile(data.endpoints.reduce((a, e) => a + (e.workers.serving || 0), 0), "workers serving", "tile-workers"),
      tile(data.in_flight, "requests in flight", "tile-inflight"),
      tile(data.endpoints.reduce((a, e) => a + e.queued, 0), "tasks queued", "tile-queued"),
      tile(failing, "endpoints failed", "tile-failed")),
    h("section", { class: "card" }, h("h2", {}, "Endpoints"), endpointsTable(data.endpoints, data.admin)),
    h("section", { class: "card" }, h("h2", {}, "Batch jobs"), batchTable(data.batch_jobs, data.admin)),
    h("section", { class: "card" }, h("h2", {}, "Recent failures"), failuresList(data.failures)),
  ];
}

function coldStarts(starts) {
  if (!starts.length) return h("p", { class: "muted" }, "No worker started since the server started.");
  const longest = Math.max(...starts.map((s) => s.total), 0.001);
  return [
    h("div", { class: "legend" }, PHASES.map((p) => h("span", {}, h("i", { class: `ph-${p}` }), p.replace("_", " ")))),
    h("table", { id: "cold-starts" },
      h("thead", {}, h("tr", {}, h("th", {}, "worker"), h("th", {}, "started"), h("th", {}, "environment"),
        h("th", {}, "timeline"), ...PHASES.map((p) => h("th", { class: "num" }, p.replace("_", " "))),
        h("th", { class: "num" }, "total"))),
      h("tbody", {}, starts.slice().reverse().map((s) => h("tr", {},
        h("td", {}, h("code", {}, s.worker_id)), h("td", {}, fmtTime(s.started_at)), h("td", {}, s.environment),
        h("td", {}, h("div", { class: "timeline", style: `width:${Math.max(8, (100 * s.total) / longest)}%` },
          PHASES.filter((p) => s.phases[p] !== undefined).map((p) => h("span", {
            class: `ph-${p}`, title: `${p}: ${fmtS(s.phases[p])}`,
            style: `width:${s.total ? (100 * s.phases[p]) / s.total : 0}%` })))),
        ...PHASES.map((p) => h("td", { class: "num" }, fmtS(s.phases[p]))), h("td", { class: "num" }, fmtS(s.total)))))),
  ];
}

function tasksTable(tasks) {
  if (!tasks.length) return h("p", { class: "muted" }, "No tasks.");
  return h("table", { id: "tasks" },
    h("thead", {}, h("tr", {}, h("th", {}, "task"), h("th", {}, "state"), h("th", { class: "num" }, "queue position"),
      h("th", { class: "num" }, "attempts"), h("th", {}, "submitted"), h("th", {}, "finished"))),
    h("tbody", {}, tasks.map((t) => h("tr", {}, h("td", {}, h("code", {}, t.task_id)), h("td", {}, badge(t.state)),
      h("td", { class: "num" }, t.queue_position ?? "–"), h("td", { class: "num" }, t.attempts),
      h("td", {}, fmtTime(t.created_at)), h("td", {}, fmtTime(t.finished_at))))));
}

function renderEndpoint(e) {
  const r = e.requests || {};
  e._rate = rate(e);
  return [
    h("h1", {}, `${e.name} `, badge(e.status)),
    e.status_reason ? h("pre", { id: "status-reason" }, e.status_reason) : null,
    h("div", { class: "tiles" },
      tile(sum(r), "requests", "requests-total"),
      tile((r.failure || 0) + (r.task_failure || 0), "failed predictions", "requests-failed"),
      tile(e._rate === null ? "–" : e._rate.toFixed(1), "requests/s", "endpoint-rate"),
      tile(e.in_flight, "in flight", "endpoint-inflight"),
      tile(e.queued, "queued", "endpoint-queued"),
      tile(workersText(e), "workers serving/desired", "endpoint-workers")),
    h("div", { class: "grid2" },
      h("section", { class: "card" }, h("h2", {}, "Latency"),
        h("table", { id: "latency" }, h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", { class: "num" }, "p50"),
          h("th", { class: "num" }, "p90"), h("th", { class: "num" }, "p99"))),
        h("tbody", {},
          h("tr", {}, h("td", {}, "gateway (request → response)"), ...latencyCells(e.latency)),
          h("tr", {}, h("td", {}, "queue wait (async)"), ...latencyCells(e.queue_wait)),
          h("tr", {}, h("td", {}, "worker compute"), ...latencyCells(e.compute)))),
        h("h2", { style: "margin-top:14px" }, "Requests by outcome"),
        h("p", {}, Object.entries(r).map(([k, v]) => `${k}: ${v}`).join(" · ") || "none yet")),
      h("section", { class: "card" }, h("h2", {}, "Status history"),
        h("table", { id: "status-history" }, h("tbody", {}, e.status_history.slice().reverse().map((s) =>
          h("tr", {}, h("td", {}, fmtTime(s.at)), h("td", {}, badge(s.status)), h("td", { class: "muted" },
            (s.reason || "").split("\n")[0]))))))),
    h("section", { class: "card" }, h("h2", {}, "Cold starts"), coldStarts(e.cold_starts)),
    h("section", { class: "card" }, h("h2", {}, "Recent failures"), failuresList(e.failures)),
    e.type === "async" ? h("section", { class: "card" }, h("h2", {}, "Async tasks (newest first)"), tasksTable(e.tasks)) : null,
    h("section", { class: "card" }, h("h2", {}, "Creation logs"), h("pre", { id: "creation-logs" }, e.creation_logs || "(empty)")),
  ];
}

function renderBatchJob(j) {
  return [
    h("h1", {}, `Batch job ${j.id.slice(0, 12)} `, badge(j.status)),
    h("div", { class: "tiles" },
      tile(`${j.done + j.failed}/${j.total}`, "items done", "batch-progress"),
      tile(j.failed, "items failed", "batch-failed"),
      tile(j.bundle, "bundle", "batch-bundle"),
      tile(j.started_at ? fmtS((j.finished_at || Date.now() / 1000) - j.started_at) : "–", "running for", "batch-duration")),
    h("section", { class: "card" }, h("h2", {}, "Progress"), progress(j), j.error ? h("pre", {}, j.error) : null),
    h("section", { class: "card" }, h("h2", {}, "Latest items"),
      j.items.length ? h("table", { id: "batch-items" },
        h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "item"), h("th", {}, "state"), h("th", {}, "traceback"))),
        h("tbody", {}, j.items.map((i) => h("tr", {}, h("td", {}, i.position + 1), h("td", {}, h("code", {}, i.item_id)),
          h("td", {}, badge(i.state)), h("td", {}, i.traceback ? h("details", {}, h("summary", {}, "traceback"),
            h("pre", {}, i.traceback)) : "")))))
        : h("p", { class: "muted" }, "No item has finished yet.")),
  ];
}

function route() {
  const [, kind, id] = (location.hash || "#/").slice(1).split("/");
  if (kind === "endpoints" && id) return { path: `/v1/status/endpoints/${encodeURIComponent(id)}`, render: renderEndpoint, crumb: "endpoint" };
  if (kind === "batch-jobs" && id) return { path: `/v1/status/batch-jobs/${encodeURIComponent(id)}`, render: renderBatchJob, crumb: "batch job" };
  return { path: "/v1/status", render: renderOverview, crumb: null };
}

async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  const r = route();
  try {
    const [me, data] = await Promise.all([api("/v1/status/me").catch(() => null), api(r.path)]);
    if (mine !== generation) return;
    if (me) $("who").textContent = `${me.owner}${me.admin ? " (admin: every owner)" : ""}`;
    $("crumbs").replaceChildren(...(r.crumb ? [h("a", { href: "#/" }, "overview"), ` / ${r.crumb}`] : []));
    const open = new Set([...document.querySelectorAll("details[open] summary")].map((s) => s.textContent));
    $("view").replaceChildren(...[r.render(data)].flat().filter(Boolean));
    document.querySelectorAll("details summary").forEach((s) => { if (open.has(s.textContent)) s.parentElement.open = true; });
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("updated").dataset.count = String(Number($("updated").dataset.count || 0) + 1);
  } catch (err) {
    if (String(err.message) === "unauthenticated") return;
    $("view").replaceChildren(h("p", { class: "error", id: "view-error" }, String(err.message)));
  }
  if (mine === generation && sessionStorage.getItem(KEY)) timer = setTimeout(refresh, POLL_MS);
}

function start() {
  $("login").hidden = true;
  $("logout").hidden = false;
  refresh();
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  const resp = await fetch("/v1/status", { headers: { Authorization: `Bearer ${key}` } });
  if (!resp.ok) { $("login-error").textContent = resp.status === 401 ? "That API key is not valid." : `Error ${resp.status}`; return; }
  sessionStorage.setItem(KEY, key);
  $("api-key").value = "";
  start();
});
$("logout").addEventListener("click", () => logout(""));
window.addEventListener("hashchange", () => { if (sessionStorage.getItem(KEY)) refresh(); });
if (sessionStorage.getItem(KEY)) start(); else logout("");
