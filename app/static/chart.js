// The job page's live chart: history from /metrics, then `metric` events from the page's one
// event stream (opened by htmx's SSE extension on #live). Points are kept per series by step,
// so a replayed point replaces itself instead of drawing twice.
(function () {
  "use strict";
  const el = document.getElementById("chart");
  const live = document.getElementById("live");
  if (!el || !live) return;

  const MAX_POINTS = 2000;          // per series, as the server downsamples
  const HEIGHT = 340;
  const DEFAULT_ON = new Set(["train/loss", "eval/loss"]);
  const NOT_CHARTED = /(runtime|per_second|flos|^train\/train_|\/epoch$)/;
  const COLORS = {"train/loss": "#2563eb", "eval/loss": "#dc2626",
                  "train/learning_rate": "#9333ea", "train/grad_norm": "#64748b"};
  const PALETTE = ["#059669", "#d97706", "#0891b2", "#db2777", "#4f46e5", "#65a30d"];

  const series = new Map();          // name -> Map(step -> value)
  const visible = {};
  const drawLog = [];                // {id, name, step, receivedAt, drawnAt}: latency probe
  let pending = [];
  let plot = null;
  let plotNames = "";
  let scheduled = false;
  let zoomed = false;
  let cursor = 0;
  const streamBase = (live.getAttribute("sse-connect") || "").split("?")[0];

  // ---- data

  function add(name, step, value) {
    if (NOT_CHARTED.test(name) || value === null || !Number.isFinite(value)) return false;
    let points = series.get(name);
    if (!points) series.set(name, points = new Map());
    points.set(step, value);
    if (points.size > 2 * MAX_POINTS) series.set(name, thin(points, MAX_POINTS));
    return true;
  }

  // M4, the server's algorithm (app/jobs/series.py m4): per bucket of steps keep the first,
  // last, min and max point. Only for live points piling up on a page left open; history
  // arrives already downsampled.
  function thin(points, maxPoints) {
    const steps = Array.from(points.keys()).sort((a, b) => a - b);
    const buckets = Math.max(1, Math.floor(maxPoints / 4));
    const lo = steps[0];
    const span = steps[steps.length - 1] - lo + 1;
    const out = new Map();
    let bucket = -1;
    let group = [];
    const flush = () => {
      if (!group.length) return;
      let min = group[0], max = group[0];
      for (const s of group) {
        if (points.get(s) < points.get(min)) min = s;
        if (points.get(s) > points.get(max)) max = s;
      }
      for (const s of [group[0], min, max, group[group.length - 1]]) out.set(s, points.get(s));
      group = [];
    };
    for (const s of steps) {
      const b = Math.floor(((s - lo) * buckets) / span);
      if (b !== bucket) { flush(); bucket = b; }
      group.push(s);
    }
    flush();
    return out;
  }

  function names() {
    const order = (n) => (n === "train/loss" ? 0 : n === "eval/loss" ? 1 : n.startsWith("eval/") ? 2 : 3);
    return Array.from(series.keys()).sort((a, b) => order(a) - order(b) || a.localeCompare(b));
  }

  function aligned(list) {
    const all = new Set();
    for (const n of list) for (const s of series.get(n).keys()) all.add(s);
    const xs = Array.from(all).sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const data = [xs];
    for (const n of list) {
      const ys = new Array(xs.length).fill(null);
      for (const [s, v] of series.get(n)) ys[index.get(s)] = v;
      data.push(ys);
    }
    return data;
  }

  function pointCount() {
    let total = 0;
    for (const points of series.values()) total += points.size;
    return total;
  }

  // ---- drawing

  function scaleOf(name) {
    if (name.endsWith("loss")) return "loss";
    if (name.endsWith("learning_rate")) return "lr";
    if (name.endsWith("grad_norm")) return "grad";
    return "metric";
  }

  function colorOf(name, i) {
    return COLORS[name] || PALETTE[i % PALETTE.length];
  }

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    return v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(2) : String(+v.toPrecision(4));
  }

  function axes(list) {
    const used = new Set(list.map(scaleOf));
    const out = [{label: "step", values: (u, ticks) => ticks.map((t) => String(t))}];
    if (used.has("loss")) out.push({scale: "loss", label: "loss", size: 56});
    if (used.has("metric")) out.push({scale: "metric", label: "metric", side: 1, size: 56,
                                      grid: {show: false}});
    return out;
  }

  function build(list) {
    if (plot) plot.destroy();
    const opts = {
      width: el.clientWidth || 800,
      height: HEIGHT,
      scales: {x: {time: false}},
      axes: axes(list),
      cursor: {drag: {x: true, y: false}},
      series: [{label: "step", value: (u, v) => (v === null ? "–" : String(v))}].concat(
        list.map((name, i) => ({
          label: name, scale: scaleOf(name), stroke: colorOf(name, i), width: 1.5,
          spanGaps: true, show: visible[name], value: (u, v) => fmt(v),
          points: {show: !name.startsWith("train/"), size: 5},
        }))),
      hooks: {
        draw: [onDraw, drawStops],
        setSelect: [(u) => { if (u.select.width > 0) zoomed = true; }],
        setSeries: [(u, i) => { if (i) syncToggle(list[i - 1], u.series[i].show); }],
      },
    };
    plot = new uPlot(opts, aligned(list), el);
    plotNames = list.join("\n");
    renderToggles(list);
  }

  // Early stopping: dashed lines at the step training stopped and at the best checkpoint's,
  // from the status block's #stopped-early notice (which htmx refreshes when the job ends).
  function drawStops(u) {
    const notice = document.getElementById("stopped-early");
    if (!notice) return;
    const ratio = window.devicePixelRatio || 1;
    const marks = [["best", notice.dataset.bestStep, "#047857"],
                   ["stopped", notice.dataset.step, "#92400e"]];
    const ctx = u.ctx;
    for (const [label, step, color] of marks) {
      const x = Math.round(u.valToPos(Number(step), "x", true));
      if (!Number.isFinite(x)) continue;
      ctx.save();
      ctx.strokeStyle = ctx.fillStyle = color;
      ctx.setLineDash([4 * ratio, 4 * ratio]);
      ctx.lineWidth = ratio;
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.font = `${11 * ratio}px sans-serif`;
      ctx.fillText(`${label} ${step}`, x + 4 * ratio, u.bbox.top + (label === "best" ? 12 : 26) * ratio);
      ctx.restore();
    }
    el.dataset.stops = marks.map((m) => m[1]).join(",");  // what was drawn, for the tests
  }

  function onDraw() {
    const now = Date.now();
    for (const p of pending) { p.drawnAt = now; drawLog.push(p); }
    pending = [];
    if (drawLog.length > 20000) drawLog.splice(0, drawLog.length - 20000);
  }

  function redraw() {
    scheduled = false;
    const list = names();
    document.getElementById("chart-empty").hidden = list.length > 0;
    if (!list.length) return;
    for (const n of list) if (!(n in visible)) visible[n] = DEFAULT_ON.has(n);
    if (!plot || list.join("\n") !== plotNames) build(list);
    else plot.setData(aligned(list), !zoomed);
    el.dataset.points = String(pointCount());
    el.dataset.trainLossPoints = String((series.get("train/loss") || new Map()).size);
  }

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    // rAF pauses in background tabs; the timeout still draws there (and caps the delay).
    let done = false;
    const run = () => { if (!done) { done = true; redraw(); } };
    requestAnimationFrame(run);
    setTimeout(run, 100);
  }

  // ---- series toggles

  function renderToggles(list) {
    const box = document.getElementById("series-toggles");
    box.replaceChildren(...list.map((name, i) => {
      const label = document.createElement("label");
      label.className = "radio toggle";
      const input = document.createElement("input");
      input.type = "checkbox";
      input.checked = visible[name];
      input.dataset.series = name;
      input.addEventListener("change", () => {
        visible[name] = input.checked;
        plot.setSeries(i + 1, {show: input.checked});
      });
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colorOf(name, i);
      label.append(input, swatch, document.createTextNode(name));
      return label;
    }));
  }

  function syncToggle(name, show) {
    visible[name] = show;
    const input = document.querySelector(`#series-toggles input[data-series="${name}"]`);
    if (input) input.checked = show;
  }

  // ---- inputs: history, then the stream

  function parse(text) {
    try {
      return JSON.parse(text.replace(/\bNaN\b|-?\bInfinity\b/g, "null"));
    } catch (err) {
      return null;
    }
  }

  function onMetric(event) {
    const p = parse(event.data);
    if (!p) return;
    if (add(p.name, p.step, p.value)) {
      pending.push({id: p.id, name: p.name, step: p.step, receivedAt: Date.now()});
    }
    if (p.id > cursor) {
      cursor = p.id;
      // A hard reconnect (the extension makes a new EventSource) resumes from here.
      if (streamBase) live.setAttribute("sse-connect", `${streamBase}?after=${cursor}`);
    }
    schedule();
  }

  const sources = new WeakSet();
  document.addEventListener("htmx:sseOpen", (event) => {
    const source = event.detail && event.detail.source;
    if (!source || sources.has(source)) return;
    sources.add(source);
    source.addEventListener("metric", onMetric);
  });

  function loadHistory() {
    return fetch(`${el.dataset.metricsUrl}?max_points=${MAX_POINTS}`, {credentials: "same-origin"})
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((body) => {
        for (const [name, s] of Object.entries(body.series)) {
          for (let i = 0; i < s.steps.length; i++) add(name, s.steps[i], s.values[i]);
        }
        el.dataset.loaded = "true";
        redraw();
      })
      .catch((err) => { el.dataset.error = String(err); });
  }

  // The status block swapped in at the end may carry the early-stopping marks.
  document.addEventListener("htmx:afterSettle", (event) => {
    if (plot && event.target && event.target.id === "job-status") plot.redraw(false, false);
  });
  el.addEventListener("dblclick", () => { zoomed = false; });
  window.addEventListener("resize", () => {
    if (plot) plot.setSize({width: el.clientWidth, height: HEIGHT});
  });

  window.tunedeck = {series, drawLog, pointCount, get plot() { return plot; }};
  loadHistory();
})();
