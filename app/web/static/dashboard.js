// The dashboard: fetch /v1/analytics/dashboard (then /v1/analytics/experiment) for the chosen range
// and draw them with Chart.js.
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

// The experiment section: the running experiment, or the last one started before the range ends.
const ARMS = ["control", "challenger"];
const VERDICT_CLASS = { "challenger wins": "win", "control wins": "lose", invalid: "invalid" };

function inUnit(unit, x) {
  if (x === null || x === undefined) return "–";
  if (unit === "seconds") return fmt(x / 60) + " min";
  if (unit === "share") return fmt(pct(x)) + "%";
  if (unit === "rating") return fmt(x, 2);
  return fmt(x, 3);
}

function signed(x) { return (x > 0 ? "+" : "") + fmt(pct(x)) + "%"; }

function listItems(id, lines) {
  const list = document.getElementById(id);
  list.replaceChildren(...lines.map((line) => { const li = document.createElement("li"); li.textContent = line; return li; }));
}

function drawExperimentDaily(data) {
  const days = [...new Set(data.daily.map((row) => row.day))].sort();
  const cell = Object.fromEntries(data.daily.map((row) => [`${row.day}/${row.arm}`, row]));
  const datasets = [];
  ARMS.forEach((arm, i) => {
    const rows = days.map((day) => cell[`${day}/${arm}`]);
    datasets.push({ type: "line", label: `${arm}: watch time per active user (min)`, yAxisID: "minutes",
      data: rows.map((r) => (r && r.active_users ? Math.round(r.watch_seconds / r.active_users / 6) / 10 : null)),
      borderColor: COLORS[i], backgroundColor: COLORS[i] });
    datasets.push({ type: "bar", label: `${arm}: users first exposed`, yAxisID: "users",
      data: rows.map((r) => (r ? r.exposed_users : 0)), backgroundColor: i ? "rgba(232, 89, 12, 0.3)" : "rgba(59, 91, 219, 0.3)" });
  });
  draw("chart-experiment-daily", {
    data: { labels: days, datasets },
    options: { scales: {
      minutes: { position: "left", beginAtZero: true, title: { display: true, text: "minutes" } },
      users: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "users" } },
    }, plugins: { legend: { labels: { boxWidth: 10, font: { size: 10 } } } } },
  });
}

function drawExperimentIntervals(e, diffs) {
  const guards = e.guardrails.map(([name]) => name);
  const order = [e.primary, ...guards, ...Object.keys(diffs).filter((k) => k !== e.primary && !guards.includes(k))];
  const shown = order.filter((k) => diffs[k] && diffs[k].low !== null);
  const color = (d) => (d.low > 0 ? "rgba(43, 138, 62, 0.55)" : d.high < 0 ? "rgba(201, 42, 42, 0.55)" : "rgba(102, 112, 133, 0.4)");
  const role = (k) => (k === e.primary ? " (primary)" : guards.includes(k) ? " (guardrail)" : "");
  draw("chart-experiment-intervals", {
    type: "bar",
    data: { labels: shown.map((k) => diffs[k].label + role(k)), datasets: [
      { label: "95% interval (%)", data: shown.map((k) => [pct(diffs[k].low), pct(diffs[k].high)]),
        backgroundColor: shown.map((k) => color(diffs[k])), barPercentage: 0.6 },
      { type: "line", label: "estimate (%)", data: shown.map((k) => pct(diffs[k].relative)), showLine: false,
        pointRadius: 5, borderColor: "#1d2430", backgroundColor: "#1d2430" },
    ] },
    options: { indexAxis: "y", interaction: { mode: "nearest", intersect: true },
      scales: { x: { title: { display: true, text: "challenger vs control (%)" },
        grid: { color: (ctx) => (ctx.tick && ctx.tick.value === 0 ? "#1d2430" : "#e4e7ec") } },
        y: { ticks: { font: { size: 11 } } } },
      plugins: { legend: { display: false } } },
  });
}

