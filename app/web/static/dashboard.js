// The dashboard: fetch /v1/analytics/dashboard for the chosen range and draw it with Chart.js.
// No build step: plain ES2017 served as is. <body data-state> is "ready" once every chart is drawn,
// "token" while it asks for the analytics token, or "error" with the reason in #status: what the
// browser test waits for. The page itself holds no figures; the data needs the token (README
// "Security"), asked once and kept for this browser tab's session (sessionStorage), sent as a bearer header.
"use strict";

const COLORS = ["#3b5bdb", "#e8590c", "#2b8a3e", "#c2255c", "#6741d9", "#0b7285", "#e67700", "#5c940d", "#862e9c", "#364fc7"];
const charts = {};
const FETCH_TIMEOUT_MS = 60000; // the server gives up on ClickHouse after 30 s; this is a backstop
const TOKEN_KEY = "cinerec.analyticsToken";

function isoDay(date) { return date.toISOString().slice(0, 10); }

function defaultRange() {
  const params = new URLSearchParams(window.location.search);
  const today = new Date();
  const monthAgo = new Date(today.getTime() - 29 * 86400 * 1000);
  return { from: params.get("from") || isoDay(monthAgo), to: params.get("to") || isoDay(today) };
}

function pct(x) { return x === null || x === undefined ? null : Math.round(x * 1000) / 10; }
function fmt(x, digits) { return Number(x).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 1 : digits }); }
function label(name) { return name === "" ? "(none)" : name; }

function setStatus(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

// Draw (or redraw) one chart; the canvas records how many data points it shows.
function draw(id, config) {
  if (charts[id]) charts[id].destroy();
  config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false,
    interaction: { mode: "index", intersect: false } }, config.options || {});
  charts[id] = new Chart(document.getElementById(id), config);
  const points = config.data.datasets.reduce((n, d) => n + d.data.filter((v) => v !== null).length, 0);
  document.getElementById(id).dataset.points = String(points);
}

function kpis(data) {
  const t = data.time_on_site, r = data.retention, e = data.engagement, f = data.funnel;
  const dlq = data.ingestion.since_process_start;
  const tiles = [
    ["Active users", fmt(t.active_users, 0)],
    ["Avg time on site / user-day", fmt(t.avg_time_on_site_s / 60) + " min"],
    ["Retention D1 / D7 / D30", [r.d1, r.d7, r.d30].map((d) => d.eligible ? pct(d.rate) + "%" : "–").join(" / ")],
    ["Average rating (1–10)", e.ratings ? fmt(e.avg_rating, 2) : "–"],
    ["Completion (complete / play)", fmt(pct(e.completion_rate)) + "%"],
    ["Avg watched share", fmt(pct(e.avg_watch_ratio)) + "%"],
    ["Recommendation CTR", fmt(pct(f.ctr), 2) + "%"],
    ["Watch time from clicks", fmt(f.watch_seconds / 3600) + " h"],
    ["DLQ rate (this worker)", fmt(pct(dlq.dlq_rate), 2) + "%"],
  ];
  const box = document.getElementById("kpis");
  box.replaceChildren(...tiles.map(([name, value]) => {
    const div = document.createElement("div");
    div.className = "kpi";
    div.innerHTML = '<div class="label"></div><div class="value"></div>';
    div.children[0].textContent = name;
    div.children[1].textContent = value;
    return div;
  }));
}

function drawTime(data) {
  const days = data.time_on_site.days;
  draw("chart-time", {
    data: { labels: days.map((d) => d.day), datasets: [
      { type: "line", label: "avg time on site (min)", data: days.map((d) => Math.round(d.avg_time_on_site_s / 6) / 10),
        borderColor: COLORS[0], backgroundColor: COLORS[0], yAxisID: "minutes" },
      { type: "bar", label: "active users", data: days.map((d) => d.active_users),
        backgroundColor: "rgba(232, 89, 12, 0.35)", yAxisID: "users" },
    ] },
    options: { scales: {
      minutes: { position: "left", beginAtZero: true, title: { display: true, text: "minutes" } },
      users: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "users" } },
    } },
  });
}

