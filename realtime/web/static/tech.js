// The technician's web app: /tech?token=<technician token>, for a phone browser.
// Streams navigator.geolocation fixes to WS /v1/ws/technician, numbered with a seq kept in
// localStorage; keeps every fix in a localStorage queue until the hub acks it, and flushes
// the queue as `batch` frames after a reconnect; shows the current booking; and has an SOS
// button that must be held down (so a pocket cannot press it) and shows its acknowledgement.
import {
  PageToken,
  ReconnectingSocket,
  SosSender,
  connectionLabel,
  createMap,
  dotIcon,
  formatClock,
  formatDuration,
  formatLatLon,
  h,
  nowS,
  pageConfig,
  socketUrl,
  sosText,
  tokenClaims,
} from "./common.js";

// The hub refuses a batch of more than 500 points (DOORSTEP_MAX_BATCH_POINTS' default).
const BATCH_POINTS = 500;
// localStorage holds ~5 MB per origin; 10,000 fixes (~1 MB of JSON) is almost 3 hours at
// one fix a second. Past it the oldest go first: the latest position matters most.
const MAX_QUEUE = 10000;
// One fix a second is plenty for a map and for arrival detection; phones may report faster.
const MIN_FIX_INTERVAL_S = 1;
// The hub refuses fixes older than 12 h (DOORSTEP_MAX_FIX_AGE_S); drop them a bit earlier.
const MAX_FIX_AGE_S = 12 * 3600 - 600;
// Acks follow the hub's batched write (~50 ms). Fixes unacked this long after being sent
// were lost on the way (a refused frame, a dropped connection): send them again.
const RESEND_AFTER_S = 10;
// Errors after which the same frame may succeed later: keep the fixes and resend. The hub
// never acks past a fix it refused for now (server_busy names it and refuses every later
// seq until it is resent), so the queue still holds it: resend from the start after a pause.
const RETRYABLE = new Set(["rate_limited", "server_busy", "internal_error", "batch_too_large"]);
const RETRY_FIRST_S = 1;
// watchPosition reports only when the position changes; a technician standing still in a
// customer's home would go silent and trip the hub's signal-lost alert. Past this long
// without a report, the page asks for a fresh fix itself.
const REFRESH_AFTER_S = 30;
const HOLD_MS = 1500;
const RING = 2 * Math.PI * 46; // circumference of the progress ring (r=46 in tech.html)

const BOOKING_TEXT = {
  requested: "Requested",
  assigned: "Assigned to you",
  en_route: "On the way",
  arriving: "Arriving",
  arrived: "Arrived",
  in_service: "In service",
  completed: "Completed",
  cancelled: "Cancelled",
};
const FINAL = new Set(["completed", "cancelled"]);

const config = pageConfig();
const pageToken = new PageToken("doorstep.tech.token");
const token = pageToken.value;
const me = tokenClaims(token).sub || "";
const $ = (id) => document.getElementById(id);
const key = (name) => `doorstep.tech.${me}.${name}`;

// ------------------------------------------------------------------- the fix queue

/** Fixes not yet acked by the hub, oldest first, mirrored in localStorage. */
const queue = {
  points: [],
  saveTimer: null,

  load() {
    try {
      this.points = JSON.parse(localStorage.getItem(key("queue")) || "[]");
    } catch {
      this.points = [];
    }
  },

  // Saving rewrites the whole array; at one fix a second a short debounce is enough, and a
  // page being hidden (phone locked, app switched) saves at once.
  save(now = false) {
    clearTimeout(this.saveTimer);
    const write = () => {
      try {
        localStorage.setItem(key("queue"), JSON.stringify(this.points));
      } catch {
        // storage full: keep the newest half in memory and on disk
        this.points = this.points.slice(Math.floor(this.points.length / 2));
        localStorage.setItem(key("queue"), JSON.stringify(this.points));
      }
    };
    if (now) write();
    else this.saveTimer = setTimeout(write, 300);
  },

  push(point) {
    this.points.push(point);
    if (this.points.length > MAX_QUEUE) this.points.splice(0, this.points.length - MAX_QUEUE);
    this.save();
  },

  /** Everything up to `seq` is stored by the hub. */
  trimTo(seq) {
    const before = this.points.length;
    this.points = this.points.filter((p) => p.seq > seq);
    if (this.points.length !== before) this.save();
  },

  drop(seq) {
    this.points = this.points.filter((p) => p.seq !== seq);
    this.save();
  },

  dropStale() {
    const oldest = nowS() - MAX_FIX_AGE_S;
    this.points = this.points.filter((p) => p.t >= oldest);
  },
};

