// The predictions card's scatter plot (text-regression): predicted vs true for every labelled
// row, which the server puts in #scatter's data-points as [true values, predicted values]
// sorted by true value. The card is re-rendered by htmx (paging, the toggle, the job's end),
// so each new #scatter is drawn when it arrives.
(function () {
  "use strict";

  function draw(root) {
    const el = root && root.querySelector ? (root.id === "scatter" ? root : root.querySelector("#scatter")) : null;
    if (!el || el.dataset.drawn || typeof uPlot === "undefined") return;
    const [truth, predicted] = JSON.parse(el.dataset.points);
    const all = truth.concat(predicted);
    let lo = Math.min(...all), hi = Math.max(...all);
    const pad = (hi - lo || 1) * 0.05;
    lo -= pad; hi += pad;
    const range = () => [lo, hi];
    const width = Math.min(560, el.clientWidth || 560);
    const plot = new uPlot({
      width, height: 320,
      scales: {x: {time: false, range}, y: {range}},
      axes: [{label: "true"}, {label: "predicted"}],
      legend: {show: false},
      cursor: {drag: {x: false, y: false}},
      series: [
        {label: "true"},
        {label: "predicted", stroke: "#2563eb", paths: () => null,
         points: {show: true, size: 6, stroke: "#2563eb", fill: "rgba(37, 99, 235, 0.35)"}},
        {label: "y = x", stroke: "#94a3b8", dash: [4, 4], width: 1, points: {show: false}},
      ],
    }, [truth, predicted, truth], el);
    el.dataset.drawn = String(truth.length);
    window.tunedeck = window.tunedeck || {};
    window.tunedeck.scatter = plot;
  }

  document.addEventListener("htmx:load", (event) => draw(event.detail.elt));
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => draw(document));
  } else {
    draw(document);
  }
})();
