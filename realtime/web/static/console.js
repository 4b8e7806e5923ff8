// The operator's safety console: /console?token=<operator token>.
// Watches WS /v1/ws/ops: every technician on the map, labelled with name and status, and in
// a searchable list beside it (fleet.js); the incident queue (oldest unacknowledged first,
// with the time since raised), a visual and audible alarm for a new SOS, the selected
// incident's live trail, people and notification log, ack/resolve, and the safety alerts.
// Every reconnect starts from the hub's snapshot, so nothing is lost.
import {
  PageToken,
  ReconnectingSocket,
  connectionLabel,
  createMap,
  dotIcon,
  formatDuration,
  formatLatLon,
  formatTime,
  getJson,
  h,
  nowS,
  pageConfig,
  postJson,
  socketUrl,
} from "./common.js";
import { FleetView } from "./fleet.js";

const OUTCOMES = ["safe", "false_alarm", "help_dispatched", "police_called", "medical", "other"];
const OPEN = new Set(["open", "acknowledged"]);

const config = pageConfig();
const pageToken = new PageToken("doorstep.console.token");
const $ = (id) => document.getElementById(id);

const incidents = new Map(); // id -> incident, as the hub last sent it
const live = new Map(); // incident id -> {trail: [[lat, lon]], last: {t, lat, lon, acc}}
const alerts = new Map(); // alert id (or a local key) -> alert
const incidentMarkers = new Map(); // incident id -> marker
const seen = new Set(); // incident ids this console has already alarmed for
const contactsCache = new Map(); // "role/id" -> contacts or null
const pending = new Set(); // incident ids with an ack/resolve in flight
let selectedId = null;
let hubOffset = 0; // hub clock minus this browser's clock, from fresh incident events
let firstSnapshot = true;
let localAlertKey = 0;

const map = createMap("map", config);
const selectionLayer = L.layerGroup().addTo(map);
// Every technician: a labelled dot on the map and a row in the searchable list (fleet.js).
const fleetView = new FleetView(
  map,
  { list: $("fleet-list"), search: $("fleet-search"), count: $("fleet-count"), empty: $("fleet-empty") },
  (t) => ageText(t),
);
const fleet = fleetView.items; // technician id -> {entry, marker, row}

const hubNow = () => nowS() + hubOffset;

// ---------------------------------------------------------------------------- sound

/**
 * The audible alarm. Browsers refuse to start audio before the person has interacted
 * with the page (autoplay policy), so the console asks for a click: the "Sound" button,
 * or any click once sound was switched on in an earlier visit (remembered locally).
 */
const sound = {
  ctx: null,
  wanted: localStorage.getItem("doorstep.console.sound") !== "off",

  get running() {
    return this.ctx !== null && this.ctx.state === "running";
  },

  async enable() {
    this.wanted = true;
    localStorage.setItem("doorstep.console.sound", "on");
    try {
      this.ctx = this.ctx || new (window.AudioContext || window.webkitAudioContext)();
      await this.ctx.resume();
    } catch {
      // no audio device or API: the visual alarm still works
    }
    renderSound();
  },

  disable() {
    this.wanted = false;
    localStorage.setItem("doorstep.console.sound", "off");
    renderSound();
  },

  /** Three short high beeps; false when the browser would not let it play. */
  beep() {
    if (!this.wanted || !this.running) return false;
    const t0 = this.ctx.currentTime;
    for (let i = 0; i < 3; i++) {
      const osc = this.ctx.createOscillator();
      const gain = this.ctx.createGain();
      osc.type = "square";
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, t0 + i * 0.25);
      gain.gain.exponentialRampToValueAtTime(0.25, t0 + i * 0.25 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + i * 0.25 + 0.18);
      osc.connect(gain).connect(this.ctx.destination);
      osc.start(t0 + i * 0.25);
      osc.stop(t0 + i * 0.25 + 0.2);
    }
    return true;
  },
};

function renderSound() {
  const button = $("sound");
  if (!sound.wanted) {
    button.textContent = "Sound off";
    button.setAttribute("aria-pressed", "false");
  } else if (sound.running) {
    button.textContent = "Sound on";
    button.setAttribute("aria-pressed", "true");
  } else {
    button.textContent = "Enable sound";
    button.setAttribute("aria-pressed", "false");
  }
}