let nextSeq = Number(localStorage.getItem(key("seq")) || "0");
let synced = false; // the hub's first ack on this connection was read and the queue flushed
let lastProgress = 0; // when the queue last shrank or was (re)sent, in seconds
let lastFix = null; // {t, lat, lon, acc, at (performance.now())}
let geoProblem = null;
let lastQueuedT = -Infinity;
let ackedSeq = -1; // the highest seq the hub said is stored
let retryTimer = null;
let retryDelayS = RETRY_FIRST_S;

function takeSeq(atLeastAbove = -1) {
  nextSeq = Math.max(nextSeq, atLeastAbove + 1);
  const seq = nextSeq;
  nextSeq += 1;
  // Written before the fix is sent: a seq must never be reused, even after a crash.
  localStorage.setItem(key("seq"), String(nextSeq));
  return seq;
}

function flush() {
  queue.dropStale();
  for (let i = 0; i < queue.points.length; i += BATCH_POINTS) {
    socket.send({ type: "batch", points: queue.points.slice(i, i + BATCH_POINTS) });
  }
  lastProgress = nowS();
  renderGps();
}

// ---------------------------------------------------------------------- geolocation

const finite = (x) => typeof x === "number" && Number.isFinite(x);

function onPosition(position) {
  const c = position.coords;
  const t = finite(position.timestamp) ? position.timestamp / 1000 : nowS();
  lastFix = { t, lat: c.latitude, lon: c.longitude, acc: c.accuracy, at: performance.now() };
  geoProblem = null;
  showMe();
  if (t - lastQueuedT < MIN_FIX_INTERVAL_S) {
    renderGps();
    return;
  }
  lastQueuedT = t;
  // Only what the protocol accepts: browsers report NaN or null speed and heading when
  // they do not know them, and accuracy can exceed the hub's 50 km bound indoors.
  const point = { seq: takeSeq(), t, lat: c.latitude, lon: c.longitude };
  if (finite(c.accuracy) && c.accuracy >= 0) point.acc = Math.min(c.accuracy, 50000);
  if (finite(c.speed) && c.speed >= 0 && c.speed <= 150) point.speed = c.speed;
  if (finite(c.heading) && c.heading >= 0 && c.heading <= 360) point.heading = c.heading;
  queue.push(point);
  if (synced) socket.send({ type: "location", ...point });
  renderGps();
}

function onGeoError(error) {
  geoProblem =
    error.code === 1
      ? "Location is blocked: allow it for this site so the customer and the safety team can see you."
      : "No location fix yet (looking for GPS)…";
  renderGps();
}

function renderGps() {
  const gps = $("gps");
  if (geoProblem) {
    gps.replaceChildren(h("span", { class: "bad" }, geoProblem));
  } else if (lastFix) {
    const ago = (performance.now() - lastFix.at) / 1000;
    const acc = finite(lastFix.acc) ? ` ±${Math.round(lastFix.acc)} m` : "";
    gps.textContent = `Sharing location${acc} · ${ago < 3 ? "just now" : `${formatDuration(ago)} ago`}`;
  }
  const waiting = queue.points.length;
  $("queue-state").textContent =
    waiting === 0 ? "all sent" : `${waiting} fix${waiting === 1 ? "" : "es"} waiting to send`;
  $("queue-state").dataset.count = String(waiting);
}

// --------------------------------------------------------------------------- map

const map = createMap("map", config);
const meMarker = L.marker([0, 0], { icon: dotIcon("me"), title: "You", keyboard: false, zIndexOffset: 1000 });
let destination = null;
let fence = null;
let fitted = false;

function showMe() {
  const latlng = [lastFix.lat, lastFix.lon];
  meMarker.setLatLng(latlng);
  if (!map.hasLayer(meMarker)) meMarker.addTo(map);
  if (!fitted) fitView();
}

function fitView() {
  const points = [];
  if (map.hasLayer(meMarker)) points.push(meMarker.getLatLng());
  if (destination) points.push(destination.getLatLng());
  if (points.length === 1) map.setView(points[0], 16);
  else if (points.length > 1) map.fitBounds(L.latLngBounds(points), { padding: [30, 30], maxZoom: 16 });
  fitted = points.length > 0;
}

// ----------------------------------------------------------------------- bookings

const bookings = new Map();

function onBooking(booking) {
  if (booking.technician_id !== me || FINAL.has(booking.status)) bookings.delete(booking.id);
  else bookings.set(booking.id, booking);
  renderBooking();
}

function currentBooking() {
  return [...bookings.values()].sort((a, b) => b.updated_t - a.updated_t)[0] || null;
}

