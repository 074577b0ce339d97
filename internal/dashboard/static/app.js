// Concord dashboard: a hand-written single page over the Connect/JSON API.
// Routes: #/ (the list, with filters in the query) and #/tx/<gid>.
"use strict";

const API = "/concord.v1.CoordinatorService/";
const POLL_MS = 2000;
const LIST_LIMIT = 200;
const TOKEN_KEY = "concord-token";
const SVG_NS = "http://www.w3.org/2000/svg";
const FINAL = new Set(["succeeded", "aborted"]);
const COMMITTED = new Set(["succeeded", "committing", "confirming", "delivering"]);
const ROLLED_BACK = new Set(["aborted", "compensating", "cancelling"]);
const GID_RE = /^[A-Za-z0-9._:\-]*$/;

const $ = (id) => document.getElementById(id);

// ---- API ---------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function call(method, body) {
  const headers = { "Content-Type": "application/json" };
  if (token()) headers["Authorization"] = "Bearer " + token();
  let resp;
  try {
    resp = await fetch(API + method, { method: "POST", headers, body: JSON.stringify(body), cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, "unavailable", "cannot reach the coordinator: " + e.message);
  }
  const text = await resp.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch (e) { data = { message: text }; }
  if (!resp.ok) throw new ApiError(resp.status, data.code || "http_" + resp.status, data.message || resp.statusText);
  return data;
}

// describe turns an API error into what the operator should read.
function describe(err, gid) {
  if (!(err instanceof ApiError)) return String(err);
  switch (err.code) {
    case "unauthenticated":
      return "Not authorized: the API token is missing or wrong. Enter the server's token above.";
    case "not_found":
      return gid ? `No transaction with gid "${gid}".` : "Not found: " + err.message;
    case "invalid_argument":
      return "Bad request: " + err.message;
    case "failed_precondition":
      return "Not allowed in this state: " + err.message;
    case "unavailable":
      return "Coordinator unavailable: " + err.message;
  }
  return `${err.code}: ${err.message}`;
}

function banner(msg, kind) {
  const b = $("banner");
  if (!msg) { b.hidden = true; b.textContent = ""; return; }
  b.hidden = false;
  b.className = kind || "";
  b.textContent = msg;
}

// ---- helpers -----------------------------------------------------------