$("sound").addEventListener("click", (event) => {
  event.stopPropagation();
  if (sound.wanted && sound.running) sound.disable();
  else sound.enable();
});
// Sound was wanted (the default, or switched on last time): the first click anywhere unlocks it.
document.addEventListener(
  "pointerdown",
  () => {
    if (sound.wanted && !sound.running) sound.enable();
  },
  { capture: true },
);

// ---------------------------------------------------------------------------- helpers

function toast(text) {
  const node = $("toast");
  node.textContent = text;
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (node.hidden = true), 5000);
}

function kindLabel(kind) {
  return kind === "sos" ? "SOS" : String(kind || "incident").replace(/_/g, " ");
}

function who(incident) {
  const r = incident.reporter || {};
  if (r.role === "technician") return `technician ${r.sub}`;
  if (r.role === "customer") return `customer ${r.sub}`;
  return incident.technician_id ? `technician ${incident.technician_id}` : r.sub || "";
}

/** Open incidents, unacknowledged first, each group oldest first. */
function queueOrder() {
  return [...incidents.values()]
    .filter((i) => OPEN.has(i.status))
    .sort((a, b) => (a.status === "open" ? 0 : 1) - (b.status === "open" ? 0 : 1) || a.created_t - b.created_t);
}

function liveOf(id) {
  if (!live.has(id)) live.set(id, { trail: [], last: null });
  return live.get(id);
}

function ageText(t) {
  return formatDuration(hubNow() - t);
}

// ------------------------------------------------------------------------- incidents

function upsertIncident(incident, reason) {
  const known = incidents.has(incident.id);
  incidents.set(incident.id, incident);
  pending.delete(incident.id);
  const entry = liveOf(incident.id);
  // The stored trail is authoritative; live fixes after its last point are kept on top.
  const stored = (incident.trail || []).map((p) => [p[1], p[2]]);
  const lastStoredT = incident.trail?.length ? incident.trail[incident.trail.length - 1][0] : -Infinity;
  entry.stored = stored;
  entry.trail = entry.trail.filter((p) => p[2] > lastStoredT);
  if (["raised", "ack", "resolve", "cancel"].includes(reason)) {
    hubOffset = incident.updated_t - nowS();
  }
  const alarming = reason === "raised" || (reason || "").startsWith("escalation realert");
  if (incident.status === "open" && (alarming || (!known && !seen.has(incident.id)))) {
    alarm(incident);
  }
  seen.add(incident.id);
}

function alarm(incident) {
  sound.beep();
  if (selectedId === null || !OPEN.has(incidents.get(selectedId)?.status)) {
    select(incident.id, true);
  }
}

function select(id, fly = false) {
  selectedId = id;
  renderQueue();
  renderDetail(true);
  const incident = incidents.get(id);
  const where = incident && (liveOf(id).last || incident.location || incident.address);
  if (fly && where) map.flyTo([where.lat, where.lon], Math.max(map.getZoom(), 15), { duration: 0.6 });
}

function renderAll() {
  renderQueue();
  renderAlarm();
  renderDetail(false);
  renderIncidentMarkers();
  renderCounts();
}

function renderCounts() {
  const open = queueOrder();
  const unacked = open.filter((i) => i.status === "open").length;
  $("incident-count").textContent = open.length ? `${unacked} new · ${open.length} open` : "";
  const online = [...fleet.values()].filter((f) => f.entry.online).length;
  $("counts").textContent = `${online} online`;
  const openAlerts = [...alerts.values()].filter((a) => a.status !== "acknowledged").length;
  $("alert-count").textContent = openAlerts ? `${openAlerts} open` : "";
}

function renderQueue() {
  const list = $("queue");
  const items = queueOrder().map((incident) =>
    h(
      "li",
      {},
      h(
        "button",
        {
          type: "button",
          class: "incident",
          dataset: { id: incident.id, status: incident.status },
          "aria-current": incident.id === selectedId ? "true" : "false",
          onclick: () => select(incident.id, true),
        },
        h(
          "span",
          { class: "title" },
          h("span", {}, `${kindLabel(incident.kind)} · ${who(incident)}`),
          h("span", { class: "age", dataset: { t: incident.created_t } }, ageText(incident.created_t)),
        ),
        h(
          "span",
          { class: "small muted" },
          h("span", { class: "badge", dataset: { status: incident.status } }, incident.status),
          incident.booking_id ? ` booking ${incident.booking_id}` : "",
          (incident.escalations || []).length ? ` · escalated: ${incident.escalations.join(", ")}` : "",
        ),
      ),
    ),
  );
  list.replaceChildren(...items);
  $("queue-empty").hidden = items.length > 0;
}

