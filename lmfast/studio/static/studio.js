// LMFast Studio's one script: forms that post JSON and keep their values, live job pages
// over server-sent events, and the chat playground's streaming. No framework, no CDN.
"use strict";

function collect(form) {
  const out = {};
  for (const el of form.querySelectorAll("[name]")) {
    if (el.disabled || el.closest("[hidden]")) continue;
    const raw = el.type === "checkbox" ? (el.checked ? "true" : "") : el.value.trim();
    if (raw === "") continue;
    const kind = el.dataset.kind || "text";
    if (kind === "number") out[el.name] = Number(raw);
    else if (kind === "bool") out[el.name] = raw === "true";
    else if (kind === "lines") out[el.name] = raw.split("\n").map(s => s.trim()).filter(Boolean);
    else if (kind === "json") {
      try { out[el.name] = JSON.parse(raw); }
      catch (e) { throw {field: el.name, message: `${el.name}: not valid JSON (${e.message})`}; }
    } else out[el.name] = raw;
  }
  return out;
}

function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach(e => { e.textContent = ""; });
  form.querySelectorAll(".invalid").forEach(e => e.classList.remove("invalid"));
  const top = form.querySelector(".form-error");
  if (top) { top.textContent = ""; top.hidden = true; }
}

function showErrors(form, errors) {
  const loose = [];
  for (const err of errors) {
    const slot = err.field && form.querySelector(`[data-field="${CSS.escape(err.field)}"]`);
    if (slot) {
      slot.classList.add("invalid");
      slot.querySelector(".field-error").textContent = err.message;
    } else loose.push(err.message);
  }
  const top = form.querySelector(".form-error");
  if (top && loose.length) { top.textContent = loose.join("\n"); top.hidden = false; }
}

async function postJSON(url, body) {
  const resp = await fetch(url, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  });
  let data = {};
  try { data = await resp.json(); } catch (e) { data = {errors: [{message: `HTTP ${resp.status}`}]}; }
  return {ok: resp.ok, status: resp.status, data};
}

async function submitForm(form, url, extra) {
  clearErrors(form);
  let body;
  try { body = {...collect(form), ...(extra || {})}; }
  catch (err) { showErrors(form, [err]); return null; }
  const button = form.querySelector("button[type=submit]");
  if (button) button.disabled = true;
  try {
    const {ok, data} = await postJSON(url, body);
    if (!ok) { showErrors(form, data.errors || [{message: "request refused"}]); return null; }
    return data;
  } catch (e) {
    showErrors(form, [{message: `Studio did not answer: ${e}`}]);
    return null;
  } finally {
    if (button) button.disabled = false;
  }
}

// Forms with data-post: post, then open the job page (or call data-then(result, form)).
document.addEventListener("submit", async (ev) => {
  const form = ev.target;
  if (!form.dataset.post) return;
  ev.preventDefault();
  const url = ev.submitter && ev.submitter.dataset.post ? ev.submitter.dataset.post : form.dataset.post;
  const then = ev.submitter && ev.submitter.dataset.then ? ev.submitter.dataset.then : form.dataset.then;
  const data = await submitForm(form, url);
  if (!data) return;
  if (then) window[then](data, form);
  else if (data.url) window.location.href = data.url;
});

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function fmt(v) {
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString();
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(1) : a >= 1 ? v.toFixed(3) : v.toPrecision(3);
}

// A line chart of one or more metrics against step, as inline SVG.
function drawCurve(svg, history, keys) {
  const W = 640, H = 220, P = 36;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.innerHTML = "";
  const series = keys.map(k => history.filter(e => typeof e.metrics[k] === "number")
    .map(e => [e.step, e.metrics[k]])).filter(s => s.length);
  if (!series.length) return;
  const xs = series.flat().map(p => p[0]), ys = series.flat().map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const y0 = Math.min(...ys), y1 = Math.max(...ys, y0 + 1e-9);
  const sx = x => P + (x - x0) / (x1 - x0) * (W - 2 * P);
  const sy = y => H - P - (y - y0) / (y1 - y0) * (H - 2 * P);
  const ns = "http://www.w3.org/2000/svg";
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n); return n;
  };
  add("line", {x1: P, y1: H - P, x2: W - P, y2: H - P, class: "axis"});
  add("line", {x1: P, y1: P, x2: P, y2: H - P, class: "axis"});
  add("text", {x: P, y: P - 8, class: "tick"}, fmt(y1));
  add("text", {x: P, y: H - P + 14, class: "tick"}, fmt(y0));
  add("text", {x: W - P, y: H - P + 14, class: "tick", "text-anchor": "end"}, `step ${fmt(x1)}`);
  series.forEach((s, i) => {
    add("polyline", {points: s.map(p => `${sx(p[0])},${sy(p[1])}`).join(" "), class: `series s${i}`});
    add("text", {x: W - P, y: P + 14 * i, class: `legend s${i}`, "text-anchor": "end"}, keys[i]);
  });
}

