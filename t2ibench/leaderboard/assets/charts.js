/* t2ibench leaderboard: draw each <div class="chart"> from the Plotly figure JSON in its
   <script type="application/json"> sibling, with the bundled plotly.min.js (no network).
   Without Plotly (file missing) the static PNGs below remain the figures. */
(function () {
  "use strict";
  var done = 0, divs = document.querySelectorAll("div.chart[data-spec]");
  if (typeof Plotly === "undefined") {
    document.documentElement.setAttribute("data-charts", "unavailable");
    return;
  }
  Array.prototype.forEach.call(divs, function (div) {
    var spec = JSON.parse(document.getElementById(div.getAttribute("data-spec")).textContent);
    var config = {responsive: true, displaylogo: false, scrollZoom: true};
    Plotly.newPlot(div, spec.data, spec.layout, config).then(function () {
      done += 1;
      if (done === divs.length) document.documentElement.setAttribute("data-charts", "ready");
    });
  });
  if (!divs.length) document.documentElement.setAttribute("data-charts", "ready");
})();
