// The rider on a small map, drawn here as SVG from the positions riderLocation brings: no map
// tiles, no CDN. One map per order card; the trail is what this page has seen since it opened.
"use strict";

const RiderMap = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 320;
  const HEIGHT = 170;
  const PAD = 18;
  const MAX_TRAIL = 240;
  const orders = new Map(); // order id -> { trail: [[lat, lng]], last: riderLocation }

  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    return node;
  }

  function note(position) {
    if (!position || !Number.isFinite(position.lat) || !Number.isFinite(position.lng)) return null;
    const id = String(position.orderId);
    let entry = orders.get(id);
    if (!entry || (entry.last && entry.last.riderId !== position.riderId)) {
      entry = { trail: [], last: null }; // a new rider starts a new trail
      orders.set(id, entry);
    }
    if (entry.last && Date.parse(position.timestamp) < Date.parse(entry.last.timestamp)) return entry;
    entry.last = position;
    const previous = entry.trail[entry.trail.length - 1];
    if (!previous || previous[0] !== position.lat || previous[1] !== position.lng) {
      entry.trail.push([position.lat, position.lng]);
      if (entry.trail.length > MAX_TRAIL) entry.trail.shift();
    }
    return entry;
  }

  function forget(orderId) { orders.delete(String(orderId)); }

  // Equirectangular projection of every point into the box, north up, same scale both ways.
  function projector(points) {
    let minLat = Infinity, maxLat = -Infinity, minLng = Infinity, maxLng = -Infinity;
    for (const [lat, lng] of points) {
      minLat = Math.min(minLat, lat); maxLat = Math.max(maxLat, lat);
      minLng = Math.min(minLng, lng); maxLng = Math.max(maxLng, lng);
    }
    const k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
    const spanX = Math.max((maxLng - minLng) * k, 0.004);
    const spanY = Math.max(maxLat - minLat, 0.004);
    const scale = Math.min((WIDTH - 2 * PAD) / spanX, (HEIGHT - 2 * PAD) / spanY);
    const cx = (minLng + maxLng) / 2, cy = (minLat + maxLat) / 2;
    return ([lat, lng]) => [
      +(WIDTH / 2 + (lng - cx) * k * scale).toFixed(1),
      +(HEIGHT / 2 - (lat - cy) * scale).toFixed(1),
    ];
  }

  function etaText(position) {
    const eta = position.eta;
    if (!eta || !Number.isFinite(eta.estimatedSeconds)) return "on the way";
    const minutes = Math.max(1, Math.round(eta.estimatedSeconds / 60));
    const km = (eta.straightLineMeters / 1000).toFixed(1);
    return `about ${minutes} min away (estimate: ${km} km in a straight line)`;
  }

  // The map for an order card, or null before the order's first position.
  function element(order) {
    const entry = orders.get(String(order.id));
    if (!entry || !entry.last) return null;
    const figure = document.createElement("figure");
    figure.className = "rider-map";
    figure.dataset.mapOrder = String(order.id);
    draw(figure, entry, order);
    return figure;
  }

  function draw(figure, entry, order) {
    const position = entry.last;
    const home = order && order.destination ? [order.destination.lat, order.destination.lng] : null;
    const points = home ? [...entry.trail, home] : entry.trail;
    const at = projector(points);
    const map = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "rider-map-svg",
      "aria-label": `Rider ${position.riderId} on the way to you` });
    map.append(svg("rect", { x: 0, y: 0, width: WIDTH, height: HEIGHT, rx: 10, class: "ground" }));
    for (let x = 20; x < WIDTH; x += 40) map.append(svg("line", { x1: x, y1: 0, x2: x, y2: HEIGHT, class: "street" }));
    for (let y = 20; y < HEIGHT; y += 40) map.append(svg("line", { x1: 0, y1: y, x2: WIDTH, y2: y, class: "street" }));
    const trail = entry.trail.map(at).map(([x, y]) => `${x},${y}`).join(" ");
    map.append(svg("polyline", { points: trail, class: "trail" }));
    if (home) {
      const [hx, hy] = at(home);
      const house = svg("g", { class: "home", transform: `translate(${hx} ${hy})` });
      house.append(svg("path", { d: "M-8 2 L0 -7 L8 2 V9 H-8 Z" }));
      map.append(house);
    }
    const [rx, ry] = at([position.lat, position.lng]);
    const rider = svg("g", { class: "rider", transform: `translate(${rx} ${ry})` });
    if (Number.isFinite(position.heading)) {
      rider.append(svg("path", { d: "M0 -14 L5 -6 H-5 Z", class: "heading", transform: `rotate(${position.heading})` }));
    }
    const dot = svg("circle", { r: 7, cx: 0, cy: 0, class: "rider-dot" });
    rider.append(dot);
    rider.dataset.lat = String(position.lat);
    rider.dataset.lng = String(position.lng);
    rider.dataset.x = String(rx);
    rider.dataset.y = String(ry);
    map.append(rider);
    const caption = document.createElement("figcaption");
    const who = document.createElement("b");
    who.textContent = `Rider ${position.riderId}`; // text from the server: never parsed as HTML
    const eta = document.createElement("span");
    eta.className = "eta";
    eta.textContent = ` · ${etaText(position)}`;
    caption.append(who, eta);
    figure.replaceChildren(map, caption);
  }

  // A new position: redraw the card's map in place, or tell the caller to render the card.
  function update(position, order) {
    const entry = note(position);
    if (!entry) return false;
    const figure = document.querySelector(`.rider-map[data-map-order="${CSS.escape(String(position.orderId))}"]`);
    if (!figure) return false;
    draw(figure, entry, order);
    return true;
  }

  return { note, update, element, forget };
})();
