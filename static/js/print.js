// "Print" buttons: <button data-print>. Without JavaScript the browser's own Print works the same.
document.addEventListener("click", function (event) {
  if (event.target.closest("button[data-print]")) window.print();
});
