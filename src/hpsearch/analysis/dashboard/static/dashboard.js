// hpsearch dashboard: draws the page's figures, refreshes its sections by polling its live JSON with
// If-None-Match (304 = nothing changed), sorts tables and drives the study page's trials table.
// Section HTML comes escaped from the server; values from the JSON API are set with textContent only.
(function () {
  "use strict";
  const body = document.body;
  const live = body.dataset.live;
  let etag = body.dataset.etag;
  const status = document.getElementById("live-status");
  const config = { displaylogo: false, responsive: true };
  const shown = {};
  const sorted = {};
  const POLL_MS = 2000;

  function draw(sections) {
    for (const section of sections) {
      const html = document.getElementById("h-" + section.key);
      if (html && shown[section.key] !== section.html) {
        html.innerHTML = section.html;
        shown[section.key] = section.html;
        sortable(html, section.key);
      }
      const plot = document.getElementById("f-" + section.key);
      if (!plot || typeof Plotly === "undefined") continue;
      if (section.figure) {
        Plotly.react(plot, section.figure.data, section.figure.layout, config);
      } else if (plot.dataset.drawn) {
        Plotly.purge(plot);
      }
      plot.dataset.drawn = section.figure ? "1" : "";
    }
  }

  function cellValue(row, column) {
    const text = row.cells[column] ? row.cells[column].textContent.trim() : "";
    const number = parseFloat(text);
    return isNaN(number) ? text.toLowerCase() : number;
  }

  function sortRows(table, column, descending) {
    const tbody = table.tBodies[0];
    const rows = Array.from(tbody.rows);
    rows.sort(function (a, b) {
      const x = cellValue(a, column), y = cellValue(b, column);
      const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === "number" ? -1 : 1;
      return descending ? -order : order;
    });
    rows.forEach(function (row) { tbody.appendChild(row); });
  }

  function sortable(container, key) {
    container.querySelectorAll("table.sortable").forEach(function (table) {
      Array.from(table.tHead.rows[0].cells).forEach(function (th, column) {
        th.classList.add("sort");
        th.addEventListener("click", function () {
          const last = sorted[key];
          const descending = last && last[0] === column ? !last[1] : false;
          sorted[key] = [column, descending];
          sortRows(table, column, descending);
        });
      });
      if (sorted[key]) sortRows(table, sorted[key][0], sorted[key][1]);
    });
  }

  async function poll() {
    try {
      const response = await fetch(live, { headers: { "If-None-Match": etag }, cache: "no-store" });
      if (response.status === 200) {
        etag = response.headers.get("ETag") || etag;
        draw((await response.json()).sections);
        loadTrials();
      }
      status.textContent = response.ok || response.status === 304 ? "live" : "error " + response.status;
    } catch (error) {
      status.textContent = "offline, retrying";
    }
    setTimeout(poll, POLL_MS);
  }

  // --- the study page's trials table, paged by the JSON API --------------------------------------------
  const form = document.getElementById("trial-filters");
  let offset = 0;
  let total = 0;

  // As the Python side's fmt (hpsearch/analysis/report/plotting.py): 4 significant digits, trailing zeros
  // dropped, plain notation from 1e-4 to 1e9 and Python's scientific form ("2.5e-05") outside it.
  function fmt(value) {
    if (value === null || value === undefined) return "";
    if (typeof value !== "number" || Number.isInteger(value) || !Number.isFinite(value)) return String(value);
    const rounded = Number(value.toPrecision(4));
    if (Math.abs(rounded) >= 1e-4 && Math.abs(rounded) < 1e9) return String(rounded);
    const [mantissa, exponent] = value.toExponential(3).split("e");
    const power = Number(exponent);
    return mantissa.replace(/\.?0+$/, "") + "e" + (power < 0 ? "-" : "+") + String(Math.abs(power)).padStart(2, "0");
  }

  function td(row, text, className) {
    const cell = row.insertCell();
    cell.textContent = text;
    if (className) cell.className = className;
    return cell;
  }

  async function loadTrials() {
    if (!form) return;
    const data = new FormData(form);
    const params = new URLSearchParams();
    const states = data.getAll("state");
    if (states.length) params.set("state", states.join(","));
    params.set("sort", data.get("sort"));
    params.set("order", data.get("order"));
    params.set("limit", data.get("limit"));
    params.set("offset", String(offset));
    const response = await fetch(form.dataset.api + "?" + params.toString(), { cache: "no-store" });
    if (!response.ok) return;
    const page = await response.json();
    total = page.total;
    const table = document.getElementById("trials-table");
    const head = ["#", "state", form.dataset.objective, "best epoch", "epochs", "worker", "seconds", "params", "error"];
    table.tHead.innerHTML = "";
    const headRow = table.tHead.insertRow();
    head.forEach(function (name) { const th = document.createElement("th"); th.textContent = name; headRow.appendChild(th); });
    const tbody = table.tBodies[0];
    tbody.innerHTML = "";
    for (const trial of page.trials) {
      const row = tbody.insertRow();
      row.className = "trial " + trial.state;
      const link = document.createElement("a");
      link.href = form.dataset.base + "/" + trial.number;
      link.textContent = String(trial.number);
      row.insertCell().appendChild(link);
      td(row, trial.state);
      td(row, fmt(trial.objective), "num");
      td(row, fmt(trial.best_epoch), "num");
      td(row, trial.epochs_done + "/" + trial.budget_epochs, "num");
      td(row, trial.worker || "");
      td(row, fmt(trial.duration_seconds), "num");
      td(row, Object.entries(trial.params).map(function (kv) { return kv[0] + "=" + fmt(kv[1]); }).join(", "));
      td(row, (trial.error || "").split("\n")[0]).title = trial.error || "";
    }
    const last = Math.min(total, offset + page.trials.length);
    document.getElementById("trials-range").textContent =
      total ? (offset + 1) + "-" + last + " of " + total : "no trial matches";
    document.getElementById("trials-prev").disabled = offset === 0;
    document.getElementById("trials-next").disabled = last >= total;
  }

  if (form) {
    form.addEventListener("change", function () { offset = 0; loadTrials(); });
    document.getElementById("trials-prev").addEventListener("click", function () {
      offset = Math.max(0, offset - Number(new FormData(form).get("limit"))); loadTrials();
    });
    document.getElementById("trials-next").addEventListener("click", function () {
      offset += Number(new FormData(form).get("limit")); loadTrials();
    });
  }

  const initial = document.getElementById("hp-initial");
  draw(JSON.parse(initial.textContent).sections);
  loadTrials();
  setTimeout(poll, POLL_MS);
})();