const num = (v) => (v === undefined || v === null || v === "" ? 0 : Number(v));

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ""));
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function stamp(ms) {
  if (!ms) return "-";
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function ago(ms) {
  if (!ms) return "-";
  const s = (Date.now() - ms) / 1000;
  if (s < 60) return Math.max(0, Math.round(s)) + "s ago";
  if (s < 3600) return Math.round(s / 60) + "m ago";
  if (s < 86400) return Math.round(s / 3600) + "h ago";
  return Math.round(s / 86400) + "d ago";
}

function rel(ms) {
  if (ms < 1000) return "+" + ms.toFixed(ms < 10 ? 1 : 0) + " ms";
  return "+" + (ms / 1000).toFixed(ms < 10000 ? 3 : 1) + " s";
}

function dur(us) {
  us = num(us);
  if (us < 1000) return us + " µs";
  if (us < 1e6) return (us / 1000).toFixed(1) + " ms";
  return (us / 1e6).toFixed(2) + " s";
}

function statusBadge(s) { return el("span", { class: "status s-" + s }, s || "-"); }

function trunc(s, n) { return s.length > n ? s.slice(0, n - 1) + "…" : s; }

// ---- routing -----------------------------------------------------------

let pollTimer = null;
let generation = 0; // bumps on every route change; stale polls stop

function route() {
  generation++;
  clearTimeout(pollTimer);
  banner("");
  const h = location.hash || "#/";
  const m = h.match(/^#\/tx\/(.+)$/);
  $("list-view").hidden = !!m;
  $("tx-view").hidden = !m;
  if (m) showTx(decodeURIComponent(m[1]), generation);
  else showList(generation);
}

function schedule(gen, fn) {
  clearTimeout(pollTimer);
  if (gen === generation) pollTimer = setTimeout(() => gen === generation && fn(), POLL_MS);
}

// ---- list --------------------------------------------------------------

function filters() {
  const f = {
    mode: $("f-mode").value, status: $("f-status").value, prefix: $("f-prefix").value.trim(),
    stuck: $("f-stuck").checked, since: $("f-since").value,
  };
  if (f.stuck) f.status = "stuck";
  return f;
}

async function showList(gen) {
  const f = filters();
  const prefixInput = $("f-prefix");
  if (!GID_RE.test(f.prefix)) {
    prefixInput.classList.add("invalid");
    banner("The gid prefix may only hold letters, digits and . _ : - (no spaces).");
    schedule(gen, () => showList(gen));
    return;
  }
  prefixInput.classList.remove("invalid");
  const req = { limit: LIST_LIMIT };
  if (f.mode) req.mode = f.mode;
  if (f.status) req.status = f.status;
  if (f.prefix) req.gid_prefix = f.prefix;
  try {
    const data = await call("ListTransactions", req);
    if (gen !== generation) return;
    banner("");
    let txs = data.transactions || [];
    if (f.since) {
      const from = Date.now() - Number(f.since) * 1000;
      txs = txs.filter((t) => num(t.created_at_unix_ms) >= from);
    }
    renderList(txs, !!data.next_page_token);
  } catch (e) {
    if (gen !== generation) return;
    banner(describe(e));
  }
  $("live").textContent = "updated " + new Date().toLocaleTimeString();
  schedule(gen, () => showList(gen));
}

function renderList(txs, more) {
  const counts = {};
  for (const t of txs) counts[t.status] = (counts[t.status] || 0) + 1;
  const c = $("counts");
  c.replaceChildren(el("span", { class: "count", "data-status": "all" }, "shown", el("b", {}, txs.length + (more ? "+" : ""))));
  for (const s of Object.keys(counts).sort()) {
    c.append(el("span", { class: "count s-" + s, "data-status": s }, s, el("b", {}, counts[s])));
  }
  const body = $("txns").tBodies[0];
  const rows = txs.map((t) => el("tr", { "data-gid": t.gid, "data-status": t.status },
    el("td", { class: "gid" }, el("a", { href: "#/tx/" + encodeURIComponent(t.gid) }, t.gid)),
    el("td", {}, t.mode),
    el("td", {}, statusBadge(t.status)),
    el("td", {}, (t.branches || []).length),
    el("td", {}, num(t.total_attempts)),
    el("td", {}, stamp(num(t.created_at_unix_ms))),
    el("td", { class: "small" }, ago(num(t.updated_at_unix_ms))),
    el("td", { class: "small" }, trunc(t.stuck_reason || t.reason || "", 120))));
  body.replaceChildren(...rows);
  $("list-foot").textContent = txs.length === 0 ? "No transaction matches these filters." :
    more ? `Showing the newest ${LIST_LIMIT} matching transactions; counts are over those.` : "";
}

// ---- one transaction ----------------------------------------------------

let current = null; // the transaction shown

async function showTx(gid, gen) {
  $("tx-gid").textContent = gid;
  if (!GID_RE.test(gid) || gid === "") {
    banner(`"${gid}" is not a valid gid.`);
    return;
  }
  try {
    const data = await call("GetTransaction", { gid });
    if (gen !== generation) return;
    banner("");
    current = data.transaction;
    renderTx(current);
    if (FINAL.has(current.status)) return; // nothing more will happen
  } catch (e) {
    if (gen !== generation) return;
    current = null;
    banner(describe(e, gid));
    $("tx-status").replaceChildren();
    $("tx-facts").replaceChildren();
    $("timeline").replaceChildren();
    $("branches").tBodies[0].replaceChildren();
    if (e.code === "not_found" || e.code === "invalid_argument") return;
  }
  schedule(gen, () => showTx(gid, gen));
}

function renderTx(t) {
  $("tx-status").replaceWith(Object.assign(statusBadge(t.status), { id: "tx-status" }));
  const created = num(t.created_at_unix_ms);
  const facts = [
    ["mode", t.mode + (t.concurrent ? " (concurrent)" : "")],
    ["created", stamp(created)],
    ["decided", t.decided_at_unix_ms ? `${stamp(num(t.decided_at_unix_ms))} (${rel(num(t.decided_at_unix_ms) - created)}, durable)` : "not yet"],
    ["updated", stamp(num(t.updated_at_unix_ms))],
    ["deadline", stamp(num(t.deadline_unix_ms))],
    ["attempts", String(num(t.total_attempts))],
  ];
  if (t.reason) facts.push(["reason", t.reason]);
  if (t.stuck_phase) facts.push(["stuck in", `${t.stuck_phase}: fix the participant, then Retry now`]);
  if (t.stuck_reason) facts.push(["stuck by", t.stuck_reason]);
  $("tx-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-fact": k }, v)]));
  $("btn-retry").disabled = FINAL.has(t.status);
  $("btn-abort").disabled = FINAL.has(t.status);
  $("timeline").replaceChildren(timeline(t));
  const body = $("branches").tBodies[0];
  body.replaceChildren(...(t.branches || []).map((b) => el("tr", { "data-branch": b.id },
    el("td", {}, b.id),
    el("td", { class: "small", "data-state": branchState(t, b) }, branchState(t, b)),
    el("td", { title: b.forward_unsure ? "a call's outcome was unknown: it may have taken effect" : "" },
      `${b.forward_op || "-"}: ${b.forward_status || "-"}${b.forward_unsure ? " (unsure)" : ""}`),
    el("td", {}, `${b.backward_op || "-"}: ${b.backward_status || "-"}`),
    el("td", {}, num(b.payload_bytes) + " B"),
    el("td", { "data-retry": b.retrying_op || "" }, attemptsText(b)),
    el("td", { class: "small" }, lastError(b)),
    el("td", { class: "small" }, [b.forward_url, b.backward_url].filter(Boolean).join("\n")))));
}

