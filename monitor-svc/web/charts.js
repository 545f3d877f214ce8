/* monitor-svc/web/charts.js — the dashboard's charts, drawn as SVG by hand (no library: the
   page loads nothing from elsewhere): a stage waterfall for one trace, line charts and stacked
   bar charts over time with axes, legends and a hover tooltip. Exposes window.TwinCharts. */
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const STAGE_COLORS = ["#748ffc", "#4dabf7", "#3bc9db", "#38d9a9", "#69db7c", "#a9e34b", "#ffd43b",
                        "#ffa94d", "#ff8787", "#f783ac", "#da77f2", "#9775fa"];

  function svgEl(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function text(parent, x, y, s, attrs) {
    const t = svgEl("text", Object.assign({ x: x, y: y }, attrs || {}), parent);
    t.textContent = s;
    return t;
  }

  /* A round step so that max spans about `count` ticks. */
  function niceStep(max, count) {
    if (!(max > 0)) return 1;
    const raw = max / count;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
  }

  function fmtMs(v) {
    if (v === 0) return "0";
    if (v >= 10000) return (v / 1000).toFixed(1) + " s";
    if (v >= 1000) return (v / 1000).toFixed(2) + " s";
    if (v >= 100) return v.toFixed(0) + " ms";
    if (v >= 10) return v.toFixed(1) + " ms";
    return v.toFixed(2) + " ms";
  }

  function fmtCount(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
    return String(Math.round(v * 100) / 100);
  }

  function fmtTime(ms, spanMs) {
    const d = new Date(ms);
    const hm = String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
    if (spanMs > 36 * 3600 * 1000) return (d.getMonth() + 1) + "/" + d.getDate() + " " + hm;
    return hm;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
  }

  function widthOf(el, fallback) {
    const w = el.getBoundingClientRect().width;
    return w > 50 ? Math.floor(w) : fallback;
  }

  /* ---- tooltip (one for the page) ---- */
  let tipEl = null;
  function tip(html, x, y) {
    if (!tipEl) {
      tipEl = document.createElement("div");
      tipEl.className = "tip";
      document.body.appendChild(tipEl);
    }
    if (html === null) {
      tipEl.hidden = true;
      return;
    }
    clear(tipEl);
    html.forEach(function (line) {
      const row = document.createElement("div");
      if (line.color) {
        const sw = document.createElement("span");
        sw.className = "sw";
        sw.style.background = line.color;
        row.appendChild(sw);
      }
      const b = document.createElement(line.bold ? "b" : "span");
      b.textContent = line.text;
      row.appendChild(b);
      tipEl.appendChild(row);
    });
    tipEl.hidden = false;
    const r = tipEl.getBoundingClientRect();
    const left = Math.min(x + 14, window.innerWidth - r.width - 8);
    tipEl.style.left = left + "px";
    tipEl.style.top = Math.max(8, y - r.height - 10) + "px";
  }

  /* ---- the waterfall of one trace's stages ----
     stages: [{stage, ms}] in execution order; each bar starts where the previous ended.
     opts.ttft, opts.total: markers (ms). */
  function waterfall(el, stages, opts) {
    clear(el);
    const W = widthOf(el, 600);
    const labelW = 112, msW = 70, rowH = 26, top = 8, axisH = 28;
    const sum = stages.reduce(function (a, s) { return a + s.ms; }, 0);
    const span = Math.max(sum, opts.total || 0, opts.ttft || 0, 1e-3);
    const H = top + stages.length * rowH + axisH + 18;
    const svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, class: "wf", role: "img",
                               "aria-label": "stage timings" }, el);
    const x0 = labelW, x1 = W - msW;
    const sx = function (v) { return x0 + (x1 - x0) * v / span; };
    const axis = svgEl("g", { class: "axis" }, svg);
    const step = niceStep(span, 5);
    const yAxis = top + stages.length * rowH + 4;
    for (let v = 0; v <= span + 1e-9; v += step) {
      svgEl("line", { x1: sx(v), x2: sx(v), y1: top - 4, y2: yAxis, class: "grid" }, axis);
      text(axis, sx(v), yAxis + 14, fmtMs(v), { "text-anchor": "middle" });
    }
    svgEl("line", { x1: x0, x2: x1, y1: yAxis, y2: yAxis, class: "base" }, axis);
    let at = 0;
    stages.forEach(function (s, i) {
      const y = top + i * rowH;
      text(svg, labelW - 10, y + rowH / 2 + 4, s.stage, { "text-anchor": "end", class: "label" });
      const w = Math.max(sx(at + s.ms) - sx(at), 2);
      const bar = svgEl("rect", { x: sx(at), y: y + 5, width: w, height: rowH - 10, rx: 3,
                                  fill: STAGE_COLORS[i % STAGE_COLORS.length], class: "stage-bar",
                                  "data-stage": s.stage, "data-ms": s.ms }, svg);
      const title = svgEl("title", {}, bar);
      title.textContent = s.stage + ": " + fmtMs(s.ms) + " (from " + fmtMs(at) + ")";
      text(svg, Math.min(sx(at) + w + 6, x1 + 4), y + rowH / 2 + 4, fmtMs(s.ms), { class: "ms" });
      at += s.ms;
    });
    function marker(v, label, color) {
      if (!(v > 0)) return;
      svgEl("line", { x1: sx(v), x2: sx(v), y1: top - 4, y2: yAxis, stroke: color, class: "marker" }, svg);
      text(svg, sx(v), H - 2, label + " " + fmtMs(v), { "text-anchor": "middle", fill: color, class: "marker-label" });
    }
    marker(opts.ttft, "TTFT", "#e67700");
    if (opts.total && Math.abs(opts.total - (opts.ttft || 0)) > span * 0.12) marker(opts.total, "total", "#1c2333");
    if (!stages.length) text(svg, W / 2, top + 20, "no stage timings in this trace", { class: "nodata", "text-anchor": "middle" });
  }

  /* ---- charts over time ----
     data: {x: [start_ms...], step: bucket_ms, series: [{name, color, values: [...]}],
            kind: "line" | "bars" (stacked), yFormat: fn} */
  function timeChart(el, data) {
    clear(el);
    const W = widthOf(el, 600), H = 230;
    const m = { l: 58, r: 14, t: 12, b: 44 };
    const svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, role: "img" }, el);
    const n = data.x.length;
    const yf = data.yFormat || fmtCount;
    const stacked = data.kind === "bars";
    let max = 0;
    for (let i = 0; i < n; i++) {
      if (stacked) {
        let s = 0;
        data.series.forEach(function (se) { s += se.values[i] || 0; });
        max = Math.max(max, s);
      } else {
        data.series.forEach(function (se) { max = Math.max(max, se.values[i] || 0); });
      }
    }
    const step = niceStep(max || 1, 4);
    const top = Math.max(step, Math.ceil((max || 1) / step) * step);
    const px = function (i) { return m.l + (W - m.l - m.r) * (n <= 1 ? 0.5 : i / (n - 1)); };
    const bw = (W - m.l - m.r) / Math.max(n, 1);
    const bx = function (i) { return m.l + bw * i; };
    const py = function (v) { return H - m.b - (H - m.t - m.b) * v / top; };
    const axis = svgEl("g", { class: "axis" }, svg);
    for (let v = 0; v <= top + 1e-9; v += step) {
      svgEl("line", { x1: m.l, x2: W - m.r, y1: py(v), y2: py(v), class: v === 0 ? "base" : "grid" }, axis);
      text(axis, m.l - 8, py(v) + 4, yf(v), { "text-anchor": "end" });
    }
    const span = n ? data.x[n - 1] - data.x[0] + data.step : 0;
    const every = Math.max(1, Math.ceil(n / 6));
    for (let i = 0; i < n; i += every) {
      const cx = stacked ? bx(i) + bw / 2 : px(i);
      text(axis, cx, H - m.b + 16, fmtTime(data.x[i], span), { "text-anchor": "middle" });
    }
    if (!max) text(svg, W / 2, (H - m.b) / 2 + 4, "no traces in this window", { class: "nodata", "text-anchor": "middle" });
    if (stacked) {
      for (let i = 0; i < n; i++) {
        let base = 0;
        data.series.forEach(function (se) {
          const v = se.values[i] || 0;
          if (v > 0) {
            svgEl("rect", { x: bx(i) + bw * 0.12, width: Math.max(bw * 0.76, 1), y: py(base + v),
                            height: Math.max(py(base) - py(base + v), 0.5), fill: se.color, rx: 1.5 }, svg);
          }
          base += v;
        });
      }
    } else {
      data.series.forEach(function (se) {
        let d = "";
        for (let i = 0; i < n; i++) {
          const v = se.values[i];
          if (v === null || v === undefined) continue;
          d += (d ? "L" : "M") + px(i).toFixed(1) + "," + py(v).toFixed(1);
        }
        if (d) svgEl("path", { d: d, fill: "none", stroke: se.color, "stroke-width": 2, "stroke-linejoin": "round" }, svg);
        for (let i = 0; i < n; i++) {
          const v = se.values[i];
          if (v === null || v === undefined || n > 40) continue;
          svgEl("circle", { cx: px(i), cy: py(v), r: 2.5, fill: se.color }, svg);
        }
      });
    }
    /* legend */
    let lx = m.l;
    const legend = svgEl("g", { class: "legend" }, svg);
    data.series.forEach(function (se) {
      svgEl("rect", { x: lx, y: H - 14, width: 10, height: 10, rx: 2, fill: se.color }, legend);
      const t = text(legend, lx + 14, H - 5, se.name);
      lx += 24 + se.name.length * 6.5;
      void t;
    });
    /* hover */
    const hover = svgEl("line", { class: "hover-line", y1: m.t, y2: H - m.b, x1: m.l, x2: m.l }, svg);
    const overlay = svgEl("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b,
                                    fill: "transparent" }, svg);
    overlay.addEventListener("mousemove", function (ev) {
      const r = svg.getBoundingClientRect();
      const x = (ev.clientX - r.left) * W / r.width;
      let i = stacked ? Math.floor((x - m.l) / bw) : Math.round((x - m.l) / ((W - m.l - m.r) / Math.max(n - 1, 1)));
      i = Math.max(0, Math.min(n - 1, i));
      if (n === 0) return;
      const cx = stacked ? bx(i) + bw / 2 : px(i);
      hover.setAttribute("x1", cx);
      hover.setAttribute("x2", cx);
      hover.setAttribute("class", "hover-line on");
      const lines = [{ text: new Date(data.x[i]).toLocaleString(), bold: true }];
      data.series.forEach(function (se) {
        const v = se.values[i];
        lines.push({ color: se.color, text: se.name + ": " + (v === null || v === undefined ? "–" : yf(v)) });
      });
      tip(lines, ev.clientX, ev.clientY);
    });
    overlay.addEventListener("mouseleave", function () {
      hover.setAttribute("class", "hover-line");
      tip(null);
    });
  }

  window.TwinCharts = { waterfall: waterfall, timeChart: timeChart, fmtMs: fmtMs, fmtCount: fmtCount };
})();
