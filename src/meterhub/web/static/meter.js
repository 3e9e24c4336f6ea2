// A meter's page: charts of each channel's history, of consumption per day and of poll
// health, drawn with uPlot in the meter's time zone. Every poll interval the charts and the
// live parts of the page (current values, facts, failed polls) are fetched again; a
// "last ..." range slides with the clock, a custom range stays put.
//
// For tests and debugging, each chart container gets data-points="<n>" once drawn, and
// window.meterCharts holds the drawn data: {<channel>: {t, v}, daily: {t, v, day},
// health: {t, mean_ms, max_ms, failures, polls}}, times in seconds since the epoch.
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("meter-config").dataset.config);
  const status = document.getElementById("chart-status");
  const HEIGHT = 260;
  const MIN_WIDTH = 280;
  const DAY = 86400;
  const HALF_DAY = DAY / 2;
  const charts = {};
  let shown = period();
  let firstRound = true;
  window.meterCharts = {};

  const inZone = (seconds) => uPlot.tzDate(new Date(seconds * 1e3), config.zone);
  const formatTime = uPlot.fmtDate("{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}");
  const formatDay = uPlot.fmtDate("{YYYY}-{MM}-{DD}");
  const formatClock = uPlot.fmtDate("{HH}:{mm}");
  const formatDayClock = uPlot.fmtDate("{MMM} {D}\n{HH}:{mm}");
  const formatDate = uPlot.fmtDate("{MMM} {D}");
  const fixed = (decimals, unit) => (u, v) => (v == null ? "—" : `${v.toFixed(decimals)} ${unit}`);

  /** The period to show, in µs: a preset slides up to now; a custom range is fixed. */
  function period() {
    if (config.seconds === null) return { from: config.from, to: config.to };
    const to = Date.now() * 1000;
    return { from: to - config.seconds * 1e6, to };
  }

  /** GET one of the meter's endpoints; an error names the endpoint and the reason. */
  async function fetchFrom(path, params = {}) {
    const url = new URL(config.base + path, window.location.href);
    for (const [name, value] of Object.entries(params)) url.searchParams.set(name, String(value));
    const answer = await fetch(url, { credentials: "same-origin" });
    if (answer.status === 401) throw new Error("the session has ended: reload the page to log in again");
    if (!answer.ok) throw new Error(`${path || "page"}: ${await reason(answer)}`);
    return answer;
  }

  const fetchJSON = async (path, params) => (await fetchFrom(path, params)).json();

  /** Why a feed refused: its JSON error's fields and messages, else the HTTP status. */
  async function reason(answer) {
    const json = (answer.headers.get("content-type") || "").startsWith("application/json");
    const body = json ? await answer.json() : {};
    const fields = Object.entries(body.errors || {}).map(([name, messages]) => `${name}: ${messages.join(", ")}`);
    return fields.length ? fields.join("; ") : body.detail || `HTTP ${answer.status}`;
  }

  // --- axes and options -------------------------------------------------------------------

  /** Tick labels in 24-hour time, coarser as the span shown grows. */
  function timeTicks(u, splits) {
    const span = u.scales.x.max - u.scales.x.min;
    const format = span <= 1.5 * DAY ? formatClock : span <= 10 * DAY ? formatDayClock : formatDate;
    return splits.map((split) => format(inZone(split)));
  }

  function timeAxis() {
    return { label: `Time (${config.zone})`, labelSize: 20, space: 60, values: timeTicks };
  }

  /** Days under their bars, every so many bars so that labels keep about 70 px apart. */
  function dayAxis(zone) {
    const splits = (u) => {
      const step = Math.max(1, Math.ceil((u.data[0].length * 70) / u.width));
      return u.data[0].filter((_, i) => i % step === 0);
    };
    const values = (u, ticks) => ticks.map((tick) => formatDate(inZone(tick)));
    return { label: `Day (${zone})`, labelSize: 20, splits, values };
  }

  /** Room for the longest tick label of a value axis (uPlot's own recipe). */
  function fitLabels(u, values, axisIndex, cycle) {
    const axis = u.axes[axisIndex];
    if (cycle > 1) return axis._size;
    const longest = (values ?? []).reduce((a, b) => (b.length > a.length ? b : a), "");
    u.ctx.font = axis.font[0];
    const text = longest ? u.ctx.measureText(longest).width / window.devicePixelRatio : 0;
    return Math.ceil(axis.ticks.size + axis.gap + text);
  }

  function valueAxis(label, extra = {}) {
    return { label, labelSize: 20, size: fitLabels, ...extra };
  }

  /** uPlot options: the x axis and legend in the meter's zone, x spanning the period shown. */
  function options(element, { axes, series, scales = {}, format = formatTime }) {
    const x = { time: true, range: () => [shown.from / 1e6, shown.to / 1e6] };
    return {
      width: Math.max(MIN_WIDTH, element.clientWidth),
      height: HEIGHT,
      tzDate: inZone,
      axes,
      scales: { x, ...scales },
      series: [{ label: "Time", value: (u, v) => (v == null ? "—" : format(inZone(v))) }, ...series],
    };
  }

  const bars = (size, align = 0) => uPlot.paths.bars({ size, align });

  // --- charts -----------------------------------------------------------------------------

  /** Draw ``data`` in the chart ``name`` (created on first use, then kept as wide as its
   * container), and record what was drawn. */
  function draw(name, element, makeOptions, data, exposed) {
    if (charts[name]) charts[name].setData(data);
    else {
      const chart = new uPlot(makeOptions(), data, element);
      const width = () => Math.max(MIN_WIDTH, element.clientWidth);
      new ResizeObserver(() => chart.setSize({ width: width(), height: HEIGHT })).observe(element);
      charts[name] = chart;
    }
    element.dataset.points = String(data[0].length);
    window.meterCharts[name] = exposed;
    note(element, data[0].length === 0 ? "Nothing recorded in this range." : "");
  }

  function note(element, text) {
    let line = element.nextElementSibling;
    if (!line || !line.classList.contains("chart-note")) {
      line = document.createElement("p");
      line.className = "muted chart-note";
      element.after(line);
    }
    line.textContent = text;
    line.hidden = !text;
  }

  async function drawChannel(channel) {
    const element = document.getElementById(`chart-${channel.name}`);
    const series = await fetchJSON("/series", { channel: channel.name, ...shown });
    const label = `${channel.name} (${series.unit})`;
    draw(
      channel.name,
      element,
      () =>
        options(element, {
          axes: [timeAxis(), valueAxis(label)],
          series: [{ label, stroke: "#1f6feb", width: 1.5, value: fixed(3, series.unit) }],
        }),
      [series.t, series.v],
      { t: series.t, v: series.v },
    );
  }

  /** The daily chart's x range: half a day beyond the first and last bar, even for one. */
  function dayRange(u) {
    const middays = u.data[0];
    if (!middays.length) return [shown.from / 1e6, shown.to / 1e6];
    return [middays[0] - HALF_DAY, middays[middays.length - 1] + HALF_DAY];
  }

  async function drawDaily() {
    const element = document.getElementById("chart-daily");
    const daily = await fetchJSON("/daily", shown);
    const middays = daily.t.map((t) => t + HALF_DAY);
    const label = `Per day (${daily.unit})`;
    draw(
      "daily",
      element,
      () =>
        options(element, {
          axes: [dayAxis(daily.zone), valueAxis(label)],
          series: [
            {
              label,
              fill: "#1f6feb99",
              stroke: "#1f6feb",
              paths: bars([0.7, 60]),
              points: { show: false },
              value: fixed(3, daily.unit),
            },
          ],
          scales: {
            x: { time: true, range: dayRange },
            // bars grow from zero
            y: { range: (u, min, max) => [Math.min(0, min), Math.max(1, max * 1.1)] },
          },
          format: formatDay,
        }),
      [middays, daily.consumption],
      { t: daily.t, v: daily.consumption, day: daily.day },
    );
  }

  async function drawHealth() {
    const element = document.getElementById("chart-health");
    const health = await fetchJSON("/health", shown);
    const countAxis = {
      scale: "count",
      side: 1,
      grid: { show: false },
      incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    };
    draw(
      "health",
      element,
      () =>
        options(element, {
          axes: [
            timeAxis(),
            valueAxis("Latency (ms)", { scale: "ms" }),
            valueAxis("Failed polls", countAxis),
          ],
          series: [
            {
              label: "Failed",
              scale: "count",
              fill: "#c6282833",
              stroke: "#c62828",
              paths: bars([0.8, 40], 1),
              points: { show: false },
              value: fixed(0, "polls"),
            },
            { label: "Mean", scale: "ms", stroke: "#1f6feb", width: 1.5, value: fixed(1, "ms") },
            { label: "Max", scale: "ms", stroke: "#9a6700", dash: [4, 4], value: fixed(1, "ms") },
          ],
          scales: {
            ms: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
            count: { range: (u, min, max) => [0, Math.max(1, max)] },
          },
        }),
      [health.t, health.failures, health.mean_ms, health.max_ms],
      {
        t: health.t,
        mean_ms: health.mean_ms,
        max_ms: health.max_ms,
        failures: health.failures,
        polls: health.polls,
      },
    );
  }

  /** Swap in the fresh live parts: each top element of /live replaces the one of its id. */
  async function refreshLive() {
    const fresh = document.createElement("template");
    fresh.innerHTML = await (await fetchFrom("/live")).text();
    for (const part of [...fresh.content.children]) {
      document.getElementById(part.id)?.replaceWith(part);
    }
  }

  /** Everything again; the next round is planned once this one is done. */
  async function refresh() {
    shown = period();
    const jobs = [...config.channels.map(drawChannel), drawDaily(), drawHealth()];
    if (!firstRound) jobs.push(refreshLive()); // in the first round the page is fresh
    firstRound = false;
    const failed = (await Promise.allSettled(jobs)).filter((job) => job.status === "rejected");
    const when = formatTime(inZone(Date.now() / 1000));
    status.textContent = failed.length
      ? `Could not update: ${failed.map((job) => job.reason.message).join("; ")} (${when})`
      : `Updated ${when} (${config.zone}).`;
    window.setTimeout(refresh, config.poll_seconds * 1000);
  }

  refresh();
})();
