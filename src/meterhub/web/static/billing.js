// Live preview of a billing task's next fire times while its schedule is typed.
// The form works without this script: its Preview button asks the server for the same list.
(function () {
  "use strict";
  const form = document.getElementById("task-form");
  const list = document.getElementById("fires");
  if (!form || !list) return;
  const fields = ["project_id", "month", "day", "hour", "minute"];
  let timer = null;
  let asked = 0;

  function note(text) {
    let element = document.getElementById("fires-note");
    if (!element) {
      element = document.createElement("p");
      element.id = "fires-note";
      element.className = "muted";
      list.after(element);
    }
    element.textContent = text;
  }

  function show(fires) {
    list.replaceChildren(...fires.map(function (iso) {
      const item = document.createElement("li");
      const time = document.createElement("time");
      time.dateTime = iso;
      time.textContent = iso.slice(0, 10) + " " + iso.slice(11, 16) + " (UTC" + iso.slice(19) + ")";
      item.append(time);
      return item;
    }));
  }

  async function refresh() {
    const query = new URLSearchParams();
    for (const name of fields) query.set(name, form.elements[name].value);
    const mine = ++asked;
    const answer = await fetch("/billing/cron-preview?" + query, { headers: { Accept: "application/json" } });
    if (mine !== asked) return;  // a newer request is on its way
    const json = (answer.headers.get("content-type") || "").startsWith("application/json");
    const body = json ? await answer.json() : {};
    if (answer.ok) {
      show(body.fires);
      note("In " + body.timezone + ", not saved yet.");
    } else {
      list.replaceChildren();
      const errors = Object.entries(body.errors || {}).map(([name, messages]) => name + ": " + messages.join(", "));
      note(errors.length ? errors.join("; ") : "No preview: " + (body.detail || "HTTP " + answer.status) + ".");
    }
  }

  form.addEventListener("input", function (event) {
    if (!fields.includes(event.target.name)) return;
    clearTimeout(timer);
    timer = setTimeout(function () {
      refresh().catch(function () { note("No preview: the server did not answer."); });
    }, 300);
  });
})();