// branchState names what a branch is waiting for, in the words of its mode:
// a 2PC branch that voted yes and has not heard phase 2 is in doubt (it
// holds its locks); a message destination is delivered or pending.
function branchState(t, b) {
  if ((t.mode === "2pc" || t.mode === "3pc") && b.forward_status === "done" &&
      b.backward_status !== "done" && b.backward_status !== "skipped" && !FINAL.has(t.status)) {
    return "in doubt: voted yes, waiting for phase 2";
  }
  if (t.mode === "msg" && b.forward_op === "deliver") {
    return b.forward_status === "done" ? "delivered" : b.forward_status === "skipped" ? "not sent" : "pending delivery";
  }
  if (t.mode === "msg" && b.forward_op === "check") return "check-back: " + (b.forward_status || "-");
  return "";
}

// retryText says when a waiting operation is called next and how many
// calls its budget still allows.
function retryText(b) {
  if (!b.retrying_op) return "waiting to retry";
  const at = num(b.next_retry_at_unix_ms);
  const when = at ? new Date(at).toLocaleTimeString() : "now";
  const left = num(b.attempts_left);
  return `${b.retrying_op}: next call at ${when}, ${left} ${left === 1 ? "call" : "calls"} left before it is given up`;
}

function attemptsText(b) {
  const n = (b.attempts || []).length;
  return b.retrying_op ? `${n}; ${retryText(b)}` : String(n);
}

function lastError(b) {
  const errs = (b.attempts || []).filter((a) => a.error);
  return errs.length ? trunc(errs[errs.length - 1].error, 160) : "";
}