function renderAlarm() {
  const unacked = queueOrder().filter((i) => i.status === "open");
  const banner = $("alarm");
  if (!unacked.length) {
    banner.hidden = true;
    document.title = "Safety console · Doorstep";
    return;
  }
  const first = unacked[0];
  banner.hidden = false;
  banner.dataset.id = first.id;
  const more = unacked.length > 1 ? ` (+${unacked.length - 1} more)` : "";
  banner.replaceChildren(
    h("span", { class: "icon", "aria-hidden": "true" }, "⚠"),
    h("span", {}, `${kindLabel(first.kind)} — ${who(first)} — `),
    h("span", { class: "age", dataset: { t: first.created_t } }, ageText(first.created_t)),
    h("span", {}, ` ago, not acknowledged${more}`),
  );
  document.title = `(${unacked.length}) SOS · Safety console`;
}

$("alarm").addEventListener("click", () => {
  const id = $("alarm").dataset.id;
  if (id) select(id, true);
});

function renderIncidentMarkers() {
  for (const [id, marker] of incidentMarkers) {
    if (!OPEN.has(incidents.get(id)?.status)) {
      marker.remove();
      incidentMarkers.delete(id);
    }
  }
  for (const incident of queueOrder()) {
    const where = liveOf(incident.id).last || incident.location || incident.address;
    if (!where) continue;
    let marker = incidentMarkers.get(incident.id);
    if (!marker) {
      marker = L.marker([where.lat, where.lon], {
        icon: dotIcon("sos", "!"),
        zIndexOffset: 2000,
        title: `${kindLabel(incident.kind)} ${who(incident)}`,
      })
        .on("click", () => select(incident.id))
        .addTo(map);
      incidentMarkers.set(incident.id, marker);
    } else {
      marker.setLatLng([where.lat, where.lon]);
    }
  }
}

// ---------------------------------------------------------------------------- detail

let detailFor = null; // {id, status}: the actions block is rebuilt only when these change

function renderDetail(force) {
  const root = $("detail");
  const incident = incidents.get(selectedId);
  if (!incident) {
    root.replaceChildren(h("p", { class: "muted" }, "Select an incident."));
    selectionLayer.clearLayers();
    detailFor = null;
    return;
  }
  const rebuildActions =
    force || !detailFor || detailFor.id !== incident.id || detailFor.status !== incident.status;
  if (rebuildActions) {
    root.replaceChildren(
      h("div", { id: "detail-info" }),
      h("div", { id: "detail-actions", class: "actions" }),
      h("div", { id: "detail-logs" }),
    );
    renderActions(incident);
    detailFor = { id: incident.id, status: incident.status };
  }
  renderInfo(incident);
  renderLogs(incident);
  renderSelectionLayer(incident);
}

function fact(label, ...value) {
  return [h("dt", {}, label), h("dd", {}, ...value)];
}

function whereText(where) {
  if (!where) return "unknown";
  const acc = Number.isFinite(where.acc) ? ` ±${Math.round(where.acc)} m` : "";
  return `${formatLatLon(where.lat, where.lon)}${acc}`;
}

