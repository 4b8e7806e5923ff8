// The operations dashboard: /dashboard?token=<operator token>.
// Live from WS /v1/ws/ops (technicians online / en route / on site from the fleet's
// statuses, open incidents and alerts), and every 30 s the figures of the last 24 hours
// from GET /v1/stats (SOS time to acknowledge against the 15 s / 20 s targets, escalations,
// on-time rate over the last 200 visits of the last 30 days, the shown ETAs' error and range held, the share of
// check-ins decided automatically, bookings by status, by city and by zone). Two small
// charts (uPlot, vendored) follow the live figures since the page opened.
import uPlot from "/static/vendor/uplot/uPlot.esm.js";
import {
  PageToken,
  ReconnectingSocket,
  connectionLabel,
  getJson,
  h,
  nowS,
  socketUrl,
} from "./common.js";

const STATS_EVERY_MS = 30000;
// The on-time rate is over the last 200 visits with a window: a quiet day has fewer, so it
// is read over a month (GET /v1/stats keeps the most recent 200 of the period).
const ON_TIME_PERIOD_S = 30 * 86400;
const SAMPLE_EVERY_MS = 10000;
const MAX_SAMPLES = 8640; // a day of 10 s samples
const EN_ROUTE = new Set(["en_route", "arriving"]);
const ON_SITE = new Set(["arrived", "in_service"]);
const OPEN_INCIDENT = new Set(["open", "acknowledged"]);

const pageToken = new PageToken("doorstep.dashboard.token");
const $ = (id) => document.getElementById(id);

const fleet = new Map(); // technician id -> latest fleet entry
const incidents = new Map(); // incident id -> incident
const alerts = new Map(); // alert id -> alert
const samples = [[], [], [], [], [], []]; // t, online, en route, on site, incidents, alerts
let latestStats = null;

function now() {
  let online = 0;
  let enRoute = 0;
  let onSite = 0;
  for (const entry of fleet.values()) {
    const status = entry.status || (entry.online ? "idle" : "offline");
    if (status === "offline" || entry.online === false) continue;
    online += 1;
    if (EN_ROUTE.has(status)) enRoute += 1;
    if (ON_SITE.has(status)) onSite += 1;
  }
  const openIncidents = [...incidents.values()].filter((i) => OPEN_INCIDENT.has(i.status)).length;
  const openAlerts = [...alerts.values()].filter((a) => a.status === "open").length;
  return { online, enRoute, onSite, openIncidents, openAlerts };
}

function renderNow() {
  const figures = now();
  $("t-online").textContent = String(figures.online);
  $("t-en-route").textContent = String(figures.enRoute);
  $("t-on-site").textContent = String(figures.onSite);
  $("t-incidents").textContent = String(figures.openIncidents);
  $("t-alerts").textContent = String(figures.openAlerts);
}

function onMessage(message) {
  switch (message.type) {
    case "snapshot":
      fleet.clear();
      incidents.clear();
      alerts.clear();
      for (const entry of message.fleet || []) fleet.set(entry.technician_id, entry);
      for (const incident of message.incidents || []) incidents.set(incident.id, incident);
      for (const alert of message.alerts || []) alerts.set(alert.id, alert);
      break;
    case "fleet":
      for (const entry of message.positions || []) {
        fleet.set(entry.technician_id, { ...fleet.get(entry.technician_id), ...entry });
      }
      break;
    case "incident":
      incidents.set(message.incident.id, message.incident);
      break;
    case "alert":
      if (message.alert && message.alert.id) alerts.set(message.alert.id, message.alert);
      break;
    default:
      return;
  }
  renderNow();
}

// ---------------------------------------------------------------------------- figures

const percent = (share) => (share === null || share === undefined ? "–" : `${Math.round(share * 100)} %`);
const seconds = (value) => (value === null || value === undefined ? "–" : `${value} s`);