// decisionLabel names what was decided, from where the transaction went.
function decisionLabel(t) {
  const s = t.status === "stuck" ? t.stuck_phase : t.status;
  if (COMMITTED.has(s)) return t.mode === "msg" ? "deliver" : "commit";
  if (ROLLED_BACK.has(s)) return "roll back";
  return "decided";
}

// timeline draws the sequence diagram: the coordinator's lifeline on the
// left, one per branch, a row per call (request arrow, reply arrow), and
// markers for acceptance, the durable decision, and the end or stuck.
function timeline(t) {
  const branches = t.branches || [];
  const created = num(t.created_at_unix_ms);
  const rows = [];
  branches.forEach((b, i) => {
    // Consecutive failed calls of one operation with the same outcome and
    // error are drawn once ("#3–#9 ×7"), so a long retry does not bury
    // the rest of the diagram.
    let prev = null;
    for (const a of b.attempts || []) {
      const err = a.error || "";
      if (prev && prev.op === a.op && prev.outcome === a.outcome && prev.error === err && a.outcome !== "success") {
        prev.count++;
        prev.n = `${prev.first}–#${a.number} ×${prev.count}`;
        prev.us = Math.max(prev.us, num(a.duration_us));
        continue;
      }
      prev = { kind: "call", at: num(a.started_at_unix_ms), col: i, branch: b.id, op: a.op, n: a.number, first: a.number,
        count: 1, outcome: a.outcome, us: num(a.duration_us), error: err };
      rows.push(prev);
    }
    for (const [op, st] of [[b.forward_op, b.forward_status], [b.backward_op, b.backward_status]]) {
      if (st === "inflight" || st === "retrying") {
        rows.push({ kind: "call", at: Date.now() + 1e12, col: i, branch: b.id, op, n: "", outcome: "pending",
          us: 0, error: st === "retrying" ? retryText(b) : "call in flight" });
      }
    }
  });
  rows.push({ kind: "marker", cls: "accept", at: created - 1e-3, label: "accepted (durable)" });
  if (num(t.decided_at_unix_ms)) {
    rows.push({ kind: "marker", cls: "decision", at: num(t.decided_at_unix_ms) - 1e-3,
      label: `decision: ${decisionLabel(t)} (durable)` });
  }
  if (FINAL.has(t.status)) {
    rows.push({ kind: "marker", cls: "final " + t.status, at: num(t.updated_at_unix_ms) + 1e-3, label: t.status });
  } else if (t.status === "stuck") {
    rows.push({ kind: "marker", cls: "stuck", at: num(t.updated_at_unix_ms) + 1e-3, label: `stuck while ${t.stuck_phase}` });
  }
  rows.sort((a, b) => a.at - b.at);

  const left = 96, coordX = left + 60, colW = 190, top = 44;
  const xs = branches.map((_, i) => coordX + (i + 1) * colW);
  const width = (xs.length ? xs[xs.length - 1] : coordX) + 120;
  const heights = rows.map((r) => (r.kind === "marker" ? 26 : r.error ? 58 : 46));
  const height = top + heights.reduce((a, b) => a + b, 0) + 20;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `sequence diagram of ${t.gid}`, "data-gid": t.gid, "data-status": t.status });

  const heads = [["coordinator", coordX, "coordinator"], ...branches.map((b, i) => ["branch " + b.id, xs[i], b.id])];
  for (const [label, x, id] of heads) {
    root.append(svg("line", { class: "lifeline", x1: x, y1: top - 8, x2: x, y2: height - 6 }));
    const g = svg("g", { class: "head", "data-lifeline": id });
    const w = Math.max(90, label.length * 7.5 + 16);
    g.append(svg("rect", { x: x - w / 2, y: 6, width: w, height: 26, rx: 5 }));
    g.append(svg("text", { x, y: 24, "text-anchor": "middle" }, label));
    root.append(g);
  }

  let y = top;
  rows.forEach((r, i) => {
    const h = heights[i];
    const when = r.at > Date.now() + 1e11 ? "now" : rel(Math.max(0, r.at - created));
    if (r.kind === "marker") {
      const g = svg("g", { class: "marker " + r.cls });
      g.append(svg("line", { x1: left - 8, y1: y + 13, x2: width - 10, y2: y + 13 }));
      g.append(svg("text", { class: "time", x: 4, y: y + 17 }, when));
      const tx = svg("text", { x: coordX + 8, y: y + 9 }, r.label);
      g.append(tx);
      root.append(g);
      y += h;
      return;
    }
    const x2 = xs[r.col];
    const g = svg("g", { class: "msg o-" + r.outcome, "data-branch": r.branch, "data-op": r.op, "data-outcome": r.outcome });
    g.append(svg("title", {}, `branch ${r.branch}: ${r.op} #${r.n} at ${when}, ${r.outcome}` +
      (r.us ? `, ${dur(r.us)}` : "") + (r.error ? `\n${r.error}` : "")));
    g.append(svg("text", { class: "time", x: 4, y: y + 16 }, when));
    const req = svg("g", { class: "call" });
    req.append(svg("line", { x1: coordX, y1: y + 12, x2: x2 - 6, y2: y + 12 }));
    req.append(svg("path", { d: `M${x2} ${y + 12} l-8 -4 v8 z`, fill: "#4a5468" }));
    req.append(svg("text", { class: "op", x: coordX + 10, y: y + 8 }, `${r.op}${r.n !== "" ? " #" + r.n : ""}`));
    g.append(req);
    if (r.outcome !== "pending") {
      const rep = svg("g", { class: "reply" });
      rep.append(svg("line", { x1: x2, y1: y + 30, x2: coordX + 6, y2: y + 30 }));
      rep.append(svg("path", { d: `M${coordX} ${y + 30} l8 -4 v8 z`, fill: "#6b7385" }));
      rep.append(svg("text", { class: "outcome", x: coordX + 10, y: y + 26 }, `${r.outcome} · ${dur(r.us)}`));
      g.append(rep);
    } else {
      g.append(svg("text", { class: "outcome", x: x2 + 10, y: y + 16 }, r.error));
    }
    if (r.error && r.outcome !== "pending") {
      g.append(svg("text", { class: "err", x: coordX + 10, y: y + 46 }, trunc(r.error, 90)));
    }
    root.append(g);
    y += h;
  });
  return root;
}