function experimentTable(e, r) {
  const arms = r.arms;
  const rows = [["users", fmt(arms.control.users, 0), fmt(arms.challenger.users, 0), ""]];
  for (const total of ["impressions", "impressions_own_version", "clicks", "plays"]) {
    rows.push([total.replace(/_/g, " "), fmt(arms.control.totals[total], 0), fmt(arms.challenger.totals[total], 0), ""]);
  }
  const cells = [];
  for (const [name, d] of Object.entries(r.differences)) {
    const interval = d.low === null ? "" : ` [${signed(d.low)}, ${signed(d.high)}] (${d.method})`;
    rows.push([d.label + (name === e.primary ? " *" : ""), inUnit(d.unit, arms.control.metrics[name]),
      inUnit(d.unit, arms.challenger.metrics[name]), d.relative === null ? "–" : signed(d.relative) + interval]);
    cells.push(d.low !== null && d.low > 0 ? "better" : d.high !== null && d.high < 0 ? "worse" : "");
  }
  fillTable("table-experiment", ["metric", `control (${e.control})`, `challenger (${e.challenger})`,
    "challenger vs control [95%]"], rows);
  const table = document.getElementById("table-experiment");
  cells.forEach((cls, i) => { if (cls) table.rows[6 + i].cells[3].className = cls; });
}

function drawExperiment(data) {
  const e = data.experiment;
  const verdict = document.getElementById("experiment-verdict");
  document.getElementById("experiment-charts").hidden = !e;
  if (!e) {
    document.getElementById("experiment-title").textContent =
      "No experiment has started yet (cinerec experiment start, POST /v1/admin/experiments, or ROLLOUT=experiment).";
    verdict.textContent = "";
    listItems("experiment-reasons", []);
    fillTable("table-experiment", [], []);
    document.getElementById("experiment-note").textContent = "";
    return;
  }
  const r = data.report, srm = r.sample_ratio;
  document.getElementById("experiment-title").textContent =
    `${e.id} (${e.state}): ${e.control} (control) vs ${e.challenger} (challenger, ${pct(e.share)}% of users); ` +
    `${r.window.start.slice(0, 16).replace("T", " ")} … ${r.window.stop.slice(0, 16).replace("T", " ")} UTC`;
  verdict.textContent = r.verdict.text;
  verdict.className = "verdict " + (VERDICT_CLASS[r.verdict.kind] || "");
  listItems("experiment-reasons", [
    ...r.verdict.reasons,
    `sample ratio: chi-square ${fmt(srm.chi2, 2)}, p = ${fmt(srm.p_value, 3)} ` + (srm.mismatch ? "MISMATCH" : "(ok)"),
    ...(e.decision ? [`decision: ${e.decision}`] : []),
  ]);
  drawExperimentDaily(data);
  drawExperimentIntervals(e, r.differences);
  experimentTable(e, r);
  document.getElementById("experiment-note").textContent = "Decisions: " +
    data.decisions.map((d) => `${d.at.slice(0, 16).replace("T", " ")} ${d.action}`).join(" · ") + ".";
}

async function getJson(path, signal) {
  const response = await fetch(path, { signal, headers: authHeaders() });
  const data = await response.json();
  return { response, data };
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
  let experiment;
  try {
    const main = await getJson(`/v1/analytics/dashboard?${query}`, controller.signal);
    data = main.data;
    if (data.auth === "missing" || data.auth === "rejected") {
      askToken(data.auth === "missing" ? "enter the analytics token" : "that token was refused; enter the analytics token");
      return;
    }
    if (!main.response.ok) throw new Error(data.error || `HTTP ${main.response.status}`);
    // once the token is known good: the experiment section (its own report, so its own request)
    experiment = await getJson(`/v1/analytics/experiment?${query}`, controller.signal);
    if (!experiment.response.ok) throw new Error(`experiment: ${experiment.data.error || `HTTP ${experiment.response.status}`}`);
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
  drawExperiment(experiment.data);
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