function renderBooking() {
  const booking = currentBooking();
  const root = $("booking");
  destination?.remove();
  fence?.remove();
  destination = fence = null;
  if (!booking) {
    root.replaceChildren(h("p", { class: "muted" }, "No booking assigned."));
    return;
  }
  const dest = booking.destination;
  const others = bookings.size > 1 ? ` (+${bookings.size - 1} more)` : "";
  root.replaceChildren(
    h("div", { class: "booking-status", dataset: { status: booking.status } }, BOOKING_TEXT[booking.status] || booking.status),
    h("div", {}, `Booking ${booking.id}${others} · customer ${booking.customer_id}`),
    h(
      "div",
      { class: "small muted" },
      `Address ${formatLatLon(dest.lat, dest.lon)} · about ${Math.round((booking.expected_duration_s || 3600) / 60)} min visit · `,
      h("a", { href: `geo:${dest.lat},${dest.lon}` }, "open in maps"),
    ),
  );
  destination = L.marker([dest.lat, dest.lon], { icon: dotIcon("home", "⌂"), title: "Booking address" }).addTo(map);
  fence = L.circle([dest.lat, dest.lon], {
    radius: booking.geofence_radius_m || 75,
    color: "#1a7f37",
    weight: 2,
    fillOpacity: 0.08,
    interactive: false,
  }).addTo(map);
  fitView();
}

// ------------------------------------------------------------------ "are you OK?"

let check = null;

function onCheck(message) {
  check = message;
  $("check-question").textContent = message.question || "Are you OK?";
  $("check-deadline").textContent = `Please answer by ${formatClock(message.answer_by)}, or the safety team is alerted.`;
  $("check").hidden = false;
  if (navigator.vibrate) navigator.vibrate([300, 100, 300]);
}

$("check-ok").addEventListener("click", () => {
  if (check) socket.send({ type: "check_ok", id: check.id });
});

// ----------------------------------------------------------------------------- SOS

const holdButton = $("sos-hold");
const ring = $("sos-ring");
ring.setAttribute("stroke-dasharray", String(RING));
let holdStart = null;
let holdFrame = null;

function setRing(progress) {
  ring.setAttribute("stroke-dashoffset", String(RING * (1 - Math.min(1, progress))));
}

function startHold(event) {
  if (holdStart !== null) return;
  if (event.type === "pointerdown") {
    if (event.button !== 0) return;
    holdButton.setPointerCapture?.(event.pointerId);
  }
  event.preventDefault();
  holdStart = performance.now();
  holdButton.classList.add("holding");
  const step = (now) => {
    const progress = (now - holdStart) / HOLD_MS;
    setRing(progress);
    if (progress >= 1) {
      endHold();
      raiseSos();
    } else {
      holdFrame = requestAnimationFrame(step);
    }
  };
  holdFrame = requestAnimationFrame(step);
}

function endHold() {
  if (holdFrame !== null) cancelAnimationFrame(holdFrame);
  holdFrame = null;
  holdStart = null;
  holdButton.classList.remove("holding");
  setRing(0);
}

function raiseSos() {
  sos.raise();
  if (navigator.vibrate) navigator.vibrate([100, 50, 100]);
}

holdButton.addEventListener("pointerdown", startHold);
for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) holdButton.addEventListener(type, endHold);
holdButton.addEventListener("contextmenu", (event) => event.preventDefault());
holdButton.addEventListener("keydown", (event) => {
  if ((event.key === " " || event.key === "Enter") && !event.repeat) startHold(event);
});
holdButton.addEventListener("keyup", (event) => {
  if (event.key === " " || event.key === "Enter") endHold();
});

function renderSos(state) {
  const node = $("sos-state");
  node.hidden = !state;
  node.dataset.phase = state?.phase || "";
  node.dataset.status = state?.status || "";
  node.replaceChildren(sosText(state));
  if (state && state.phase === "stored" && state.status === "open") {
    node.append(" ", h("button", { type: "button", class: "link-button", onclick: () => sos.cancel() }, "Cancel — pressed by mistake"));
  }
  if (state && ["resolved", "cancelled"].includes(state.status)) {
    node.append(" ", h("button", { type: "button", class: "link-button", onclick: () => sos.clear() }, "Dismiss"));
  }
  holdButton.classList.toggle("active", Boolean(state && sos.active));
}

// -------------------------------------------------------------------------- socket

