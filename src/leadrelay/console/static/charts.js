// Charts of the console: each <canvas data-chart="ID"> is drawn with Chart.js from the JSON
// configuration in <script type="application/json" id="ID"> (CSP: no inline script), on load
// and after every htmx swap.
(() => {
  "use strict";

  function draw() {
    if (!window.Chart) return;
    window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    for (const canvas of document.querySelectorAll("canvas[data-chart]")) {
      if (canvas.dataset.drawn) continue;
      const source = document.getElementById(canvas.dataset.chart);
      if (!source) continue;
      canvas.dataset.drawn = "true";
      new window.Chart(canvas, JSON.parse(source.textContent));
    }
  }

  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", draw);
})();
