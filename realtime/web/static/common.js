// Shared by the three pages (/track, /console, /tech): settings injected by the hub, the
// token from the page URL, a WebSocket that reconnects by itself, a marker that glides,
// and small DOM and formatting helpers. Plain ES module, no build step; Leaflet is the
// global `L` loaded by a classic <script> before the page module.

/** The hub's page config: {protocol, tile_url, tile_attribution}. */
export function pageConfig() {
  try {
    return JSON.parse(document.body.dataset.config || "{}");
  } catch {
    return {};
  }
}

export function queryParam(name) {
  return new URLSearchParams(window.location.search).get(name);
}

/**
 * The claims of a JWT, decoded without checking the signature (the hub checks it): the
 * page only wants to show who it is and to key its local storage by the subject.
 */
export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
    return JSON.parse(atob(padded));
  } catch {
    return {};
  }
}

/**
 * The page's token. Read once from ?token=, then removed from the address bar
 * (history.replaceState), so it stays out of the history, bookmarks, screenshots and links
 * copied from the address bar. Kept in memory, and in sessionStorage (this tab only, gone
 * with the tab) so that a reload still works. Refreshed through POST /v1/tokens/refresh
 * shortly before its `exp`; listeners hear every new token.
 */
export class PageToken {
  static RETRY_MS = 10000;

  constructor(storageKey, storage = window.sessionStorage) {
    this.storageKey = storageKey;
    this.storage = storage;
    this.timer = null;
    this.listeners = [];
    const url = new URL(window.location.href);
    const fromUrl = url.searchParams.get("token");
    if (fromUrl) {
      this._store(fromUrl);
      url.searchParams.delete("token");
      window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
    }
    let stored = "";
    try {
      stored = storage.getItem(storageKey) || "";
    } catch {
      stored = "";
    }
    this.value = fromUrl || stored;
  }

  get claims() {
    return tokenClaims(this.value);
  }

  /** Seconds until the token expires (Infinity without an `exp`). */
  get remainingS() {
    const exp = Number(this.claims.exp);
    return Number.isFinite(exp) ? exp - nowS() : Infinity;
  }

  onChange(listener) {
    this.listeners.push(listener);
  }

  /** Refresh a minute before `exp` (a tenth of the lifetime for short tokens). */
  start() {
    if (this.timer !== null) clearTimeout(this.timer);
    const { exp, iat } = this.claims;
    if (!this.value || !Number.isFinite(Number(exp))) return;
    const lifetime = Number(exp) - (Number(iat) || nowS());
    const margin = Math.min(60, Math.max(1, lifetime / 10));
    const delayMs = Math.max(0, (this.remainingS - margin) * 1000);
    this.timer = setTimeout(() => this.refresh(), delayMs);
  }

  /** Ask the hub for a fresh token; true when the page has a valid one afterwards. */
  async refresh() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    let reply;
    try {
      reply = await postJson("/v1/tokens/refresh", this.value, {});
    } catch {
      reply = { ok: false, status: 0 };
    }
    if (reply.ok && reply.body && reply.body.token) {
      this.value = reply.body.token;
      this._store(this.value);
      this.start();
      for (const listener of this.listeners) listener(this.value);
      return true;
    }
    // Offline or a hub hiccup: try again while the token lasts. A 401 (expired, revoked)
    // is final: the page shows why when its socket is refused.
    if (reply.status !== 401 && this.remainingS > 1) {
      this.timer = setTimeout(() => this.refresh(), PageToken.RETRY_MS);
    }
    return this.remainingS > 1;
  }

  /** After a 4401 "token expired": a fresh token if there is none yet; true on success. */
  async renew() {
    if (this.remainingS > 5) return true; // refreshed in the background already
    return this.refresh();
  }

  _store(value) {
    try {
      this.storage.setItem(this.storageKey, value);
    } catch {
      // Storage disabled (private mode): memory only, a reload needs the link again.
    }
  }
}