// ---- operator actions ----------------------------------------------------

async function act(kind) {
  if (!current) return;
  const gid = current.gid;
  const msg = $("action-msg");
  const question = kind === "retry" ?
    `Retry ${gid} now? Every failed or waiting call is made again with a fresh retry budget.` :
    `Force abort ${gid}? An undecided transaction rolls back (compensate / cancel / abort). This cannot be undone.`;
  if (!window.confirm(question)) return;
  msg.className = "";
  msg.textContent = kind === "retry" ? "retrying…" : "aborting…";
  try {
    if (kind === "retry") await call("RetryTransaction", { gid });
    else await call("AbortTransaction", { gid, reason: $("abort-reason").value || "aborted from the dashboard" });
    msg.className = "ok";
    msg.textContent = kind === "retry" ? "Retry requested." : "Abort requested.";
  } catch (e) {
    msg.className = "err";
    msg.textContent = describe(e, gid);
  }
  generation++;
  showTx(gid, generation);
}

// ---- start -------------------------------------------------------------

function init() {
  $("token").value = token();
  $("token-state").textContent = token() ? "token set" : "no token";
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token-state").textContent = token() ? "token set" : "no token";
    route();
  });
  for (const id of ["f-mode", "f-status", "f-stuck", "f-since"]) $(id).addEventListener("change", route);
  $("f-prefix").addEventListener("input", route);
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); route(); });
  $("btn-retry").addEventListener("click", () => act("retry"));
  $("btn-abort").addEventListener("click", () => act("abort"));
  window.addEventListener("hashchange", () => { $("action-msg").textContent = ""; route(); });
  route();
}

init();