function onMessage(message) {
  switch (message.type) {
    case "ack":
      if (!synced && message.seq >= nextSeq) {
        // The hub has stored seqs this phone never used (its storage was cleared, or the
        // technician used another phone): nothing queued here can be stored yet, so number
        // it, and everything after it, on from the hub's seq.
        for (const point of queue.points) point.seq = takeSeq(message.seq);
        nextSeq = Math.max(nextSeq, message.seq + 1);
        localStorage.setItem(key("seq"), String(nextSeq));
        queue.save();
      }
      if (message.seq > ackedSeq) {
        ackedSeq = message.seq;
        retryDelayS = RETRY_FIRST_S;
      }
      queue.trimTo(message.seq);
      lastProgress = nowS();
      if (!synced) {
        // The first ack says what the hub has stored: send the rest.
        synced = true;
        flush();
      }
      renderGps();
      break;
    case "booking":
      onBooking(message.booking);
      break;
    case "sos_ack":
      sos.onAck(message);
      break;
    case "sos_status":
      sos.onStatus(message);
      break;
    case "check":
      onCheck(message);
      break;
    case "check_ack":
      if (check && check.id === message.id) {
        check = null;
        $("check").hidden = true;
      }
      break;
    case "error":
      onError(message);
      break;
    default:
      break; // newer message types: ignore (the protocol only grows)
  }
}

function onError(message) {
  sos.onError(message);
  if (RETRYABLE.has(message.code)) {
    const seq = message.seq;
    if (Number.isInteger(seq) && seq > ackedSeq && !queue.points.some((p) => p.seq === seq)) {
      // The hub waits for a fix this page no longer has (the queue overflowed): reconnect,
      // the hub then resumes from its ack instead of waiting for it.
      socket.ws?.close(1000, "resume");
      return;
    }
    retrySoon();
  } else if (Number.isInteger(message.seq)) {
    // Stored already (stale_seq) or never storable (out of range): resending cannot help.
    queue.drop(message.seq);
    renderGps();
  }
}

/** Resend the queue from its oldest fix after a pause that doubles while refusals last. */
function retrySoon() {
  if (retryTimer !== null) return; // the answers to frames already in flight: one retry
  retryTimer = setTimeout(() => {
    retryTimer = null;
    if (synced) flush();
  }, retryDelayS * 1000);
  retryDelayS = Math.min(retryDelayS * 2, RESEND_AFTER_S);
}

const CLOSE_TEXT = {
  4401: "Your sign-in link has expired: open the app with a new link.",
  4403: "This link is not a technician's.",
};

const socket = new ReconnectingSocket(() => socketUrl("/v1/ws/technician", pageToken.value), {
  onMessage,
  onTokenExpired: () => pageToken.renew(),
  onState: (state, detail) => {
    if (state !== "open") synced = false;
    $("conn").dataset.state = state;
    $("conn").textContent = connectionLabel(state);
    if (state === "open") sos.onSocketOpen();
    if (state === "closed" && detail) geoProblem = CLOSE_TEXT[detail.code] || detail.reason || "Disconnected.";
    renderGps();
  },
});

const sos = new SosSender({
  socket,
  token: () => pageToken.value,
  storage: window.localStorage,
  storageKey: key("sos"),
  onChange: renderSos,
  where: () => (lastFix && nowS() - lastFix.t < 300 ? lastFix : null),
});

setInterval(() => {
  // Fixes sent but not acked for a while were lost: send them again (the hub skips any
  // it already has, so an overlap is harmless).
  if (synced && queue.points.length && nowS() - lastProgress > RESEND_AFTER_S) flush();
  renderGps();
}, 2000);

document.addEventListener("visibilitychange", () => {
  if (document.hidden) queue.save(true);
});
window.addEventListener("pagehide", () => queue.save(true));

window.doorstep = { map, socket, queue, sos, bookings, meMarker, pageToken };

$("who").textContent = me ? `technician ${me}` : "";
queue.load();
renderGps();
if (!token || !me) {
  $("conn").dataset.state = "closed";
  $("conn").textContent = "no token";
  geoProblem = "Open this app with the link you were given (/tech?token=…).";
  renderGps();
  holdButton.disabled = true;
} else {
  pageToken.start();
  socket.start();
  sos.resume();
  if (!("geolocation" in navigator)) {
    geoProblem = "This browser cannot share its location.";
  } else if (!window.isSecureContext) {
    geoProblem = "Location needs a secure (https) link.";
  } else {
    const options = { enableHighAccuracy: true, maximumAge: 0, timeout: 30000 };
    navigator.geolocation.watchPosition(onPosition, onGeoError, options);
    setInterval(() => {
      if (!lastFix || (performance.now() - lastFix.at) / 1000 > REFRESH_AFTER_S) {
        navigator.geolocation.getCurrentPosition(onPosition, onGeoError, options);
      }
    }, 10000);
  }
  renderGps();
}
