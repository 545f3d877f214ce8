/* monitor-svc/web/app.js — the dashboard's logic: a router on the URL fragment (#/ the trace
   list, #/trace/<id> one trace, #/overview the charts), calls to monitor-svc's JSON API
   (/api/traces, /api/traces/<id>, /api/stats, /api/facets, /api/status), live refresh, and
   rendering with DOM nodes and textContent only (trace text is never parsed as HTML). */
"use strict";

(function () {
  const $ = function (id) { return document.getElementById(id); };
  const C = window.TwinCharts;
  const LIVE_MS = 3000, STATUS_MS = 3000, OVERVIEW_MS = 15000;
  const PAGE = 50;

  const state = {
    view: "",
    rows: [],            /* rows shown in the list */
    token: "",           /* next page */
    pagesLoaded: 1,
    seen: new Set(),     /* ids shown before the last refresh (to flash new ones) */
    liveTimer: 0,
    overviewTimer: 0,
    listSeq: 0,
  };

  /* ==== helpers ==== */

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "class") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

  async function api(path) {
    const r = await fetch(path, { cache: "no-store" });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      const msg = body && body.error ? body.error.message : ("HTTP " + r.status);
      const err = new Error(msg);
      err.status = r.status;
      throw err;
    }
    return body;
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    const now = new Date();
    const t = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    if (d.toDateString() === now.toDateString()) return t;
    return d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + t;
  }

  function fmtAgo(ms) {
    const s = Math.max(0, (Date.now() - ms) / 1000);
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return (s / 3600).toFixed(1) + " h ago";
    return (s / 86400).toFixed(1) + " days ago";
  }

  function fmtCost(v) {
    if (!v) return "$0";
    if (v < 0.01) return "$" + v.toFixed(5);
    return "$" + v.toFixed(4);
  }

  function fmtPct(v) { return (100 * v).toFixed(v > 0 && v < 0.1 ? 2 : 1) + "%"; }
  function fmtInt(v) { return Number(v).toLocaleString("en-US"); }

  function setOptions(select, values, allLabel) {
    const keep = select.value;
    clear(select);
    select.appendChild(el("option", { value: "", text: allLabel }));
    values.forEach(function (v) { select.appendChild(el("option", { value: v, text: v })); });
    select.value = values.indexOf(keep) >= 0 ? keep : "";
  }

  async function loadFacets() {
    try {
      const f = await api("/api/facets");
      setOptions($("f-model"), f.models, "All models");
      setOptions($("o-model"), f.models, "All models");
      setOptions($("f-template"), f.templates, "All templates");
      setOptions($("o-template"), f.templates, "All templates");
    } catch (e) { /* the status line says when Redis is down */ }
  }

  /* ==== status line ==== */

  async function refreshStatus() {
    try {
      const s = await api("/api/status");
      $("status-dot").className = "dot " + (s.redis_up ? "up" : "down");
      let t = s.redis_up ? fmtInt(s.stored_traces) + " traces stored" : "Redis unreachable";
      if (s.redis_up && s.lag > 0) t += " · lag " + fmtInt(s.lag);
      if (s.redis_up && s.last_entry_ms) t += " · last trace " + fmtAgo(s.last_entry_ms);
      $("status-text").textContent = t;
      $("status").title = "stream " + s.stream + ", group " + s.group + ", consumer " + s.consumer +
        "; pending " + s.pending + ", stream length " + s.stream_length;
    } catch (e) {
      $("status-dot").className = "dot down";
      $("status-text").textContent = "monitor unreachable";
    }
  }

  /* ==== the trace list ==== */

  function listQuery(token) {
    const p = new URLSearchParams();
    const range = Number($("f-range").value);
    if (range > 0) p.set("since_ms", String(Date.now() - range));
    if ($("f-model").value) p.set("model", $("f-model").value);
    if ($("f-template").value) p.set("template_name", $("f-template").value);
    if ($("f-text").value.trim()) p.set("text", $("f-text").value.trim());
    if ($("f-errors").checked) p.set("errors_only", "1");
    p.set("page_size", String(PAGE));
    if (token) p.set("page_token", token);
    return "/api/traces?" + p.toString();
  }

  function latencyCell(ms, maxMs) {
    const w = Math.max(3, Math.round(46 * Math.min(1, ms / Math.max(maxMs, 1))));
    const cls = ms > 8000 ? "latbar vslow" : ms > 3000 ? "latbar slow" : "latbar";
    const bar = el("span", { class: cls });
    bar.style.width = w + "px";
    return el("td", { class: "num c-latency" }, [bar, document.createTextNode(C.fmtMs(ms))]);
  }

  function traceRow(r, maxMs, fresh) {
    const status = r.error ? el("span", { class: "badge err", text: "error", title: r.error })
                           : el("span", { class: "badge ok", text: "ok" });
    const tr = el("tr", { "data-trace-id": r.trace_id, class: fresh ? "fresh" : "" }, [
      el("td", { class: "c-time", text: fmtTime(r.time_ms), title: new Date(r.time_ms).toString() }),
      el("td", { class: "c-status" }, [status]),
      el("td", { class: "c-query" }, [el("div", { class: "q", text: r.query || "(no query)", title: r.query })]),
      el("td", { class: "c-model", text: r.model }),
      el("td", { class: "c-template" }, [el("span", { class: "chip", text: r.template_name + (r.template_version ? " · " + r.template_version : "") })]),
      latencyCell(r.total_ms, maxMs),
      el("td", { class: "num c-ttft", text: r.ttft_ms > 0 ? C.fmtMs(r.ttft_ms) : "–" }),
      el("td", { class: "num c-tokens", text: fmtInt(r.prompt_tokens) + " / " + fmtInt(r.completion_tokens) }),
      el("td", { class: "num c-cost", text: fmtCost(r.cost_usd) }),
      el("td", { class: "c-cache" }, [r.cache_hit ? el("span", { class: "chip hit", text: "hit" }) : null]),
    ]);
    tr.addEventListener("click", function () { location.hash = "#/trace/" + encodeURIComponent(r.trace_id); });
    return tr;
  }

  /* Rows already on the page are kept (same node) so that a live refresh only adds what is new. */
  function renderRows() {
    const body = $("trace-rows");
    const existing = new Map();
    Array.prototype.forEach.call(body.rows, function (tr) { existing.set(tr.getAttribute("data-trace-id"), tr); });
    const maxMs = state.rows.reduce(function (a, r) { return Math.max(a, r.total_ms); }, 0);
    const wanted = state.rows.map(function (r) {
      const old = existing.get(r.trace_id);
      if (old) {
        existing.delete(r.trace_id);
        old.classList.remove("fresh");
        return old;
      }
      return traceRow(r, maxMs, state.seen.size > 0 && !state.seen.has(r.trace_id));
    });
    existing.forEach(function (tr) { body.removeChild(tr); });
    wanted.forEach(function (tr, i) {
      if (body.rows[i] !== tr) body.insertBefore(tr, body.rows[i] || null);
    });
    state.seen = new Set(state.rows.map(function (r) { return r.trace_id; }));
    $("list-empty").hidden = state.rows.length > 0;
    $("load-more").hidden = !state.token;
  }

  async function loadList(reset) {
    const seq = ++state.listSeq;
    try {
      const pages = reset ? 1 : state.pagesLoaded;
      let rows = [], token = "", total = 0, partial = false;
      for (let i = 0; i < pages; i++) {
        const js = await api(listQuery(token));
        rows = rows.concat(js.traces);
        token = js.next_page_token;
        if (i === 0) { total = js.total; partial = js.total_partial; }
        if (!token) break;
      }
      if (seq !== state.listSeq) return; /* a newer request won */
      if (reset) {
        state.seen = new Set();
        clear($("trace-rows"));
      }
      state.rows = rows;
      state.token = token;
      state.pagesLoaded = pages;
      $("list-count").textContent = (partial ? "at least " : "") + fmtInt(total) + (total === 1 ? " trace" : " traces");
      $("list-error").textContent = "";
      renderRows();
    } catch (e) {
      if (seq === state.listSeq) $("list-error").textContent = e.message;
    }
  }

  async function loadMore() {
    if (!state.token) return;
    try {
      const js = await api(listQuery(state.token));
      state.rows = state.rows.concat(js.traces);
      state.token = js.next_page_token;
      state.pagesLoaded++;
      renderRows();
    } catch (e) {
      $("list-error").textContent = e.message;
    }
  }

  /* ==== one trace ==== */

  function textBlock(id, s, emptyText) {
    const b = $(id);
    b.textContent = s || emptyText;
    b.className = s ? "text-block" : "text-block none";
  }

  function kvRows(table, obj) {
    const body = table.tBodies[0];
    clear(body);
    const keys = Object.keys(obj || {});
    if (!keys.length) body.appendChild(el("tr", {}, [el("td", { class: "muted", text: "none" })]));
    keys.forEach(function (k) {
      const v = obj[k];
      const s = typeof v === "string" ? v : JSON.stringify(v);
      body.appendChild(el("tr", { "data-key": k }, [el("th", { text: k }), el("td", { text: s })]));
    });
  }

  function renderTrace(t) {
    $("trace-missing").hidden = true;
    $("trace-body").hidden = false;
    $("trace-query-title").textContent = t.query || "(no query)";
    const st = $("trace-status");
    st.textContent = t.error ? "error" : "ok";
    st.className = "badge " + (t.error ? "err" : "ok");
    $("trace-model").textContent = t.model;
    $("trace-template").textContent = (t.template_name || "(no template)") + (t.template_version ? " · " + t.template_version : "");
    $("trace-cache").hidden = !t.cache_hit;
    $("trace-cache").className = "chip hit";
    $("trace-time").textContent = new Date(t.time_ms).toLocaleString() + " (" + fmtAgo(t.time_ms) + ")";
    $("trace-id").textContent = t.trace_id;
    $("trace-error").hidden = !t.error;
    $("trace-error").textContent = t.error || "";
    $("trace-total").textContent = C.fmtMs(t.total_ms || 0);
    $("trace-ttft").textContent = t.ttft_ms > 0 ? C.fmtMs(t.ttft_ms) : "–";
    $("trace-prompt-tokens").textContent = fmtInt(t.prompt_tokens || 0);
    $("trace-completion-tokens").textContent = fmtInt(t.completion_tokens || 0);
    $("trace-cost").textContent = fmtCost(t.cost_usd || 0);
    textBlock("trace-query", t.query, "no query");
    textBlock("trace-answer", t.answer, t.error ? "no answer: the request failed" : "empty answer");
    C.waterfall($("trace-waterfall"), t.stages || [], { ttft: t.ttft_ms, total: t.total_ms });
    const sources = t.sources || [];
    $("trace-sources-count").textContent = "(" + sources.length + ")";
    const sb = $("trace-sources").tBodies[0];
    clear(sb);
    if (!sources.length) sb.appendChild(el("tr", {}, [el("td", { class: "muted", text: "no sources", colspan: "5" })]));
    const top = sources.reduce(function (a, s) { return Math.max(a, s.score || 0); }, 0) || 1;
    sources.forEach(function (s, i) {
      const fill = el("div", { class: "score-fill" });
      fill.style.width = Math.max(2, Math.round(100 * Math.max(0, s.score || 0) / Math.max(top, 1))) + "%";
      sb.appendChild(el("tr", { "data-chunk-id": s.chunk_id }, [
        el("td", { class: "muted", text: String(i + 1) }),
        el("td", {}, [el("code", { text: s.chunk_id })]),
        el("td", {}, [el("code", { text: s.doc_id })]),
        el("td", {}, [el("div", { class: "score" }, [el("div", { class: "score-track" }, [fill]),
                                                      el("span", { class: "score-value", text: (s.score || 0).toFixed(4) })])]),
        el("td", { class: "snippet", text: s.snippet || "" }),
      ]));
    });
    $("trace-template-name").textContent = (t.template_name || "") + (t.template_version ? " · " + t.template_version : "");
    kvRows($("trace-variables"), t.variables);
    kvRows($("trace-sampling"), t.sampling);
    $("trace-prompt").textContent = t.prompt || "";
    $("trace-prompt-size").textContent = "(" + fmtInt((t.prompt || "").length) + " characters)";
    document.title = "Trace " + t.trace_id + " · Twin Monitor";
  }

  async function loadTrace(id) {
    $("trace-body").hidden = true;
    $("trace-missing").hidden = true;
    try {
      renderTrace(await api("/api/traces/" + encodeURIComponent(id)));
    } catch (e) {
      $("trace-missing").hidden = false;
      $("trace-missing").textContent = e.status === 404 ? "No trace " + id + " (it may have aged out)." : e.message;
    }
  }

  /* ==== overview ==== */

  function kpi(label, value, sub) {
    return el("div", { class: "kpi" }, [el("div", { class: "kpi-label", text: label }),
                                        el("div", { class: "kpi-value", text: value }),
                                        sub ? el("div", { class: "kpi-sub", text: sub }) : null]);
  }

  function groupTable(table, groups, keyLabel) {
    clear(table);
    table.appendChild(el("thead", {}, [el("tr", {}, [keyLabel, "Requests", "Error rate", "p50", "p99", "TTFT p50",
      "Tokens in / out", "Cost", "Cache hits"].map(function (h, i) { return el("th", { text: h, class: i ? "num" : "" }); }))]));
    const body = el("tbody");
    if (!groups.length) body.appendChild(el("tr", {}, [el("td", { class: "muted", text: "no traces", colspan: "9" })]));
    groups.forEach(function (g) {
      body.appendChild(el("tr", {}, [
        el("td", { text: g.key || "(none)" }), el("td", { class: "num", text: fmtInt(g.count) }),
        el("td", { class: "num", text: fmtPct(g.error_rate) }), el("td", { class: "num", text: C.fmtMs(g.latency_p50_ms) }),
        el("td", { class: "num", text: C.fmtMs(g.latency_p99_ms) }), el("td", { class: "num", text: C.fmtMs(g.ttft_p50_ms) }),
        el("td", { class: "num", text: C.fmtCount(g.prompt_tokens) + " / " + C.fmtCount(g.completion_tokens) }),
        el("td", { class: "num", text: fmtCost(g.cost_usd) }), el("td", { class: "num", text: fmtPct(g.cache_hit_rate) }),
      ]));
    });
    table.appendChild(body);
  }

  async function loadOverview() {
    const p = new URLSearchParams();
    const win = Number($("o-window").value);
    p.set("window_ms", String(win));
    p.set("buckets", "48");
    if ($("o-model").value) p.set("model", $("o-model").value);
    if ($("o-template").value) p.set("template_name", $("o-template").value);
    let s;
    try {
      s = await api("/api/stats?" + p.toString());
      $("o-error").textContent = "";
    } catch (e) {
      $("o-error").textContent = e.message;
      return;
    }
    const o = s.overall;
    const k = $("o-kpis");
    clear(k);
    const perMin = o.count / Math.max(s.window_ms / 60000, 1e-9);
    k.appendChild(kpi("Requests", fmtInt(o.count), perMin.toFixed(perMin < 10 ? 2 : 0) + " / min"));
    k.appendChild(kpi("Error rate", fmtPct(o.error_rate), fmtInt(o.errors) + " errors"));
    k.appendChild(kpi("Latency p50", C.fmtMs(o.latency_p50_ms), "p90 " + C.fmtMs(o.latency_p90_ms)));
    k.appendChild(kpi("Latency p99", C.fmtMs(o.latency_p99_ms)));
    k.appendChild(kpi("TTFT p50", C.fmtMs(o.ttft_p50_ms), "p99 " + C.fmtMs(o.ttft_p99_ms)));
    k.appendChild(kpi("Tokens", C.fmtCount(o.prompt_tokens + o.completion_tokens),
                      C.fmtCount(o.prompt_tokens) + " in / " + C.fmtCount(o.completion_tokens) + " out"));
    k.appendChild(kpi("Cost", fmtCost(o.cost_usd)));
    k.appendChild(kpi("Cache hits", fmtPct(o.cache_hit_rate)));
    const x = s.series.map(function (b) { return b.start_ms; });
    const nz = function (b, v) { return b.count ? v : null; };
    const css = getComputedStyle(document.documentElement);
    const color = function (n) { return css.getPropertyValue(n).trim(); };
    const perMinute = 60000 / Math.max(s.bucket_ms, 1);
    C.timeChart($("chart-latency"), { x: x, step: s.bucket_ms, kind: "line", yFormat: C.fmtMs, series: [
      { name: "p50", color: color("--c-p50"), values: s.series.map(function (b) { return nz(b, b.latency_p50_ms); }) },
      { name: "p90", color: color("--c-p90"), values: s.series.map(function (b) { return nz(b, b.latency_p90_ms); }) },
      { name: "p99", color: color("--c-p99"), values: s.series.map(function (b) { return nz(b, b.latency_p99_ms); }) }] });
    C.timeChart($("chart-throughput"), { x: x, step: s.bucket_ms, kind: "bars",
      yFormat: function (v) { return C.fmtCount(v) + "/min"; }, series: [
      { name: "ok / min", color: "#748ffc", values: s.series.map(function (b) { return (b.count - b.errors) * perMinute; }) },
      { name: "errors / min", color: "#fa5252", values: s.series.map(function (b) { return b.errors * perMinute; }) }] });
    C.timeChart($("chart-tokens"), { x: x, step: s.bucket_ms, kind: "bars", series: [
      { name: "prompt tokens", color: color("--c-prompt"), values: s.series.map(function (b) { return b.prompt_tokens; }) },
      { name: "completion tokens", color: color("--c-completion"), values: s.series.map(function (b) { return b.completion_tokens; }) }] });
    C.timeChart($("chart-ttft"), { x: x, step: s.bucket_ms, kind: "line", yFormat: C.fmtMs, series: [
      { name: "TTFT p50", color: color("--c-p50"), values: s.series.map(function (b) { return b.ttft_p50_ms || null; }) },
      { name: "TTFT p99", color: color("--c-p99"), values: s.series.map(function (b) { return b.ttft_p99_ms || null; }) }] });
    groupTable($("o-models"), s.per_model, "Model");
    groupTable($("o-templates"), s.per_template, "Template");
  }

  /* ==== routing and timers ==== */

  function stopTimers() {
    clearInterval(state.liveTimer);
    clearInterval(state.overviewTimer);
    state.liveTimer = state.overviewTimer = 0;
  }

  function route() {
    stopTimers();
    const h = location.hash || "#/";
    document.querySelectorAll(".view").forEach(function (v) { v.hidden = true; });
    document.querySelectorAll(".tab").forEach(function (t) { t.classList.remove("active"); });
    if (h.indexOf("#/trace/") === 0) {
      state.view = "trace";
      $("view-trace").hidden = false;
      $("tab-traces").classList.add("active");
      loadTrace(decodeURIComponent(h.slice("#/trace/".length)));
    } else if (h === "#/overview") {
      state.view = "overview";
      document.title = "Overview · Twin Monitor";
      $("view-overview").hidden = false;
      $("tab-overview").classList.add("active");
      loadOverview();
      state.overviewTimer = setInterval(loadOverview, OVERVIEW_MS);
    } else {
      state.view = "traces";
      document.title = "Traces · Twin Monitor";
      $("view-traces").hidden = false;
      $("tab-traces").classList.add("active");
      loadList(true);
      startLive();
    }
    window.scrollTo(0, 0);
  }

  function startLive() {
    clearInterval(state.liveTimer);
    state.liveTimer = 0;
    if ($("f-live").checked && state.view === "traces") {
      state.liveTimer = setInterval(function () { loadList(false); }, LIVE_MS);
    }
  }

  function init() {
    ["f-range", "f-model", "f-template", "f-errors"].forEach(function (id) {
      $(id).addEventListener("change", function () { loadList(true); });
    });
    let typing = 0;
    $("f-text").addEventListener("input", function () {
      clearTimeout(typing);
      typing = setTimeout(function () { loadList(true); }, 250);
    });
    $("filters").addEventListener("submit", function (e) { e.preventDefault(); loadList(true); });
    $("o-filters").addEventListener("submit", function (e) { e.preventDefault(); });
    $("f-live").addEventListener("change", startLive);
    $("load-more").addEventListener("click", loadMore);
    ["o-window", "o-model", "o-template"].forEach(function (id) { $(id).addEventListener("change", loadOverview); });
    window.addEventListener("hashchange", route);
    let resizing = 0;
    window.addEventListener("resize", function () {
      clearTimeout(resizing);
      resizing = setTimeout(function () { if (state.view === "overview") loadOverview(); else if (state.view === "trace") route(); }, 200);
    });
    loadFacets();
    refreshStatus();
    setInterval(refreshStatus, STATUS_MS);
    setInterval(loadFacets, 30000);
    route();
  }

  init();
})();