function renderInfo(incident) {
  const entry = liveOf(incident.id);
  const contacts = contactsCache.get(`${incident.reporter?.role}/${incident.reporter?.sub}`);
  const location = incident.location;
  const facts = [
    ...fact("Raised", `${formatTime(incident.created_t)} · `, h("span", { class: "age", dataset: { t: incident.created_t } }, ageText(incident.created_t)), " ago"),
    ...fact("Reporter", `${incident.reporter?.role || "?"} ${incident.reporter?.sub || ""}`),
    ...(incident.technician_id ? fact("Technician", incident.technician_id) : []),
    ...(incident.customer_id ? fact("Customer", incident.customer_id) : []),
    ...(incident.booking_id ? fact("Booking", incident.booking_id) : []),
    ...fact(
      "Location",
      location ? `${whereText(location)} (${location.source.replace(/_/g, " ")}, ${ageText(location.t)} old)` : "unknown",
    ),
    ...(entry.last ? fact("Live", `${whereText(entry.last)} · `, h("span", { class: "age", dataset: { t: entry.last.t } }, ageText(entry.last.t)), " ago") : []),
    ...(incident.address ? fact("Address", whereText(incident.address)) : []),
    ...(incident.note ? fact("Note", incident.note) : []),
    ...(incident.outcome ? fact("Outcome", incident.outcome.replace(/_/g, " ")) : []),
    ...fact(
      "Contacts",
      contacts === undefined
        ? "…"
        : contacts && contacts.length
          ? contacts.map((c) => `${c.name}${c.relation ? ` (${c.relation})` : ""}${c.phone ? ` ${c.phone}` : ""}`).join("; ")
          : "none on file",
    ),
  ];
  $("detail-info").replaceChildren(
    h(
      "h3",
      {},
      `${kindLabel(incident.kind)} · ${who(incident)}`,
      h("span", { class: "badge", dataset: { status: incident.status }, id: "detail-status" }, incident.status),
    ),
    h("p", { class: "small muted" }, `incident ${incident.id}`),
    h("dl", { class: "facts" }, ...facts),
  );
  if (contacts === undefined) loadContacts(incident);
}

async function loadContacts(incident) {
  const role = incident.reporter?.role;
  const sub = incident.reporter?.sub;
  const key = `${role}/${sub}`;
  if (contactsCache.has(key) || !["technician", "customer"].includes(role)) {
    if (!contactsCache.has(key)) contactsCache.set(key, null);
    return;
  }
  contactsCache.set(key, undefined);
  try {
    const reply = await getJson(`/v1/people/${role}/${encodeURIComponent(sub)}/contacts`, pageToken.value);
    contactsCache.set(key, reply.ok ? reply.body.contacts : null);
  } catch {
    contactsCache.delete(key);
    return;
  }
  if (incidents.get(selectedId)?.reporter?.sub === sub) renderInfo(incidents.get(selectedId));
}

function renderActions(incident) {
  const root = $("detail-actions");
  if (!OPEN.has(incident.status)) {
    root.replaceChildren(h("p", { class: "muted" }, `This incident is ${incident.status}.`));
    return;
  }
  const note = h("textarea", { id: "note", placeholder: "Note (what you did, who you called)", maxlength: 2000 });
  const outcome = h(
    "select",
    { id: "outcome", "aria-label": "Outcome" },
    ...OUTCOMES.map((o) => h("option", { value: o }, o.replace(/_/g, " "))),
  );
  const ack = h(
    "button",
    { id: "ack-button", type: "button", class: "primary", onclick: () => act(incident.id, "ack", { note: note.value }) },
    "Acknowledge",
  );
  const resolve = h(
    "button",
    {
      id: "resolve-button",
      type: "button",
      class: "primary danger",
      onclick: () => act(incident.id, "resolve", { note: note.value, outcome: outcome.value }),
    },
    "Resolve",
  );
  if (incident.status !== "open") ack.disabled = true;
  root.replaceChildren(note, h("div", { class: "row" }, ack), h("div", { class: "row" }, outcome, resolve));
}

async function act(id, action, { note, outcome }) {
  const frame = { type: action, incident: id };
  if (note && note.trim()) frame.note = note.trim();
  if (outcome) frame.outcome = outcome;
  pending.add(id);
  setActionsDisabled(true);
  if (socket.send(frame)) {
    // The answer is the incident broadcast to every console (or an error frame).
    setTimeout(() => {
      if (pending.delete(id)) setActionsDisabled(false);
    }, 5000);
    return;
  }
  const body = { ...(frame.note ? { note: frame.note } : {}), ...(outcome ? { outcome } : {}) };
  try {
    const reply = await postJson(`/v1/incidents/${encodeURIComponent(id)}/${action}`, pageToken.value, body);
    if (reply.ok) {
      upsertIncident(reply.body, action);
      renderAll();
    } else {
      toast(reply.body?.message || `${action} failed (HTTP ${reply.status})`);
    }
  } catch {
    toast(`${action} failed: no connection to the hub`);
  }
  pending.delete(id);
  setActionsDisabled(false);
}

