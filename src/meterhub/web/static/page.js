// What every page of the dashboard does in the browser, without inline code (the pages'
// Content-Security-Policy refuses inline scripts, event handler attributes and javascript:
// links):
// - <form data-confirm="Delete meter 12?"> is sent only once the question is answered OK;
// - <a data-back href="/"> goes back in the browser's history (to its href when there is none).
"use strict";

document.addEventListener("submit", (event) => {
  const question = event.target instanceof HTMLFormElement ? event.target.dataset.confirm : undefined;
  if (question && !window.confirm(question)) event.preventDefault();
});

document.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest("a[data-back]") : null;
  if (link && window.history.length > 1) {
    event.preventDefault();
    window.history.back();
  }
});
