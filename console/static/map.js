// Offline maps for the console's overview and the agency page: Leaflet (vendored from npm under
// /static/vendor/leaflet/, loaded by the page as a classic script before its module) with no tile
// server. The base layer is drawn here: a latitude/longitude grid labelled in degrees and an outline of
// the station's area generated from its units' positions (their extent, padded) — nothing is fetched.

const L = window.L;

/** Grid spacing candidates in degrees, coarse to fine. */
const STEPS = [10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005];

/** A graticule: lines every `step` degrees (chosen for ~4–8 lines on screen), redrawn on move/zoom. */
function graticule() {
  const group = L.layerGroup();
  let map = null;
  const draw = () => {
    group.clearLayers();
    const b = map.getBounds();
    const span = Math.max(b.getNorth() - b.getSouth(), b.getEast() - b.getWest());
    const step = STEPS.find((s) => span / s >= 4) || STEPS[STEPS.length - 1];
    const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    const line = { color: "#5b6b7c", weight: 1, opacity: 0.55, interactive: false, className: "map-grid" };
    const label = (text, latlng, cls) => L.marker(latlng, {
      interactive: false, keyboard: false,
      icon: L.divIcon({ className: "map-grid-label " + cls, html: text, iconSize: null }),
    });
    const south = Math.floor(b.getSouth() / step) * step;
    const west = Math.floor(b.getWest() / step) * step;
    for (let lat = south; lat <= b.getNorth() + step; lat += step) {
      group.addLayer(L.polyline([[lat, b.getWest() - 1], [lat, b.getEast() + 1]], line));
      group.addLayer(label(`${lat.toFixed(digits)}°${lat >= 0 ? "N" : "S"}`, [lat, b.getWest()], "lat"));
    }
    for (let lon = west; lon <= b.getEast() + step; lon += step) {
      group.addLayer(L.polyline([[b.getSouth() - 1, lon], [b.getNorth() + 1, lon]], line));
      group.addLayer(label(`${lon.toFixed(digits)}°${lon >= 0 ? "E" : "W"}`, [b.getNorth(), lon], "lon"));
    }
  };
  group.onAdd = function onAdd(m) {
    map = m;
    L.LayerGroup.prototype.onAdd.call(this, m);
    m.on("moveend zoomend resize", draw);
    draw();
  };
  group.onRemove = function onRemove(m) {
    m.off("moveend zoomend resize", draw);
    L.LayerGroup.prototype.onRemove.call(this, m);
  };
  return group;
}

export function hasPosition(unit) {
  return unit && Number.isFinite(Number(unit.lat)) && Number.isFinite(Number(unit.lon))
    && unit.lat !== null && unit.lon !== null;
}

/** The GeoJSON outline of the area the units cover (their extent, padded): drawn, never fetched. */
export function areaOutline(units, pad = 0.004) {
  const pts = units.filter(hasPosition);
  if (!pts.length) return null;
  const lats = pts.map((u) => Number(u.lat));
  const lons = pts.map((u) => Number(u.lon));
  const [s, n, w, e] = [Math.min(...lats) - pad, Math.max(...lats) + pad, Math.min(...lons) - pad, Math.max(...lons) + pad];
  return { type: "Feature", properties: { kind: "station-area" },
    geometry: { type: "Polygon", coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]] } };
}

/**
 * A map in `el` with the offline base layer. Returns {map, setUnits(units, styleOf, onClick)}.
 * styleOf(unit) → {state, label}: the marker's class (state-…) and its tooltip text.
 */
export function offlineMap(el, { interactive = true, wheel = interactive, outlineLabel = "" } = {}) {
  if (!L) throw new Error("Leaflet is not loaded");
  const map = L.map(el, {
    zoomControl: interactive, dragging: interactive, scrollWheelZoom: wheel, doubleClickZoom: interactive,
    boxZoom: interactive, keyboard: interactive, touchZoom: interactive, attributionControl: true, zoomSnap: 0.5,
    minZoom: 3, maxZoom: 18,
  });
  map.attributionControl.setPrefix("Leaflet"); // plain text: no link, no flag image
  map.attributionControl.addAttribution(outlineLabel);
  L.control.scale({ imperial: false }).addTo(map);
  graticule().addTo(map);
  map.setView([0, 0], 3);
  const outline = L.geoJSON(null, {
    interactive: false, style: { color: "#4c9dff", weight: 2, dashArray: "6 6", fill: true, fillOpacity: 0.04 },
  }).addTo(map);
  const markers = L.layerGroup().addTo(map);
  const shown = new Map(); // unit id → {key, layers}: markers are replaced only when what they show changes
  let fitted = "";

  function label(text, latlng, state) {
    const el = document.createElement("span");
    el.textContent = text; // (text, never HTML)
    return L.marker(latlng, {
      interactive: false, keyboard: false,
      icon: L.divIcon({ className: `unit-label state-${state}`, html: el, iconSize: null, iconAnchor: [-12, 10] }),
    });
  }

  function setUnits(units, styleOf, onClick) {
    outline.clearLayers();
    const area = areaOutline(units);
    if (area) outline.addData(area);
    const placed = units.filter(hasPosition);
    const keep = new Set();
    for (const u of placed) {
      const { state, label: text } = styleOf(u);
      const latlng = [Number(u.lat), Number(u.lon)];
      const key = `${latlng}|${state}|${text}`;
      keep.add(u.id);
      const old = shown.get(u.id);
      if (old && old.key === key) continue;
      if (old) for (const layer of old.layers) markers.removeLayer(layer);
      const m = L.circleMarker(latlng, {
        radius: state === "incident" ? 11 : 8, weight: 3, fillOpacity: 0.85,
        className: `unit-marker state-${state} unit-${u.id}`,
      });
      if (onClick) m.on("click", () => onClick(u));
      const layers = [m, label(text, latlng, state)];
      for (const layer of layers) markers.addLayer(layer);
      shown.set(u.id, { key, layers });
    }
    for (const [id, old] of shown) {
      if (keep.has(id)) continue;
      for (const layer of old.layers) markers.removeLayer(layer);
      shown.delete(id);
    }
    const fitKey = placed.map((u) => `${u.id}:${u.lat}:${u.lon}`).join("|");
    if (fitKey && fitKey !== fitted) { // the whole area in view (once per set of positions: the officer may pan)
      fitted = fitKey;
      const bounds = outline.getBounds().isValid() ? outline.getBounds()
        : L.latLngBounds(placed.map((u) => [Number(u.lat), Number(u.lon)]));
      map.fitBounds(bounds.pad(0.08), { maxZoom: 16, animate: false });
    }
    return placed.length;
  }

  return { map, setUnits, refresh: () => map.invalidateSize({ animate: false }) };
}