function drawRetention(data) {
  // The 8 largest cohorts (tiny ones are noise), in date order, and all cohorts of the range together.
  const r = data.retention;
  const cohorts = [...r.cohorts].sort((a, b) => b.size - a.size).slice(0, 8).sort((a, b) => a.cohort.localeCompare(b.cohort));
  const datasets = cohorts.map((c, i) => ({
    label: `${c.cohort} (${c.size})`, data: [100, pct(c.d1), pct(c.d7), pct(c.d30)],
    borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length], borderWidth: 1.5,
  }));
  const all = (d) => (d.eligible ? pct(d.rate) : null);
  datasets.push({ label: "all cohorts", data: [100, all(r.d1), all(r.d7), all(r.d30)],
    borderColor: "#1d2430", backgroundColor: "#1d2430", borderWidth: 4 });
  draw("chart-retention", {
    type: "line",
    data: { labels: ["D0", "D1", "D7", "D30"], datasets },
    options: { scales: { y: { min: 0, max: 100, title: { display: true, text: "% of cohort" } } },
      plugins: { legend: { labels: { boxWidth: 10, font: { size: 10 } } } } },
  });
}

function drawEngagement(data) {
  const days = data.engagement.days;
  draw("chart-engagement", {
    type: "line",
    data: { labels: days.map((d) => d.day), datasets: [
      { label: "avg rating", data: days.map((d) => (d.ratings ? Math.round(d.avg_rating * 100) / 100 : null)),
        borderColor: COLORS[3], backgroundColor: COLORS[3], yAxisID: "rating" },
      { label: "completion %", data: days.map((d) => (d.plays ? pct(d.completion_rate) : null)),
        borderColor: COLORS[2], backgroundColor: COLORS[2], yAxisID: "percent" },
      { label: "watched share %", data: days.map((d) => (d.viewings ? pct(d.avg_watch_ratio) : null)),
        borderColor: COLORS[5], backgroundColor: COLORS[5], borderDash: [4, 3], yAxisID: "percent" },
    ] },
    options: { scales: {
      rating: { position: "left", min: 1, max: 10, title: { display: true, text: "rating" } },
      percent: { position: "right", min: 0, max: 100, grid: { drawOnChartArea: false }, title: { display: true, text: "%" } },
    } },
  });
}

function drawCtr(data) {
  const rows = data.funnel.by_model_version;
  draw("chart-ctr", {
    type: "bar",
    data: { labels: rows.map((r) => label(r.model_version)), datasets: [
      { label: "CTR %", data: rows.map((r) => pct(r.ctr)), backgroundColor: COLORS[0], yAxisID: "ctr" },
      { label: "watch time from clicks (h)", data: rows.map((r) => Math.round(r.watch_seconds / 360) / 10),
        backgroundColor: "rgba(43, 138, 62, 0.5)", yAxisID: "hours" },
    ] },
    options: { scales: {
      ctr: { position: "left", beginAtZero: true, title: { display: true, text: "CTR %" } },
      hours: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "hours" } },
    } },
  });
}

function drawIngestion(data) {
  const days = data.ingestion.days;
  // Seconds for a live stream, days for a backfill: pick the unit from the largest p95.
  const worst = Math.max(0, ...days.map((d) => d.lag_p95_s));
  const [unit, size] = [["days", 86400], ["hours", 3600], ["minutes", 60], ["seconds", 1]].find(([, s]) => worst >= 2 * s) || ["seconds", 1];
  const scaled = (s) => Math.round((s / size) * 10) / 10;
  draw("chart-ingest", {
    type: "line",
    data: { labels: days.map((d) => d.day), datasets: [
      { label: `lag p50 (${unit})`, data: days.map((d) => (d.events ? scaled(d.lag_p50_s) : null)), borderColor: COLORS[0], backgroundColor: COLORS[0] },
      { label: `lag p95 (${unit})`, data: days.map((d) => (d.events ? scaled(d.lag_p95_s) : null)), borderColor: COLORS[1], backgroundColor: COLORS[1] },
    ] },
    options: { scales: { y: { beginAtZero: true, title: { display: true, text: `${unit} from event time to ClickHouse` } } } },
  });
  const dlq = data.ingestion.since_process_start;
  const reasons = Object.entries(dlq.dead_letters_by_reason).map(([k, v]) => `${k}: ${fmt(v, 0)}`).join(", ");
  document.getElementById("dlq-note").textContent =
    `This worker since start: ${fmt(dlq.loaded, 0)} loaded, ${fmt(dlq.dead_lettered, 0)} dead-lettered ` +
    `(${fmt(pct(dlq.dlq_rate), 2)}%)` + (reasons ? ` — ${reasons}` : "") + ".";
}