function setActionsDisabled(disabled) {
  for (const id of ["ack-button", "resolve-button"]) {
    const button = $(id);
    if (button) button.disabled = disabled || (id === "ack-button" && incidents.get(selectedId)?.status !== "open");
  }
}

function renderLogs(incident) {
  const audit = (incident.audit || []).map((a) =>
    h(
      "li",
      {},
      `${formatTime(a.t)} ${a.action} by ${a.actor}`,
      a.outcome ? ` → ${a.outcome.replace(/_/g, " ")}` : "",
      a.note ? ` — “${a.note}”` : "",
    ),
  );
  const deliveries = (incident.deliveries || []).map((d) =>
    h(
      "li",
      {},
      `${formatTime(d.t)} ${d.step} · ${d.channel} → ${d.target} (try ${d.attempt}) `,
      h(
        "span",
        { class: d.ok ? "good" : "bad" },
        d.ok ? "delivered" : d.dead_letter ? "FAILED (dead letter)" : "failed, retrying",
      ),
      d.status ? ` HTTP ${d.status}` : "",
      d.error ? ` ${d.error}` : "",
    ),
  );
  const escalations = incident.escalations || [];
  $("detail-logs").replaceChildren(
    h("h4", {}, "Escalation"),
    h("p", { class: "small" }, escalations.length ? escalations.join(" → ") : "none yet"),
    h("h4", {}, "Notifications"),
    deliveries.length ? h("ul", { class: "log", id: "deliveries" }, ...deliveries) : h("p", { class: "small muted" }, "none sent"),
    h("h4", {}, "Audit trail"),
    h("ul", { class: "log" }, ...audit),
  );
}

function renderSelectionLayer(incident) {
  selectionLayer.clearLayers();
  const entry = liveOf(incident.id);
  const points = [...(entry.stored || []), ...entry.trail.map((p) => [p[0], p[1]])];
  if (points.length > 1) {
    L.polyline(points, { color: "#c62828", weight: 4, opacity: 0.8 }).addTo(selectionLayer);
  }
  if (incident.address) {
    L.marker([incident.address.lat, incident.address.lon], { icon: dotIcon("home", "⌂"), title: "Booking address" }).addTo(
      selectionLayer,
    );
  }
  selectionLayer.trail = points;
}

// ---------------------------------------------------------------------------- alerts

function alertKey(alert) {
  return alert.id || `local-${++localAlertKey}`;
}

function upsertAlert(alert) {
  alerts.set(alertKey(alert), alert);
  if (alerts.size > 200) {
    const oldest = [...alerts.entries()].sort((a, b) => a[1].t - b[1].t)[0];
    alerts.delete(oldest[0]);
  }
}

function renderAlerts() {
  const items = [...alerts.entries()]
    .sort((a, b) => (a[1].status === "acknowledged") - (b[1].status === "acknowledged") || b[1].t - a[1].t)
    .map(([key, alert]) =>
      h(
        "li",
        { class: "alert-item", dataset: { id: alert.id || "", status: alert.status || "open", kind: alert.kind } },
        h(
          "div",
          {},
          h("div", { class: "kind" }, String(alert.kind).replace(/_/g, " ")),
          h(
            "div",
            { class: "small" },
            alert.message || "",
            alert.technician_id ? ` · technician ${alert.technician_id}` : "",
            alert.booking_id ? ` · booking ${alert.booking_id}` : "",
          ),
          h(
            "div",
            { class: "small muted" },
            h("span", { class: "age", dataset: { t: alert.t } }, ageText(alert.t)),
            " ago",
            alert.status === "acknowledged" ? ` · acknowledged by ${alert.acked_by || "an operator"}` : "",
          ),
        ),
        alert.id && alert.status !== "acknowledged"
          ? h("button", { type: "button", class: "small-button", onclick: () => ackAlert(alert.id) }, "Ack")
          : null,
      ),
    );
  $("alerts").replaceChildren(...items);
  $("alerts-empty").hidden = items.length > 0;
  renderCounts();
}

