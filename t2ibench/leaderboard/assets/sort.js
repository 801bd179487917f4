/* t2ibench leaderboard: click a column header to sort its table (again to reverse).
   A URL hash #sort=TABLE_ID:COLUMN_KEY[:asc|desc] sorts on load. Empty cells always sort last. */
(function () {
  "use strict";
  function cellValue(row, idx, type) {
    var cell = row.cells[idx];
    if (!cell) return null;
    var raw = cell.getAttribute("data-v");
    if (raw === null) raw = cell.textContent.trim();
    if (raw === "") return null;
    if (type === "num") {
      var v = parseFloat(raw);
      return isNaN(v) ? null : v;
    }
    return raw.toLowerCase();
  }
  function sortTable(table, th, dir) {
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var type = th.getAttribute("data-type") || "text";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, idx, type), y = cellValue(b, idx, type);
      if (x === null || y === null) return x === y ? 0 : (x === null ? 1 : -1);
      var c = x < y ? -1 : (x > y ? 1 : 0);
      return dir === "asc" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending");
    table.setAttribute("data-sorted", th.getAttribute("data-key") + ":" + dir);
  }
  function nextDir(th) {
    var cur = th.getAttribute("aria-sort");
    if (cur === "descending") return "asc";
    if (cur === "ascending") return "desc";
    return th.getAttribute("data-type") === "num" ? "desc" : "asc";
  }
  var headers = document.querySelectorAll("table.sortable th[data-key]");
  Array.prototype.forEach.call(headers, function (th) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortTable(th.closest("table"), th, nextDir(th)); });
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); th.click(); }
    });
  });
  function applyHash() {
    var m = /(?:^#|&)sort=([^:&]+):([^:&]+)(?::(asc|desc))?/.exec(location.hash);
    if (!m) return;
    var table = document.getElementById(decodeURIComponent(m[1]));
    if (!table) return;
    var th = table.querySelector('th[data-key="' + decodeURIComponent(m[2]).replace(/"/g, "") + '"]');
    if (th) sortTable(table, th, m[3] || nextDir(th));
  }
  applyHash();
  window.addEventListener("hashchange", applyHash);
  document.documentElement.setAttribute("data-js", "ready");
})();
