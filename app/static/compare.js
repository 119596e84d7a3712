// The compare page's curves: one uPlot chart per metric family (train loss, eval loss, each
// eval metric, the learning rate), one series per job in the job's colour. History comes from
// each job's /metrics (M4-downsampled as on the job page, 500 points per series); while a job is queued or running
// (its row in #compared-jobs, refreshed by htmx, says so) its tail is polled every 2 s.
(function () {
  "use strict";
  const box = document.getElementById("compare-charts");
  const meta = document.getElementById("compare-jobs");
  if (!box || !meta) return;

  const jobs = JSON.parse(meta.textContent);
  const MAX_POINTS = 500;           // per series and job, as GET /api/v1/compare
  const HEIGHT = 260;
  const POLL_MS = 2000;
  const CHARTED = /^(train\/loss|eval\/.+|train\/learning_rate)$/;
  const NOT_CHARTED = /(runtime|per_second|flos|\/epoch$)/;
  const STEP_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5,
                      2e5, 5e5, 1e6, 2e6, 5e6];  // whole steps only on the x axis
  const data = new Map(jobs.map((j) => [j.id, new Map()]));   // job -> name -> Map(step -> value)
  const plots = {};
  const finished = new Set();

  function add(jobId, name, steps, values) {
    if (!CHARTED.test(name) || NOT_CHARTED.test(name)) return;
    const series = data.get(jobId);
    let points = series.get(name);
    if (!points) series.set(name, points = new Map());
    for (let i = 0; i < steps.length; i++) {
      if (values[i] !== null && Number.isFinite(values[i])) points.set(steps[i], values[i]);
    }
  }

  function families() {
    const names = new Set();
    for (const series of data.values()) for (const name of series.keys()) names.add(name);
    const order = (n) => (n === "train/loss" ? 0 : n === "eval/loss" ? 1 : n.startsWith("eval/") ? 2 : 3);
    return Array.from(names).sort((a, b) => order(a) - order(b) || a.localeCompare(b));
  }

  function aligned(name) {
    const all = new Set();
    for (const series of data.values()) for (const s of (series.get(name) || new Map()).keys()) all.add(s);
    const xs = Array.from(all).sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const out = [xs];
    for (const job of jobs) {
      const ys = new Array(xs.length).fill(null);
      for (const [s, v] of data.get(job.id).get(name) || new Map()) ys[index.get(s)] = v;
      out.push(ys);
    }
    return out;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    return v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(2) : String(+v.toPrecision(4));
  }

  function chart(name) {
    const figure = document.createElement("figure");
    figure.className = "compare-chart";
    figure.dataset.family = name;
    const caption = document.createElement("figcaption");
    caption.textContent = name;
    const holder = document.createElement("div");
    figure.append(caption, holder);
    box.append(figure);
    const opts = {
      width: holder.clientWidth || 560, height: HEIGHT, scales: {x: {time: false}},
      cursor: {drag: {x: true, y: false}},
      axes: [{label: "step", incrs: STEP_INCRS}, {size: 60}],
      series: [{label: "step"}].concat(jobs.map((job) => ({
        label: `#${job.id} ${job.name}`, stroke: job.color, width: 1.5, spanGaps: true,
        value: (u, v) => fmt(v), points: {show: !name.startsWith("train/"), size: 5},
      }))),
    };
    return {plot: new uPlot(opts, aligned(name), holder), holder};
  }

  function redraw() {
    const names = families();
    document.getElementById("charts-empty").hidden = names.length > 0;
    for (const name of names) {
      if (!plots[name]) plots[name] = chart(name);
      else plots[name].plot.setData(aligned(name));
    }
    box.dataset.families = names.join(",");
  }

  function fetchSeries(job, afterStep) {
    const url = `/api/v1/jobs/${job.id}/metrics?max_points=${MAX_POINTS}&after_step=${afterStep}`;
    return fetch(url, {credentials: "same-origin"})
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((body) => {
        for (const [name, s] of Object.entries(body.series)) add(job.id, name, s.steps, s.values);
      });
  }

  function lastStep(job) {
    let last = -1;
    for (const points of data.get(job.id).values()) for (const s of points.keys()) last = Math.max(last, s);
    return last;
  }

  function statusOf(job) {
    const row = document.querySelector(`#compared-jobs tr[data-job="${job.id}"]`);
    return row ? row.dataset.jobStatus : "succeeded";
  }

  function poll() {
    const due = jobs.filter((job) => !finished.has(job.id));
    const work = due.map((job) => {
      const status = statusOf(job);
      // one more read after the job ends picks up its last points
      if (!["queued", "running"].includes(status)) finished.add(job.id);
      return fetchSeries(job, Math.max(-1, lastStep(job) - 1));
    });
    return Promise.all(work).then(redraw).catch((err) => { box.dataset.error = String(err); })
      .finally(() => { if (finished.size < jobs.length) setTimeout(poll, POLL_MS); });
  }

  window.addEventListener("resize", () => {
    for (const {plot, holder} of Object.values(plots)) plot.setSize({width: holder.clientWidth, height: HEIGHT});
  });
  window.tunedeckCompare = {data, plots};
  Promise.all(jobs.map((job) => fetchSeries(job, -1)))
    .then(() => { redraw(); box.dataset.loaded = "true"; })
    .catch((err) => { box.dataset.error = String(err); })
    .finally(() => {
      for (const job of jobs) if (!["queued", "running"].includes(statusOf(job))) finished.add(job.id);
      if (finished.size < jobs.length) setTimeout(poll, POLL_MS);
    });
})();
