// dnsedge /status: fetches /status.json from the same origin every
// REFRESH milliseconds and renders it. Text only goes in through
// textContent, never as HTML.
"use strict";

const REFRESH = 2000;
let refreshes = 0;

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fixed(v, digits) {
  return typeof v === "number" ? v.toFixed(digits) : "";
}

function fill(id, rows, render) {
  const body = document.querySelector("#" + id + " tbody");
  const next = document.createElement("tbody");
  for (const r of rows || []) next.appendChild(render(r));
  body.replaceWith(next);
}

function section(id, v) {
  const text = v == null ? "none" : typeof v === "string" ? v : JSON.stringify(v, null, 2);
  document.getElementById(id).textContent = text;
}

function render(s) {
  const g = s.generation || {};
  const pol = s.policy || {};
  document.getElementById("summary").textContent =
    "version " + s.version + " · generation " + g.number + " (config " + (g.config_hash || "?") +
    ", loaded " + g.loaded + ") · policy " + pol.source + (pol.version ? " " + pol.version : "");
  fill("listeners", s.listeners, (l) => {
    const tr = document.createElement("tr");
    tr.dataset.kind = l.kind;
    cell(tr, l.kind);
    cell(tr, (l.addresses || []).join(" "));
    cell(tr, fixed(l.qps, 1), "num");
    cell(tr, fixed(l.p50_ms, 3), "num");
    cell(tr, fixed(l.p99_ms, 3), "num");
    return tr;
  });
  const c = s.cache || {};
  document.getElementById("cache").textContent =
    "cache hit ratio " + (100 * (c.hit_ratio || 0)).toFixed(1) + " % (" + c.hits + " from cache, " +
    c.upstream + " from upstreams, over " + fixed(s.window_seconds, 0) + " s)";
  fill("paths", s.paths, (p) => {
    const tr = document.createElement("tr");
    tr.dataset.path = p.name;
    tr.dataset.breaker = p.breaker;
    cell(tr, p.upstream);
    cell(tr, p.proto);
    cell(tr, p.family);
    cell(tr, p.address);
    cell(tr, p.breaker, "breaker");
    cell(tr, fixed(p.srtt_ms, 3), "num");
    cell(tr, fixed(p.loss, 2), "num");
    cell(tr, String(p.consecutive_failures), "num");
    cell(tr, p.last_error ? p.last_error + " (" + p.last_error_at + ")" : "");
    return tr;
  });
  section("canary", s.canary);
  section("rollback", s.rollback);
  section("drills", s.drills);
}

async function refresh() {
  const out = document.getElementById("refreshed");
  try {
    const r = await fetch("/status.json", { cache: "no-store", credentials: "same-origin" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    refreshes++;
    out.className = "";
    out.dataset.refreshes = String(refreshes);
    out.textContent = "refreshed " + new Date().toLocaleTimeString() + ", every " + REFRESH / 1000 + " s";
  } catch (e) {
    out.className = "failed";
    out.textContent = "refresh failed: " + e.message;
  } finally {
    setTimeout(refresh, REFRESH);
  }
}

refresh();
