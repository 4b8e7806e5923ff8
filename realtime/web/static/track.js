// The customer's tracking page: /track?booking=<id>&token=<customer token>.
// Watches WS /v1/ws/bookings/{id}: the technician's marker glides between fixes, the
// destination and its fence, the ETA with its band, the visit's status, and an SOS button.
import {
  Glider,
  PageToken,
  ReconnectingSocket,
  SosSender,
  connectionLabel,
  createMap,
  dotIcon,
  formatClock,
  formatMinutes,
  pageConfig,
  queryParam,
  socketUrl,
  sosText,
} from "./common.js";

const STATUS_TEXT = {
  requested: "Finding a technician for you",
  assigned: "Your technician is assigned",
  en_route: "On the way",
  arriving: "Arriving soon",
  arrived: "Your technician has arrived",
  in_service: "Visit in progress",
  completed: "Visit finished — thank you",
  cancelled: "This visit was cancelled",
};
const SHOW_ETA = new Set(["en_route", "arriving"]);
const SHOW_TECHNICIAN = new Set(["assigned", "en_route", "arriving", "arrived", "in_service"]);
const FINAL = new Set(["completed", "cancelled"]);
const CLOSE_TEXT = {
  4401: "This link has expired or is not valid. Please ask for a new one.",
  4403: "This link is not for this visit.",
  4404: "This visit does not exist.",
  1009: "The connection was refused.",
};

const config = pageConfig();
const bookingId = queryParam("booking");
const pageToken = new PageToken(`doorstep.track.${bookingId}.token`);
const token = pageToken.value;
const $ = (id) => document.getElementById(id);

const state = {
  booking: null,
  eta: null, // {seconds, low_s, high_s, atDoor, receivedAt (performance.now())}
  positionAt: null,
  finished: false,
  fitted: false,
};

const map = createMap("map", config);
const techMarker = L.marker([0, 0], {
  icon: dotIcon("tech", ""),
  title: "Your technician",
  keyboard: false,
  zIndexOffset: 1000,
});
const glider = new Glider(techMarker, 1000);
let destinationMarker = null;
let fenceLayer = null;

function notice(text) {
  const node = $("notice");
  node.textContent = text || "";
  node.hidden = !text;
}

function renderStatus() {
  const status = state.booking?.status;
  $("status").textContent = STATUS_TEXT[status] || "Loading your visit…";
  $("status").dataset.status = status || "";
  document.body.dataset.status = status || "";
  renderEta();
}

function renderEta() {
  const status = state.booking?.status;
  const eta = state.eta;
  if (!eta || !SHOW_ETA.has(status)) {
    const here = status === "arrived" || status === "in_service";
    $("eta").textContent = here ? "Here" : SHOW_ETA.has(status) ? "–" : "";
    $("eta-band").textContent = "";
    return;
  }
  if (eta.atDoor) {
    // Stopped at the door; the visit starts when the hub sees them go in.
    $("eta").textContent = "At your door";
    $("eta-band").textContent = "";
    return;
  }
  // Count down between messages: the hub's estimate was `seconds` when it arrived.
  const elapsed = (performance.now() - eta.receivedAt) / 1000;
  const seconds = Math.max(0, eta.seconds - elapsed);
  const low = Math.max(0, eta.low_s - elapsed);
  const high = Math.max(low, eta.high_s - elapsed);
  $("eta").textContent = formatMinutes(seconds);
  const band =
    Math.round(low / 60) === Math.round(high / 60)
      ? ""
      : `${Math.max(0, Math.round(low / 60))}–${Math.round(high / 60)} min · `;
  const arrival = formatClock(Date.now() / 1000 + seconds);
  $("eta-band").textContent = `${band}about ${arrival}`;
}

function renderFootnote() {
  const status = state.booking?.status;
  let text = "";
  if (state.finished || FINAL.has(status)) {
    text = "The visit is over: the technician's position is no longer shared.";
  } else if (socket.state === "reconnecting") {
    text = "Connection lost, reconnecting… The position shown may be out of date.";
  } else if (state.positionAt !== null && SHOW_TECHNICIAN.has(status)) {
    const ago = Math.round((performance.now() - state.positionAt) / 1000);
    text = `Live position · ${ago < 5 ? "updated just now" : `updated ${ago} s ago`}.`;
  } else if (SHOW_ETA.has(status)) {
    text = "Waiting for the technician's position…";
  }
  $("footnote").textContent = text;
}

function setBooking(booking) {
  state.booking = booking;
  const dest = [booking.destination.lat, booking.destination.lon];
  if (!destinationMarker) {
    destinationMarker = L.marker(dest, {
      icon: dotIcon("home", "⌂"),
      title: "Your address",
      keyboard: false,
    }).addTo(map);
  } else {
    destinationMarker.setLatLng(dest);
  }
  if (fenceLayer) fenceLayer.remove();
  const style = { color: "#1f6feb", weight: 2, fillOpacity: 0.08, interactive: false };
  fenceLayer = booking.fence
    ? L.geoJSON(booking.fence, { style: () => style })
    : L.circle(dest, { radius: booking.geofence_radius_m || 75, ...style });
  fenceLayer.addTo(map);
  if (!state.fitted && !map.hasLayer(techMarker)) map.setView(dest, 15);
  renderStatus();
  if (!SHOW_TECHNICIAN.has(booking.status)) techMarker.remove();
}

