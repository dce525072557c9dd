// Moves the time grids' now-line on as the minutes pass (templates/desk/_time_grid.html).
// The server draws it where now was; without this script it stays there until the
// next reload. Rows are quarter hours from data-start; classes rN and mN place it
// (the Content-Security-Policy allows no inline style).
(function () {
  var QUARTER = 15 * 60 * 1000;
  function place() {
    var lines = document.querySelectorAll(".tg-now[data-start]");
    for (var i = 0; i < lines.length; i++) {
      var line = lines[i];
      var elapsed = Date.now() - Date.parse(line.dataset.start);
      var rows = parseInt(line.dataset.rows, 10);
      var row = Math.floor(elapsed / QUARTER);
      var minute = Math.floor((elapsed % QUARTER) / 60000);
      var shown = elapsed >= 0 && row < rows;
      if (shown) {
        line.className = "tg-now r" + (row + 1) + " m" + minute;
      } else {
        line.classList.add("tg-hidden");
      }
    }
  }
  place();
  setInterval(place, 30 * 1000);
})();
