// The console's fleet: one labelled, status-coloured dot per technician on the map and a
// searchable list beside it, both fed by the ops socket's `snapshot.fleet` and `fleet`
// messages (docs/protocol.md). The list's rows are built once per technician and changed in
// place, so live updates (every second) keep the search text, the scroll position and the
// focus where the operator left them.
import { dotIcon, formatLatLon, formatTime, h } from "./common.js";

/** How each status reads on screen; older hubs send none (derived from `online`). */
export const STATUS_TEXT = {
  idle: "idle",
  en_route: "en route",
  arriving: "arriving",
  arrived: "arrived",
  in_service: "in service",
  offline: "offline",
};

export function statusOf(entry) {
  return entry.status || (entry.online ? "idle" : "offline");
}

export function statusText(status) {
  return STATUS_TEXT[status] || String(status).replace(/_/g, " ");
}

/** The name the platform gave, else the id: what the label and the row show first. */
export function labelOf(entry) {
  return entry.name || entry.technician_id;
}

/** Whether the entry matches what was typed: a case-insensitive part of its name or id. */
export function matches(entry, query) {
  const q = query.trim().toLocaleLowerCase();
  if (!q) return true;
  return (
    (entry.name || "").toLocaleLowerCase().includes(q) ||
    entry.technician_id.toLocaleLowerCase().includes(q)
  );
}

/** By label, then id: a row keeps its place when a status changes (no jumping list). */
export function compareEntries(a, b) {
  return (
    labelOf(a).localeCompare(labelOf(b), undefined, { sensitivity: "base" }) ||
    (a.technician_id < b.technician_id ? -1 : a.technician_id > b.technician_id ? 1 : 0)
  );
}

const hasFix = (entry) => Number.isFinite(entry.lat) && Number.isFinite(entry.lon);

export class FleetView {
  /**
   * @param map the Leaflet map
   * @param nodes {list, search, count, empty}: the list's elements
   * @param ageText seconds since a hub time, as text (the console's hub clock)
   */
  constructor(map, nodes, ageText) {
    this.map = map;
    this.nodes = nodes;
    this.ageText = ageText;
    this.items = new Map(); // technician id -> {entry, marker, row, label}
    this.selectedId = null;
    nodes.search.addEventListener("input", () => this.render());
  }

  get query() {
    return this.nodes.search.value;
  }

  /** One entry from the hub: merged with what is known (a fleet entry may omit the fix). */
  update(entry, replace = false) {
    let item = this.items.get(entry.technician_id);
    if (!item) {
      item = { entry: {}, marker: null, row: null, label: null, status: null };
      this.items.set(entry.technician_id, item);
    }
    // The name and status are always the newest (absent name: the profile has none).
    item.entry = replace ? { ...entry } : { ...item.entry, ...entry, name: entry.name };
    item.entry.status = statusOf(item.entry);
    this.renderMarker(item);
    this.renderRow(item);
  }

  /** A snapshot: exactly these entries. Known rows are reused (search and scroll stay). */
  reset(entries) {
    const fresh = new Set();
    for (const entry of entries || []) {
      fresh.add(entry.technician_id);
      this.update(entry, true);
    }
    for (const [id, item] of this.items) {
      if (fresh.has(id)) continue;
      item.marker?.remove();
      item.row?.remove();
      this.items.delete(id);
    }
  }

  // ------------------------------------------------------------------------- map

  renderMarker(item) {
    const e = item.entry;
    if (!hasFix(e)) return;
    const changed = item.status !== e.status;
    item.status = e.status;
    if (!item.marker) {
      item.label = h("span", { class: "label" });
      item.marker = L.marker([e.lat, e.lon], {
        icon: dotIcon(`fleet fleet-${e.status}`),
        keyboard: false,
        zIndexOffset: e.online ? 100 : 0,
      })
        .bindTooltip(item.label, {
          permanent: true,
          direction: "right",
          offset: [12, 0],
          className: "fleet-label",
        })
        .bindPopup(() => this.popupContent(item), { className: "fleet-popup", minWidth: 220 })
        .on("click", () => this.highlight(e.technician_id, true))
        .addTo(this.map);
    } else {
      item.marker.setLatLng([e.lat, e.lon]);
      if (changed) {
        item.marker.setIcon(dotIcon(`fleet fleet-${e.status}`));
        item.marker.setZIndexOffset(e.online ? 100 : 0);
      }
    }
    // Text nodes only: a name is the platform's data, never HTML.
    item.label.dataset.fleetStatus = e.status;
    item.label.replaceChildren(
      labelOf(e),
      h("span", { class: "status" }, ` · ${statusText(e.status)}`),
    );
    item.marker.getTooltip()?.update();
    if (item.marker.isPopupOpen()) item.marker.getPopup().update();
  }