function drawRuns(data) {
  const runs = data.model_runs;
  // Share-like metrics only (0..1): counts ("users") and novelty (bits) would flatten the scale.
  const keys = [...new Set(runs.flatMap((r) => Object.keys(typeof r.metrics === "object" ? r.metrics : {})))]
    .filter((k) => k.includes("@") && !k.startsWith("novelty")).sort();
  const datasets = [];
  keys.forEach((key, i) => {
    const color = COLORS[i % COLORS.length];
    datasets.push({ label: key, data: runs.map((r) => (key in (r.metrics || {}) ? r.metrics[key] : null)), borderColor: color, backgroundColor: color });
    datasets.push({ label: `${key} (baseline)`, data: runs.map((r) => (key in (r.baseline_metrics || {}) ? r.baseline_metrics[key] : null)),
      borderColor: color, backgroundColor: color, borderDash: [5, 4], pointStyle: "rectRot" });
  });
  draw("chart-runs", {
    type: "line",
    data: { labels: runs.map((r) => r.version), datasets },
    options: { plugins: { legend: { labels: { boxWidth: 10, font: { size: 10 } } } } },
  });
}

function fillTable(id, header, rows) {
  const table = document.getElementById(id);
  const tr = (cells, tag) => "<tr>" + cells.map(() => `<${tag}></${tag}>`).join("") + "</tr>";
  table.innerHTML = tr(header, "th") + rows.map((r) => tr(r, "td")).join("");
  [header, ...rows].forEach((cells, i) => cells.forEach((text, j) => { table.rows[i].cells[j].textContent = text; }));
}

function tables(data) {
  fillTable("table-sources", ["source", "impressions", "clicks", "CTR %", "clicked films", "watched", "watch time (h)"],
    data.funnel.by_source.map((r) => [label(r.source), fmt(r.impressions, 0), fmt(r.clicks, 0), fmt(pct(r.ctr), 2),
      fmt(r.clicked, 0), fmt(r.watched, 0), fmt(r.watch_seconds / 3600)]));
  fillTable("table-runs", ["version", "started (UTC)", "backend", "status", "published", "users", "films", "interactions", "reason"],
    data.model_runs.map((r) => [r.version, r.started_at.replace("T", " "), r.backend, r.status, r.published ? "yes" : "no",
      fmt(r.n_users, 0), fmt(r.n_items, 0), fmt(r.n_interactions, 0), r.reason]));
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// Show the token form; the server said a token is missing or wrong (not: none is configured).
function askToken(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  const form = document.getElementById("token");
  form.hidden = false;
  form.elements.token.value = "";
  form.elements.token.focus();
  setStatus(message, true);
  document.body.dataset.state = "token";
}

async function load(range) {
  document.body.dataset.state = "loading";
  setStatus(`loading ${range.from} … ${range.to}`);
  const query = new URLSearchParams(range).toString();
  let data;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
  try {
    const response = await fetch(`/v1/analytics/dashboard?${query}`, { signal: controller.signal, headers: authHeaders() });
    data = await response.json();
    if (data.auth === "missing" || data.auth === "rejected") {
      askToken(data.auth === "missing" ? "enter the analytics token" : "that token was refused; enter the analytics token");
      return;
    }
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  } catch (exc) {
    const reason = exc.name === "AbortError" ? `no answer within ${FETCH_TIMEOUT_MS / 1000} s` : exc.message;
    setStatus(`could not load: ${reason}`, true);
    document.body.dataset.state = "error";
    return;
  } finally {
    clearTimeout(timer);
  }
  kpis(data);
  drawTime(data);
  drawRetention(data);
  drawEngagement(data);
  drawCtr(data);
  drawIngestion(data);
  drawRuns(data);
  tables(data);
  setStatus(`${data.from} … ${data.to}, updated ${new Date().toLocaleTimeString()}`);
  document.body.dataset.state = "ready";
}

function main() {
  const range = defaultRange();
  const form = document.getElementById("range");
  const chosen = () => ({ from: form.elements.from.value, to: form.elements.to.value });
  form.elements.from.value = range.from;
  form.elements.to.value = range.to;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    history.replaceState(null, "", `?${new URLSearchParams(chosen())}`);
    load(chosen());
  });
  const tokenForm = document.getElementById("token");
  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, tokenForm.elements.token.value.trim());
    tokenForm.hidden = true;
    load(chosen());
  });
  load(range);
}

main();