function setPosition(position, glide) {
  if (!state.booking || !SHOW_TECHNICIAN.has(state.booking.status)) return;
  const latlng = L.latLng(position.lat, position.lon);
  if (!map.hasLayer(techMarker)) {
    techMarker.setLatLng(latlng).addTo(map);
  } else if (glide) {
    glider.moveTo(latlng);
  } else {
    techMarker.setLatLng(latlng);
  }
  state.positionAt = performance.now();
  renderFootnote();
  keepInView(latlng);
}

function keepInView(latlng) {
  const dest = destinationMarker?.getLatLng();
  const points = dest ? [latlng, dest] : [latlng];
  if (!state.fitted || !map.getBounds().pad(-0.1).contains(latlng)) {
    // On wide screens the visit card floats over the map's lower left: keep clear of it.
    const wide = window.matchMedia("(min-width: 720px)").matches;
    map.fitBounds(L.latLngBounds(points), {
      paddingTopLeft: wide ? [440, 48] : [40, 40],
      paddingBottomRight: [40, 40],
      maxZoom: 16,
    });
    state.fitted = true;
  }
}

function setEta(eta) {
  state.eta = {
    seconds: eta.seconds,
    low_s: eta.low_s ?? eta.seconds,
    high_s: eta.high_s ?? eta.seconds,
    atDoor: eta.at_door === true,
    receivedAt: performance.now(),
  };
  renderEta();
}

function finish(reason) {
  state.finished = true;
  techMarker.remove();
  state.eta = null;
  renderStatus();
  renderFootnote();
  setConnection("finished", reason ? `Visit finished (${reason})` : "Visit finished");
}

function onMessage(message) {
  switch (message.type) {
    case "snapshot":
      setBooking(message.booking);
      if (message.position) setPosition(message.position, false);
      if (message.eta) setEta(message.eta);
      notice("");
      break;
    case "position":
      setPosition(message, true);
      break;
    case "eta":
      setEta(message);
      break;
    case "status":
      if (state.booking) {
        state.booking = { ...state.booking, status: message.status };
        if (!SHOW_TECHNICIAN.has(message.status)) techMarker.remove();
        if (FINAL.has(message.status)) state.eta = null;
        renderStatus();
      }
      break;
    case "sos_ack":
      sos.onAck(message);
      break;
    case "sos_status":
      sos.onStatus(message);
      break;
    case "error":
      sos.onError(message);
      if (message.code !== "rate_limited") notice(message.message);
      break;
    default:
      break; // newer message types: ignore (the protocol only grows)
  }
}

function setConnection(stateName, text) {
  const pill = $("conn");
  pill.dataset.state = stateName;
  pill.textContent = text || connectionLabel(stateName);
}

function onState(socketState, detail) {
  if (socketState === "closed" && detail) {
    if (detail.code === 1000) {
      finish();
      return;
    }
    setConnection("closed");
    notice(CLOSE_TEXT[detail.code] || detail.reason || "Disconnected.");
    return;
  }
  if (state.finished) return;
  setConnection(socketState);
  renderFootnote();
  if (socketState === "open") sos.onSocketOpen();
}

function renderSos(sosState) {
  const node = $("sos-state");
  node.hidden = !sosState;
  node.textContent = sosText(sosState);
  node.dataset.phase = sosState?.phase || "";
  node.dataset.status = sosState?.status || "";
  if (sosState && sosState.status === "open" && sosState.phase === "stored") {
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "link-button";
    cancel.textContent = "Cancel — pressed by mistake";
    cancel.addEventListener("click", () => sos.cancel());
    node.append(" ", cancel);
  }
  $("sos").classList.toggle("active", Boolean(sosState && sos.active));
}

const socket = new ReconnectingSocket(
  () => socketUrl(`/v1/ws/bookings/${encodeURIComponent(bookingId || "")}`, pageToken.value),
  {
    onMessage,
    onState,
    onTokenExpired: () => pageToken.renew(),
    finalCodes: [1000, 4401, 4403, 4404, 1009],
  },
);
const sos = new SosSender({
  socket,
  token: () => pageToken.value,
  storage: window.sessionStorage,
  storageKey: `doorstep.track.${bookingId}.sos`,
  onChange: renderSos,
});

$("sos").addEventListener("click", () => {
  sos.raise();
  if (navigator.vibrate) navigator.vibrate(200);
});

// For the browser tests and anyone debugging in the console.
window.doorstep = { map, techMarker, glider, socket, sos, state, pageToken };

if (!token || !bookingId) {
  setConnection("closed");
  $("status").textContent = "This tracking link is incomplete.";
  notice("The link must carry ?booking=…&token=…");
  $("sos").disabled = true;
} else {
  pageToken.start();
  socket.start();
  sos.resume();
  setInterval(() => {
    renderEta();
    renderFootnote();
  }, 1000);
}