  popupContent(item) {
    const e = item.entry;
    const acc = Number.isFinite(e.acc) ? ` ±${Math.round(e.acc)} m` : "";
    const facts = [
      ["Id", e.technician_id],
      ["Status", statusText(e.status)],
      ["Last fix", [`${formatTime(e.t)} · `, h("span", { class: "age", dataset: { t: e.t } }, this.ageText(e.t)), " ago"]],
      ["Where", `${formatLatLon(e.lat, e.lon)}${acc}`],
      ...(Number.isFinite(e.speed) ? [["Speed", `${Math.round(e.speed * 3.6)} km/h`]] : []),
    ];
    return h(
      "div",
      { dataset: { id: e.technician_id, fleetStatus: e.status } },
      h("strong", { class: "popup-name" }, labelOf(e)),
      h("dl", {}, ...facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    );
  }

  /** Centre the map on the technician and open their popup; false when they have no fix. */
  focus(id) {
    const item = this.items.get(id);
    this.highlight(id, false);
    if (!item?.marker) return false;
    // On a phone the list is below the map: bring the map back into view (no-op on desktop).
    this.map.getContainer().scrollIntoView({ block: "nearest" });
    // No animation: the popup opens on a map that is already where it will stay (an
    // animated pan would race the popup's own auto-pan).
    this.map.setView(item.marker.getLatLng(), Math.max(this.map.getZoom(), 15), { animate: false });
    item.marker.openPopup();
    return true;
  }

  // ------------------------------------------------------------------------ list

  highlight(id, scroll) {
    this.selectedId = id;
    for (const [other, item] of this.items) {
      item.row?.firstChild.setAttribute("aria-current", other === id ? "true" : "false");
    }
    if (scroll) this.items.get(id)?.row?.scrollIntoView({ block: "nearest" });
  }

  renderRow(item) {
    const e = item.entry;
    if (!item.row) {
      const id = e.technician_id;
      item.row = h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "fleet-row",
            dataset: { id },
            "aria-current": "false",
            onclick: () => this.focus(id),
          },
          h("span", { class: "name" }),
          h("span", { class: "fleet-status" }),
          h("span", { class: "id" }),
          h("span", { class: "age" }),
        ),
      );
    }
    const button = item.row.firstChild;
    const [name, status, idNode, age] = button.children;
    button.dataset.fleetStatus = e.status;
    button.dataset.status = e.status;
    setText(name, labelOf(e));
    setText(idNode, e.name ? e.technician_id : "");
    setText(status, statusText(e.status));
    if (Number.isFinite(e.t)) {
      // The console's one-second clock updates every `.age[data-t]` on the page.
      age.dataset.t = e.t;
      setText(age, this.ageText(e.t));
      age.title = `last position ${formatTime(e.t)}`;
    } else {
      delete age.dataset.t;
      setText(age, "no position");
      age.removeAttribute("title");
    }
  }

  /** Put the rows in order and show those matching the search: nodes are moved, not rebuilt. */
  render() {
    const { list, count, empty } = this.nodes;
    const query = this.query;
    const ordered = [...this.items.values()].sort((a, b) => compareEntries(a.entry, b.entry));
    let shown = 0;
    ordered.forEach((item, index) => {
      if (list.children[index] !== item.row) list.insertBefore(item.row, list.children[index] || null);
      item.row.hidden = !matches(item.entry, query);
      if (!item.row.hidden) shown += 1;
    });
    while (list.children.length > ordered.length) list.lastChild.remove();
    const total = ordered.length;
    count.textContent = query.trim() ? `${shown} of ${total}` : total ? String(total) : "";
    empty.hidden = shown > 0;
    empty.textContent = total ? `No technician matches “${query.trim()}”.` : "No technicians online.";
  }
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}