async function ackAlert(id) {
  if (socket.send({ type: "ack_alert", alert: id })) return;
  try {
    const reply = await postJson(`/v1/alerts/${encodeURIComponent(id)}/ack`, pageToken.value, {});
    if (reply.ok) {
      upsertAlert(reply.body);
      renderAlerts();
    } else {
      toast(reply.body?.message || `ack failed (HTTP ${reply.status})`);
    }
  } catch {
    toast("ack failed: no connection to the hub");
  }
}

// ---------------------------------------------------------------------------- socket

function onMessage(message) {
  switch (message.type) {
    case "snapshot": {
      // A fresh start after every (re)connect: the snapshot is the truth.
      const selected = selectedId;
      incidents.clear();
      for (const incident of message.incidents || []) upsertIncident(incident, null);
      fleetView.reset(message.fleet);
      fleetView.render();
      alerts.clear();
      for (const alert of message.alerts || []) upsertAlert(alert);
      if (selected && !incidents.has(selected)) refetchClosed(selected);
      if (firstSnapshot) fitAll();
      firstSnapshot = false;
      renderAll();
      renderAlerts();
      break;
    }
    case "incident":
      upsertIncident(message.incident, message.reason);
      renderAll();
      break;
    case "incident_location": {
      const entry = liveOf(message.incident);
      entry.last = { t: message.t, lat: message.lat, lon: message.lon, acc: message.acc };
      entry.trail.push([message.lat, message.lon, message.t]);
      if (entry.trail.length > 5000) entry.trail.splice(0, entry.trail.length - 5000);
      renderIncidentMarkers();
      if (message.incident === selectedId) {
        renderInfo(incidents.get(selectedId));
        renderSelectionLayer(incidents.get(selectedId));
      }
      break;
    }
    case "fleet":
      for (const entry of message.positions || []) fleetView.update(entry);
      fleetView.render();
      renderCounts();
      break;
    case "alert":
      upsertAlert(message);
      renderAlerts();
      if (message.status !== "acknowledged") sound.beep();
      break;
    case "error":
      toast(`${message.code}: ${message.message}`);
      for (const id of pending) pending.delete(id);
      setActionsDisabled(false);
      break;
    default:
      break; // newer message types: ignore (the protocol only grows)
  }
}

/** The selected incident was closed while we were away: show its final state. */
async function refetchClosed(id) {
  try {
    const reply = await getJson(`/v1/incidents/${encodeURIComponent(id)}`, pageToken.value);
    if (reply.ok && !incidents.has(id)) {
      incidents.set(id, reply.body);
      renderDetail(true);
    }
  } catch {
    // offline again; the next snapshot tries again
  }
}

function fitAll() {
  const points = [];
  for (const item of fleet.values()) if (item.marker) points.push(item.marker.getLatLng());
  for (const incident of incidents.values()) {
    const where = incident.location || incident.address;
    if (where) points.push(L.latLng(where.lat, where.lon));
  }
  if (points.length) map.fitBounds(L.latLngBounds(points), { padding: [40, 40], maxZoom: 15 });
}

const CLOSE_TEXT = {
  4401: "Your operator link has expired or is not valid: open the console with a new token.",
  4403: "This token is not an operator's.",
};

const socket = new ReconnectingSocket(() => socketUrl("/v1/ws/ops", pageToken.value), {
  onMessage,
  onTokenExpired: () => pageToken.renew(),
  onState: (state, detail) => {
    $("conn").dataset.state = state;
    $("conn").textContent = connectionLabel(state);
    if (state === "closed" && detail) toast(CLOSE_TEXT[detail.code] || detail.reason || "Disconnected.");
  },
});

// The clocks on screen tick every second without re-rendering anything else.
setInterval(() => {
  for (const node of document.querySelectorAll(".age[data-t]")) {
    node.textContent = ageText(Number(node.dataset.t));
  }
}, 1000);

window.doorstep = {
  map,
  socket,
  incidents,
  alerts,
  fleet,
  fleetView,
  live,
  sound,
  selectionLayer,
  select,
  pageToken,
};

renderSound();
if (!pageToken.value) {
  $("conn").dataset.state = "closed";
  $("conn").textContent = "no token";
  toast("Open the console as /console?token=<operator token>.");
} else {
  pageToken.start();
  socket.start();
}
