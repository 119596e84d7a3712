// The data check's charts (templates/jobs/_preflight.html): each .pf-chart holds its numbers
// in data-points; "lengths" and "values" are histograms (x: bin starts), "labels" a bar per
// label name. The panel arrives through htmx, so charts are drawn on htmx:load.
(function () {
  "use strict";
  const WIDTH = 360, HEIGHT = 180;
  const bars = () => uPlot.paths.bars({size: [0.9, 60], align: 1});

  function histogram(el, points) {
    const marker = Number(el.dataset.marker || 0);
    const x = points.x, width = x.length > 1 ? x[1] - x[0] : 1;
    const hooks = marker ? {draw: [(u) => {
      const left = u.valToPos(marker, "x", true);
      const ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = "#dc2626"; ctx.setLineDash([4, 4]); ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(left, u.bbox.top); ctx.lineTo(left, u.bbox.top + u.bbox.height);
      ctx.stroke(); ctx.restore();
    }]} : {};
    const top = Math.max(x[x.length - 1] + width, marker ? marker + width : 0);
    return new uPlot({
      width: WIDTH, height: HEIGHT, legend: {show: false}, hooks,
      scales: {x: {time: false, range: [x[0], top]}, y: {range: (u, lo, hi) => [0, hi * 1.1 || 1]}},
      axes: [{label: el.dataset.kind === "lengths" ? "tokens" : "value"}, {label: "rows"}],
      series: [{}, {label: "rows", stroke: "#2563eb", fill: "rgba(37, 99, 235, 0.35)", paths: bars(),
                    points: {show: false}}],
    }, [x, points.y], el);
  }

  function labels(el, points) {
    const names = points.names, index = names.map((_, i) => i);
    return new uPlot({
      width: WIDTH, height: HEIGHT, legend: {show: false},
      scales: {x: {time: false, range: [-0.5, names.length - 0.5]}, y: {range: (u, lo, hi) => [0, hi * 1.1 || 1]}},
      axes: [{splits: () => index, values: (u, splits) => splits.map((i) => names[i] ?? ""), rotate: names.length > 6 ? -45 : 0},
             {label: "rows"}],
      series: [{}, {label: "rows", stroke: "#059669", fill: "rgba(5, 150, 105, 0.4)",
                    paths: uPlot.paths.bars({size: [0.7, 60]}), points: {show: false}}],
    }, [index, points.y], el);
  }

  function draw(root) {
    if (!root || !root.querySelectorAll || typeof uPlot === "undefined") return;
    const charts = root.classList && root.classList.contains("pf-chart") ? [root] : root.querySelectorAll(".pf-chart");
    window.tunedeck = window.tunedeck || {};
    window.tunedeck.preflightCharts = window.tunedeck.preflightCharts || [];
    for (const el of charts) {
      if (el.dataset.drawn) continue;
      const points = JSON.parse(el.dataset.points);
      const plot = el.dataset.kind === "labels" ? labels(el, points) : histogram(el, points);
      el.dataset.drawn = "1";
      window.tunedeck.preflightCharts.push(plot);
    }
  }

  document.addEventListener("htmx:load", (event) => draw(event.detail.elt));
})();