// The live run page: the whole history first (so a reload redraws everything), then each
// new report until the job ends.
function followJob(jobId) {
  const root = document.getElementById("job");
  const history = [];
  const samples = root.querySelector("#samples");
  let source = null;
  const setText = (sel, text) => { const n = root.querySelector(sel); if (n) n.textContent = text; };

  // The latest value of every metric seen so far (a report carries only some of them).
  let latest = {};
  function showMetrics(metrics) {
    latest = {...latest, ...metrics};
    const tbody = root.querySelector("#metrics tbody");
    tbody.innerHTML = "";
    for (const [k, v] of Object.entries(latest)) tbody.append(el("tr", {}, el("th", {}, k), el("td", {}, fmt(v))));
  }

  function onProgress(ev) {
    const e = JSON.parse(ev.data);
    if (history.length && history[history.length - 1].seq >= e.seq) return;
    history.push(e);
    showMetrics(e.metrics);
    if (e.message.startsWith("samples: ")) {
      samples.prepend(el("li", {}, `step ${fmt(e.step)}: ${e.message.slice(9)}`));
    }
    const keys = ["loss", "eval_loss", "reward"].filter(k => history.some(h => k in h.metrics));
    drawCurve(root.querySelector("#curve"), history, keys.length ? keys : []);
    root.querySelector("#curve-box").hidden = !keys.length;
  }

  function onState(ev) {
    const s = JSON.parse(ev.data);
    setText("#status", s.status);
    root.querySelector("#status").className = `status ${s.status}`;
    setText("#message", s.message || "");
    const bar = root.querySelector("#bar");
    if (s.total) { bar.max = s.total; bar.value = s.step; } else bar.removeAttribute("value");
    setText("#steps", s.total ? `${fmt(s.step)} / ${fmt(s.total)}` : fmt(s.step));
    showMetrics(s.metrics || {});
    const notes = root.querySelector("#notes");
    notes.innerHTML = "";
    for (const n of s.notes || []) notes.append(el("li", {class: n.startsWith("warning") ? "warn" : ""}, n));
    const err = root.querySelector("#error");
    err.hidden = !s.error; err.textContent = s.error || "";
    const ended = ["succeeded", "failed", "cancelled"].includes(s.status);
    root.querySelector("#cancel").hidden = ended;
    root.querySelector("#again").hidden = !(s.status === "failed" || s.status === "cancelled");
    if (s.result) showResult(s.result);
  }

  function showResult(result) {
    const box = root.querySelector("#result");
    box.hidden = false;
    const links = root.querySelector("#result-links");
    links.innerHTML = "";
    const ids = new Set();
    const walk = (v) => {
      if (typeof v === "string" && /^(dataset|model|adapter|report|export|teacher_labels|tokenizer)-\d{8}-\d{6}-[0-9a-f]{6}$/.test(v)) ids.add(v);
      else if (v && typeof v === "object") Object.values(v).forEach(walk);
    };
    walk(result);
    for (const id of ids) {
      const kind = id.split("-")[0];
      const page = kind === "report" ? `/evaluate/${id}` : kind === "dataset" ? `/data/${id}`
        : kind === "export" ? `/export/${id}` : `/lineage/${id}`;
      links.append(el("li", {}, el("a", {href: page}, id), " · ", el("a", {href: `/lineage/${id}`}, "lineage")));
    }
    root.querySelector("#result-json").textContent = JSON.stringify(result, null, 2);
    if (result.loss_curve && result.artifact_id) {
      const img = root.querySelector("#loss-png");
      img.src = `/api/artifacts/${result.artifact_id}/files/loss_curve.png`;
      img.hidden = false;
    }
  }

  async function loadLog() {
    const resp = await fetch(`/api/jobs/${jobId}/log`);
    if (resp.ok) root.querySelector("#log").textContent = await resp.text();
  }

  root.querySelector("#cancel").addEventListener("click", async () => {
    root.querySelector("#cancel").disabled = true;
    await postJSON(`/api/jobs/${jobId}/cancel`, {});
  });
  root.querySelector("#again").addEventListener("click", async () => {
    root.querySelector("#again").disabled = true;
    const {ok, data} = await postJSON(`/api/jobs/${jobId}/again`, {});
    if (ok) window.location.href = data.url;
    else { root.querySelector("#error").hidden = false; root.querySelector("#error").textContent = data.errors.map(e => e.message).join("\n"); }
  });
  root.querySelector("#refresh-log").addEventListener("click", loadLog);

  source = new EventSource(`/api/jobs/${jobId}/events`);
  source.addEventListener("progress", onProgress);
  source.addEventListener("state", onState);
  source.addEventListener("end", () => { source.close(); root.dataset.ended = "true"; loadLog(); });
  loadLog();
}

// The jobs table refreshes itself.
async function refreshJobs() {
  const table = document.querySelector("#jobs tbody");
  if (!table) return;
  const resp = await fetch("/api/jobs");
  if (!resp.ok) return;
  const jobs = await resp.json();
  table.innerHTML = "";
  for (const j of jobs) {
    const pct = j.total ? `${Math.round(100 * j.step / j.total)} %` : "";
    table.append(el("tr", {"data-job": j.id},
      el("td", {}, el("a", {href: `/jobs/${j.id}`}, j.id)), el("td", {}, j.kind),
      el("td", {class: `status ${j.status}`}, j.status), el("td", {}, pct),
      el("td", {class: "msg"}, j.error || j.message || ""),
      el("td", {}, new Date(j.created_at * 1000).toLocaleString())));
  }
}

// Chat: stream the reply of one or two models (side by side) through /api/chat.
async function streamChat(url, body, onEvent) {
  const resp = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  if (!resp.ok) {
    let data = {};
    try { data = await resp.json(); } catch (e) { /* not JSON */ }
    onEvent("error", {errors: data.errors || [{message: `HTTP ${resp.status}`}]});
    return;
  }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buf += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
      let name = "message", data = "";
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}

window.addEventListener("DOMContentLoaded", () => {
  const job = document.getElementById("job");
  if (job) followJob(job.dataset.id);
  if (document.querySelector("#jobs")) { refreshJobs(); setInterval(refreshJobs, 2000); }
});