function renderStats(stats) {
  latestStats = stats;
  const sos = stats.incidents;
  $("s-ack").textContent = `${seconds(sos.ack_p50_s)} / ${seconds(sos.ack_p90_s)}`;
  const note = $("s-ack-target");
  const targets = sos.targets || [];
  note.textContent = targets
    .map((t) => `${percent(t.share)} within ${t.within_s} s (target ${percent(t.target_share)})`)
    .join(" · ");
  const met = targets.every((t) => t.met !== false);
  note.dataset.met = targets.some((t) => t.met === null) ? "" : String(met);
  const fired = Object.values(sos.escalations || {}).reduce((a, b) => a + b, 0);
  $("s-escalations").textContent = String(fired);
  $("s-eta").textContent = `${seconds(stats.eta.mae_s)}, ${percent(stats.eta.range_held)}`;
  $("s-auto").textContent = `${percent(stats.visits.automatic_share)} of ${stats.visits.checked_in}`;
  $("s-bookings").textContent = String(stats.bookings);
  $("by-status").replaceChildren(
    ...Object.entries(stats.bookings_by_status).map(([status, n]) =>
      h("li", { "data-status": status }, `${status.replace("_", " ")} ${n}`),
    ),
  );
  const rows = [];
  for (const [kind, group] of [["city", stats.by_city || {}], ["zone", stats.by_zone || {}]]) {
    for (const [id, figures] of Object.entries(group)) {
      rows.push(
        h(
          "tr",
          { "data-where": `${kind}:${id}` },
          h("td", {}, `${kind} ${id}`),
          h("td", {}, String(figures.bookings)),
          h("td", {}, String(figures.visits.checked_in)),
          h("td", {}, percent(figures.visits.on_time_rate)),
          h("td", {}, String(figures.incidents.raised)),
          h("td", {}, seconds(figures.incidents.ack_p90_s)),
        ),
      );
    }
  }
  $("breakdown").replaceChildren(...rows);
  $("updated").textContent = `figures at ${new Date().toLocaleTimeString()}`;
}

function renderOnTime(stats) {
  $("s-on-time").textContent = `${percent(stats.visits.on_time_rate)} of ${stats.visits.on_time_counted}`;
}

async function fetchStats(periodS) {
  const to = nowS();
  const city = $("city").value;
  const query = new URLSearchParams({ from: String(to - periodS), to: String(to) });
  if (city) query.set("city", city);
  const answer = await getJson(`/v1/stats?${query}`, pageToken.value);
  return answer.ok ? answer.body : null;
}

async function refreshStats() {
  if (!pageToken.value) return;
  const [day, month] = await Promise.all([fetchStats(86400), fetchStats(ON_TIME_PERIOD_S)]);
  if (month) renderOnTime(month);
  if (day) renderStats(day);
}

async function loadCities() {
  const answer = await getJson("/v1/cities", pageToken.value);
  if (!answer.ok) return;
  const select = $("city");
  for (const city of answer.body.cities) {
    select.append(h("option", { value: city.id }, city.name || city.id));
  }
}

// ---------------------------------------------------------------------------- charts

function chart(elementId, labels, colours) {
  const element = $(elementId);
  return new uPlot(
    {
      width: Math.max(300, element.clientWidth || 600),
      height: 160,
      series: [{}, ...labels.map((label, i) => ({ label, stroke: colours[i], width: 2 }))],
      axes: [{}, { size: 40 }],
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    },
    [[], ...labels.map(() => [])],
    element,
  );
}

const fleetChart = chart("chart-fleet", ["online", "en route", "on site"], ["#12355b", "#d97706", "#1b7f3b"]);
const incidentChart = chart("chart-incidents", ["open incidents", "open alerts"], ["#b3261e", "#7c3aed"]);

function sample() {
  const figures = now();
  const values = [nowS(), figures.online, figures.enRoute, figures.onSite, figures.openIncidents, figures.openAlerts];
  values.forEach((value, i) => {
    samples[i].push(value);
    if (samples[i].length > MAX_SAMPLES) samples[i].shift();
  });
  fleetChart.setData([samples[0], samples[1], samples[2], samples[3]]);
  incidentChart.setData([samples[0], samples[4], samples[5]]);
}

// ---------------------------------------------------------------------------- start

const socket = new ReconnectingSocket(() => socketUrl("/v1/ws/ops", pageToken.value), {
  onMessage,
  onTokenExpired: () => pageToken.renew(),
  onState: (state) => {
    $("conn").dataset.state = state;
    $("conn").textContent = connectionLabel(state);
  },
});

window.doorstep = { fleet, incidents, alerts, socket, pageToken, refreshStats, sample, latest: () => latestStats };

if (!pageToken.value) {
  $("conn").dataset.state = "closed";
  $("conn").textContent = "no token";
} else {
  pageToken.start();
  socket.start();
  $("city").addEventListener("change", () => refreshStats());
  loadCities().then(refreshStats);
  setInterval(refreshStats, STATS_EVERY_MS);
  sample();
  setInterval(sample, SAMPLE_EVERY_MS);
}