/** ws:// or wss:// URL on this hub for `path`, with the token as ?token= (browsers cannot set headers). */
export function socketUrl(path, token) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path}?token=${encodeURIComponent(token)}`;
}

/** A random UUID v4. crypto.randomUUID only exists on secure origins (https, localhost). */
export function uuid() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") {
    return window.crypto.randomUUID();
  }
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export const nowS = () => Date.now() / 1000;

/** POST JSON to the hub with the page's token; resolves to {ok, status, body}. */
export async function postJson(path, token, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body ?? {}),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { ok: response.ok, status: response.status, body: data };
}

export async function getJson(path, token) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { ok: response.ok, status: response.status, body: data };
}

// ------------------------------------------------------------------------- DOM helpers

/**
 * Build an element. Text always goes in as text nodes, never as HTML: notes, names and ids
 * come from people and must not be able to inject markup.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function setText(id, text) {
  const node = document.getElementById(id);
  if (node && node.textContent !== text) node.textContent = text;
}

// ---------------------------------------------------------------------------- formats

/** "45 s", "3 min", "1 h 05 min": how long ago or how long, for people. */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

/** Minutes for an ETA: "< 1 min", "12 min". */
export function formatMinutes(seconds) {
  if (seconds < 60) return "< 1 min";
  return `${Math.round(seconds / 60)} min`;
}

export function formatClock(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function formatTime(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

export function formatLatLon(lat, lon) {
  return `${Number(lat).toFixed(5)}, ${Number(lon).toFixed(5)}`;
}

// -------------------------------------------------------------------------------- map

/**
 * A Leaflet map with the configured tile layer. Tiles that cannot be loaded (no internet, a
 * tile server down) leave a blank base map; markers, circles and lines still draw.
 */
export function createMap(elementId, config, view = { center: [20, 0], zoom: 2 }) {
  const map = L.map(elementId, { zoomControl: true, attributionControl: true });
  map.setView(view.center, view.zoom);
  if (config.tile_url) {
    L.tileLayer(config.tile_url, {
      maxZoom: 19,
      attribution: config.tile_attribution || "",
      crossOrigin: false,
    }).addTo(map);
  }
  return map;
}

/** A round marker drawn with CSS (no image requests), styled by `className`. */
export function dotIcon(className, label = "") {
  return L.divIcon({
    className: `dot-marker ${className}`,
    html: label ? `<span>${escapeHtml(label)}</span>` : "",
    iconSize: [22, 22],
    iconAnchor: [11, 11],
  });
}

export function escapeHtml(text) {
  return String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/**
 * Moves a marker smoothly to each new fix: linear in lat/lon with ease-in-out over
 * `durationMs`, one step per animation frame. A new fix mid-glide starts from where the
 * marker is drawn now, so it never jumps back. Far moves (a first fix, a reconnect after a
 * long gap) jump: gliding across a city would draw a path the technician never took.
 */
export class Glider {
  constructor(marker, durationMs = 1000, jumpOverMeters = 5000) {
    this.marker = marker;
    this.durationMs = durationMs;
    this.jumpOverMeters = jumpOverMeters;
    this.frame = null;
    this.target = marker.getLatLng();
  }

  moveTo(latlng) {
    const to = L.latLng(latlng);
    const from = this.marker.getLatLng();
    this.target = to;
    if (this.frame !== null) cancelAnimationFrame(this.frame);
    this.frame = null;
    if (from.distanceTo(to) > this.jumpOverMeters || document.hidden) {
      this.marker.setLatLng(to);
      return;
    }
    const start = performance.now();
    const step = (now) => {
      const k = Math.min(1, (now - start) / this.durationMs);
      const e = k < 0.5 ? 2 * k * k : 1 - (-2 * k + 2) ** 2 / 2;
      this.marker.setLatLng([from.lat + (to.lat - from.lat) * e, from.lng + (to.lng - from.lng) * e]);
      this.frame = k < 1 ? requestAnimationFrame(step) : null;
    };
    this.frame = requestAnimationFrame(step);
  }
}

// ----------------------------------------------------------------------------- socket

/**
 * A WebSocket that reconnects with jittered exponential backoff.
 *
 * Why jitter: when a hub restarts, every phone and console reconnects; without jitter they
 * would all come back in the same instant, again at each backoff step. The delay is drawn
 * from [d/2, d] with d = min(15 s, 0.5 s x 2^attempt). The attempt count resets only once
 * the hub has sent something, so a socket that is accepted and closed at once (a hub that
 * refuses it, 1013) still backs off.
 *
 * `finalCodes` are close codes after which reconnecting is pointless (a bad token 4401,
 * wrong role 4403, no such booking 4404, a frame too big 1009, and 1000 for a booking that
 * is over): the socket then stays closed and `onState("closed", event)` says why.
 *
 * `url` may be a function, asked at every connect (it carries the current token); with
 * `onTokenExpired` (returns, or resolves to, true when there is a fresh token) a 4401
 * "token expired" close reconnects at once instead of being final.
 */
export class ReconnectingSocket {
  constructor(
    url,
    { onMessage, onOpen, onState, onTokenExpired, finalCodes = [4401, 4403, 4404, 1009] } = {},
  ) {
    this.url = url;
    this.onTokenExpired = onTokenExpired || null;
    this.onMessage = onMessage || (() => {});
    this.onOpen = onOpen || (() => {});
    this.onState = onState || (() => {});
    this.finalCodes = new Set(finalCodes);
    this.attempt = 0;
    this.timer = null;
    this.ws = null;
    this.state = "idle";
    this.stopped = false;
    this.lastClose = null;
    window.addEventListener("online", () => this.retryNow());
  }

  start() {
    this.stopped = false;
    this._connect();
  }

  /** Reconnect now instead of waiting out the backoff (the browser is back online). */
  retryNow() {
    if (this.state === "reconnecting" && this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
      this._connect();
    }
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send a message; false (nothing sent) while the socket is not open. */
  send(message) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  stop(code = 1000, reason = "") {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) this.ws.close(code, reason);
    this._setState("closed");
  }

  _setState(state, detail) {
    this.state = state;
    this.onState(state, detail);
  }

  _connect() {
    this._setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(typeof this.url === "function" ? this.url() : this.url);
    } catch (error) {
      this._schedule();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this._setState("open");
      this.onOpen();
    };
    ws.onmessage = (event) => {
      this.attempt = 0;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onMessage(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.lastClose = { code: event.code, reason: event.reason };
      if (this.stopped) return;
      if (event.code === 4401 && event.reason === "token expired" && this.onTokenExpired) {
        this._setState("reconnecting", this.lastClose);
        Promise.resolve(this.onTokenExpired()).then((fresh) => {
          if (this.stopped) return;
          if (fresh) {
            this._connect();
          } else {
            this.stopped = true;
            this._setState("closed", this.lastClose);
          }
        });
        return;
      }
      if (this.finalCodes.has(event.code)) {
        this.stopped = true;
        this._setState("closed", this.lastClose);
        return;
      }
      this._schedule();
    };
  }

  _schedule() {
    const ceiling = Math.min(15000, 500 * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt = Math.min(this.attempt + 1, 10);
    this._setState("reconnecting", this.lastClose);
    this.timer = setTimeout(() => {
      this.timer = null;
      this._connect();
    }, delay);
  }
}

/** Connection pill text for the page header. */
export function connectionLabel(state) {
  return (
    {
      idle: "…",
      connecting: "connecting…",
      open: "live",
      reconnecting: "reconnecting…",
      closed: "disconnected",
    }[state] || state
  );
}

// -------------------------------------------------------------------------------- SOS

/**
 * One SOS press until the hub has it on disk, then its state as operators act on it.
 *
 * The SOS goes over the socket when it is open; if no `sos_ack` comes within
 * ACK_WAIT_MS (or the socket is down), it goes over `POST /v1/sos`, and again every
 * RETRY_MS until one of them answers. The same client id every time, so however many copies
 * arrive the hub makes one incident. The pending SOS is kept in `storage` so a reload (or
 * a browser killed in a pocket) resends it.
 *
 * `state` is null or {id, t, lat?, lon?, acc?, phase, incident?, status?, outcome?} with
 * phase "sending" (not safe yet), "stored" (sos_ack or HTTP 201/200 seen) or "refused" (a
 * 4xx that retrying cannot fix; `error` says why).
 */
export class SosSender {
  static ACK_WAIT_MS = 2500;
  static RETRY_MS = 3000;

  get token() {
    return typeof this._token === "function" ? this._token() : this._token;
  }

  constructor({ socket, token, storage, storageKey, onChange, where }) {
    this.socket = socket;
    this._token = token; // a string, or a function returning the current one
    this.storage = storage;
    this.storageKey = storageKey;
    this.onChange = onChange || (() => {});
    this.where = where || (() => null);
    this.timer = null;
    this.state = null;
    try {
      this.state = JSON.parse(storage.getItem(storageKey) || "null");
    } catch {
      this.state = null;
    }
  }

  /** Call once the page is wired: resends a pending SOS, refreshes a stored one. */
  resume() {
    if (!this.state) return;
    this.onChange(this.state);
    if (this.state.phase === "sending") this._send();
    else if (this.state.phase === "stored") this._refresh();
  }

  get active() {
    return (
      this.state !== null &&
      this.state.phase !== "refused" &&
      !["resolved", "cancelled"].includes(this.state.status)
    );
  }

  /** The button was pressed: raise a new SOS, or push the one still open again. */
  raise(note) {
    if (this.active) {
      if (this.state.phase === "sending") this._send();
      return this.state;
    }
    const state = { id: uuid(), t: nowS(), phase: "sending" };
    const where = this.where();
    if (where && Number.isFinite(where.lat) && Number.isFinite(where.lon)) {
      state.lat = where.lat;
      state.lon = where.lon;
      if (Number.isFinite(where.acc)) state.acc = where.acc;
    }
    if (note) state.note = note;
    this._update(state);
    this._send();
    return state;
  }

  /** Take it back (a pocket press); the hub allows it only while nobody acknowledged it. */
  async cancel() {
    if (!this.state) return;
    const { id } = this.state;
    if (this.socket.send({ type: "sos_cancel", id })) return;
    try {
      const reply = await postJson(`/v1/sos/${encodeURIComponent(id)}/cancel`, this.token, {});
      if (reply.ok) this.onStatus(reply.body);
      else this._update({ ...this.state, error: reply.body?.message || `HTTP ${reply.status}` });
    } catch {
      this._update({ ...this.state, error: "no connection: could not cancel" });
    }
  }

  /** Forget a closed SOS (the person dismissed it). */
  clear() {
    clearTimeout(this.timer);
    this.state = null;
    this.storage.removeItem(this.storageKey);
    this.onChange(null);
  }

  /** The socket (re)opened: a pending SOS goes again at once. */
  onSocketOpen() {
    if (this.state && this.state.phase === "sending") this._send();
  }

  onAck(message) {
    if (!this.state || message.id !== this.state.id) return;
    clearTimeout(this.timer);
    this._update({ ...this.state, phase: "stored", incident: message.incident, status: message.status, error: undefined });
  }

  onStatus(message) {
    if (!this.state || !message || message.id !== this.state.id) return;
    clearTimeout(this.timer);
    this._update({
      ...this.state,
      phase: "stored",
      incident: message.incident,
      status: message.status,
      outcome: message.outcome || undefined,
      error: undefined,
    });
  }

  onError(message) {
    if (!this.state || this.state.phase !== "sending") return;
    if (message.code === "sos_not_stored") {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this._http(), 500);
    }
  }

  _update(state) {
    this.state = state;
    this.storage.setItem(this.storageKey, JSON.stringify(state));
    this.onChange(state);
  }

  _body() {
    const { id, t, lat, lon, acc, note } = this.state;
    const body = { id, t };
    if (lat !== undefined) Object.assign(body, { lat, lon });
    if (acc !== undefined) body.acc = acc;
    if (note) body.note = note;
    return body;
  }

  _send() {
    clearTimeout(this.timer);
    if (this.socket.send({ type: "sos", ...this._body() })) {
      this.timer = setTimeout(() => this._http(), SosSender.ACK_WAIT_MS);
    } else {
      this._http();
    }
  }

  async _http() {
    clearTimeout(this.timer);
    if (!this.state || this.state.phase !== "sending") return;
    let reply;
    try {
      reply = await postJson("/v1/sos", this.token, this._body());
    } catch {
      reply = null; // offline: try again (the socket may come back first)
    }
    if (!this.state || this.state.phase !== "sending") return;
    if (reply && reply.ok) {
      this.onAck(reply.body);
      return;
    }
    if (reply && reply.status >= 400 && reply.status < 500 && ![408, 429].includes(reply.status)) {
      this._update({ ...this.state, phase: "refused", error: reply.body?.message || `HTTP ${reply.status}` });
      return;
    }
    this.timer = setTimeout(() => this._send(), SosSender.RETRY_MS);
  }

  async _refresh() {
    try {
      const reply = await getJson(`/v1/sos/${encodeURIComponent(this.state.id)}`, this.token);
      if (reply.ok) this.onStatus(reply.body);
    } catch {
      // offline: the socket's sos_status will tell when it comes back
    }
  }
}

/** What a reporter reads about their SOS. */
export function sosText(state) {
  if (!state) return "";
  if (state.phase === "refused") return `SOS could not be sent: ${state.error}. Call emergency services.`;
  if (state.phase === "sending") return "Sending SOS… keep this page open.";
  switch (state.status) {
    case "acknowledged":
      return "An operator is handling your SOS.";
    case "resolved":
      return `Your SOS was closed by an operator${state.outcome ? ` (${state.outcome.replace(/_/g, " ")})` : ""}.`;
    case "cancelled":
      return "SOS cancelled.";
    default:
      return "SOS received — the safety team has been alerted.";
  }
}
