// tiffin_rt demo page. Every piece of text from the server or a user goes through
// textContent (the el() helper below); nothing is ever parsed as HTML.
"use strict";

const FLOW = ["pending", "confirmed", "preparing", "ready", "delivered"];
const TERMINAL = new Set(["delivered", "cancelled"]);
const STATUS_LABEL = {
  pending: "Placed", confirmed: "Confirmed", preparing: "Preparing",
  ready: "Ready", delivered: "Delivered", cancelled: "Cancelled",
};
const ACTION_LABEL = {
  confirmed: "Confirm", preparing: "Start cooking", ready: "Mark ready", delivered: "Hand to rider",
};
const VENDOR_NAME = { "spice-garden": "Spice Garden", "green-bowl": "Green Bowl" };
const MENU = [
  { vendorId: "spice-garden", item: "Paneer tikka thali", totalCents: 1450 },
  { vendorId: "spice-garden", item: "Chicken biryani", totalCents: 1290 },
  { vendorId: "green-bowl", item: "Falafel bowl", totalCents: 1050 },
];

// ---------------------------------------------------------------- DOM helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
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

const $ = (id) => document.getElementById(id);
const money = (cents) => (typeof cents === "number" ? `€${(cents / 100).toFixed(2)}` : "");
const clock = (iso) => {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
};
const vendorName = (id) => VENDOR_NAME[id] || id || "";
// The status after this one in the usual flow; none for delivered, cancelled or anything unknown.
const nextStatus = (status) => (TERMINAL.has(status) || !FLOW.includes(status) ? null : FLOW[FLOW.indexOf(status) + 1]);

// ---------------------------------------------------------------- refusals (what the server said)

// The server's own words from an HTTP error body ({"error": {"code", "message"}}), else the status.
async function httpError(response) {
  const data = await response.json().catch(() => ({}));
  const error = new Error((data.error && data.error.message) || `HTTP ${response.status}`);
  error.status = response.status;
  error.code = data.error && data.error.code;
  return error;
}

// What a Socket.IO connect_error carries from the server: a namespace refusal's {code, message},
// or a refused long-polling handshake's JSON body. Null when nothing answered (or the browser
// hides the answer, as it does for a refused WebSocket handshake).
function refusalOf(err) {
  if (!err) return null;
  if (err.data && typeof err.data.message === "string") return { code: err.data.code, message: err.data.message };
  if (err.type !== "TransportError") return err.message ? { code: undefined, message: err.message } : null;
  const xhr = err.context;
  if (xhr && typeof xhr.status === "number" && xhr.status >= 400) {
    try {
      const body = JSON.parse(xhr.responseText);
      if (body.error && body.error.message) return { code: body.error.code, message: body.error.message };
    } catch { /* not our JSON */ }
    return { code: `http_${xhr.status}`, message: `HTTP ${xhr.status}` };
  }
  return null;
}

// A sentence for the person in front of the page: the server's message and what to do about it.
function explain(message) {
  if (/too many open connections/.test(message)) return `${message}; close another tab`;
  return message;
}

// The banner under the top bar: shown while the server refuses this page, cleared once it is live.
function showNotice(text) {
  const notice = $("notice");
  notice.textContent = text || "";
  notice.hidden = !text;
}

// Whether the server answers at all, to tell "refused" from "unreachable" when the reason is hidden.
async function serverAnswers() {
  try { return (await fetch("/healthz", { cache: "no-store" })).ok; } catch { return false; }
}

// ---------------------------------------------------------------- session (token)

const session = { user: null, token: null, expiresAt: 0 };

async function mintToken() {
  const response = await fetch("/api/demo/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user: session.user.id }),
  });
  if (!response.ok) throw await httpError(response);
  const body = await response.json();
  session.token = body.token;
  session.expiresAt = Date.now() + body.expiresIn * 1000;
  return session.token;
}

async function freshToken() {
  if (!session.token || Date.now() > session.expiresAt - 60_000) await mintToken();
  return session.token;
}

async function api(method, path, body, retried = false) {
  const token = await freshToken();
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    throw new Error("the server is not reachable");
  }
  if (response.status === 401 && !retried) {
    session.token = null;
    return api(method, path, body, true);
  }
  if (!response.ok) throw await httpError(response);
  return response.json().catch(() => ({}));
}

// ---------------------------------------------------------------- connection pills

const sseStreams = new Map(); // orderId -> EventSource

function setPill(id, state, text) {
  const pill = $(id);
  pill.dataset.state = state;
  pill.querySelector(".state").textContent = text || state;
}

function refreshSsePill() {
  if (sseStreams.size === 0) return setPill("conn-sse", "idle", "no active order");
  let open = 0;
  for (const source of sseStreams.values()) if (source.readyState === EventSource.OPEN) open += 1;
  if (open === sseStreams.size) setPill("conn-sse", "live", `${open} live`);
  else setPill("conn-sse", "reconnecting", `${open}/${sseStreams.size} live`);
}

// ---------------------------------------------------------------- toasts and notifications

const seenNotifications = new Set();
let unread = 0;

function toast(title, body, kind = "info") {
  const node = el("div", { class: `toast ${kind}`, role: "status" },
    el("strong", {}, title), body ? el("span", {}, body) : null);
  $("toasts").append(node);
  setTimeout(() => node.classList.add("leaving"), 5500);
  setTimeout(() => node.remove(), 6000);
}

function setUnread(count) {
  unread = count;
  const badge = $("badge");
  badge.textContent = count > 99 ? "99+" : String(count);
  badge.hidden = count === 0;
}

function onNotification(n, { inDigest = false } = {}) {
  const key = n.id ?? n.eventId;
  if (key !== undefined && seenNotifications.has(key)) return;
  if (key !== undefined) seenNotifications.add(key);
  // From the inbox on connect (they carry "read"): the badge comes from unreadCount. On the
  // first connection they are old news, listed quietly; after a reconnect they were missed.
  // One held for a digest is listed quietly too: the digest toasts once and sets the badge.
  const fromInbox = inDigest || Object.prototype.hasOwnProperty.call(n, "read");
  if (!inDigest && (!fromInbox || (socketReconnected && !n.read))) toast(n.title || "Notification", n.body || "", "notify");
  const item = el("li", { class: n.read ? "" : "unread", dataset: { notificationId: key ?? "" } },
    el("div", { class: "n-head" }, el("strong", {}, n.title || ""), el("time", {}, clock(n.createdAt))),
    n.body ? el("p", {}, n.body) : null);
  $("notification-list").prepend(item);
  $("notification-empty").hidden = true;
  if (fromInbox) return;
  if ($("drawer").hidden) setUnread(unread + 1);
  else markAllRead();
}

// A busy period with batching on: the notifications past the rate come as one digest per
// window, its first items shown as they would have been sent, `unread` counting every one.
function onDigest(d) {
  const key = `digest-${d.eventId}`;
  if (seenNotifications.has(key)) return;
  seenNotifications.add(key);
  const held = (d.items || []).filter((item) => item.event === "notification" && item.data);
  for (const item of held) onNotification(item.data, { inDigest: true });
  const titles = held.map((item) => item.data.title).filter(Boolean);
  const more = d.count - titles.length;
  const body = titles.join(", ") + (titles.length && more > 0 ? ` and ${more} more` : "");
  toast(`${d.count} new notification${d.count === 1 ? "" : "s"}`, body, "notify");
  if (!$("drawer").hidden) markAllRead();
  else if (typeof d.unread === "number") setUnread(d.unread);
}

function markAllRead() {
  for (const item of $("drawer").querySelectorAll("li.unread")) item.classList.remove("unread");
  setUnread(0);
  if (notificationsSocket && notificationsSocket.connected) {
    notificationsSocket.timeout(8000).emitWithAck("markRead", { all: true })
      .then((ack) => { if (ack && ack.ok && typeof ack.unread === "number") setUnread(ack.unread); })
      .catch(() => {});
  }
}

function toggleDrawer() {
  const drawer = $("drawer");
  drawer.hidden = !drawer.hidden;
  $("bell").setAttribute("aria-expanded", String(!drawer.hidden));
  if (!drawer.hidden) markAllRead();
}

// ---------------------------------------------------------------- orders state

const orders = new Map(); // id -> order (as the demo API returns it, plus live history)

function applyStatus(orderId, status, timestamp, eventId) {
  const order = orders.get(String(orderId));
  if (!order) return false;
  if (eventId && order.history.some((h) => h.eventId === eventId)) return false;
  if (!eventId && order.status === status) return false;
  if (eventId) order.history.push({ status, timestamp, eventId });
  const changed = order.status !== status;
  order.status = status;
  if (changed) render.order(order, true);
  return changed;
}

function stepTimes(order) {
  const times = {};
  for (const h of order.history) times[h.status] = h.timestamp;
  if (!times.pending && order.createdAt) times.pending = order.createdAt;
  return times;
}

// ---------------------------------------------------------------- customer view

function timeline(order) {
  const times = stepTimes(order);
  const cancelled = order.status === "cancelled";
  const current = FLOW.indexOf(order.status);
  const steps = FLOW.map((status, index) => {
    let state = "todo";
    if (!cancelled && index < current) state = "done";
    if (!cancelled && index === current) state = TERMINAL.has(status) ? "done" : "current";
    if (cancelled && times[status]) state = "done";
    return el("li", { class: `step ${state}`, dataset: { status } },
      el("span", { class: "dot" }),
      el("span", { class: "step-label" }, STATUS_LABEL[status]),
      el("time", {}, times[status] ? clock(times[status]) : ""));
  });
  if (cancelled) {
    steps.push(el("li", { class: "step cancelled current", dataset: { status: "cancelled" } },
      el("span", { class: "dot" }), el("span", { class: "step-label" }, "Cancelled"),
      el("time", {}, times.cancelled ? clock(times.cancelled) : "")));
  }
  return el("ol", { class: "timeline", "aria-label": `Order ${order.id} progress` }, steps);
}

function customerCard(order) {
  const live = sseStreams.get(order.id);
  return el("article", { class: `order-card status-${order.status}`, dataset: { orderId: order.id, status: order.status } },
    el("header", {},
      el("div", {},
        el("h3", {}, order.item || `Order #${order.id}`),
        el("p", { class: "muted" }, `#${order.id} · ${vendorName(order.vendorId)}`, order.totalCents ? ` · ${money(order.totalCents)}` : "")),
      el("div", { class: "card-side" },
        el("span", { class: `chip status-${order.status}` }, STATUS_LABEL[order.status] || order.status),
        live ? el("span", { class: "stream-tag", dataset: { state: streamState(live) } }, `SSE ${streamState(live)}`) : null)),
    timeline(order),
    TERMINAL.has(order.status) ? null : RiderMap.element(order)); // rider-map.js
}

function streamState(source) {
  return source.readyState === EventSource.OPEN ? "live" : "connecting";
}

function showStreamState(orderId) {
  const source = sseStreams.get(orderId);
  const tag = document.querySelector(`#customer-orders [data-order-id="${CSS.escape(orderId)}"] .stream-tag`);
  if (tag && source) { tag.dataset.state = streamState(source); tag.textContent = `SSE ${streamState(source)}`; }
  refreshSsePill();
}

function openStatusStream(order) {
  if (sseStreams.has(order.id) || TERMINAL.has(order.status)) return;
  // Resume from the last change the order list showed, so nothing between the two is missed.
  const last = order.history.reduce((max, h) => Math.max(max, h.eventId || 0), 0);
  const url = `/api/notifications/orders/${encodeURIComponent(order.id)}/status?access_token=${encodeURIComponent(session.token)}`
    + (last ? `&lastEventId=${last}` : "");
  const source = new EventSource(url);
  sseStreams.set(order.id, source);
  source.onopen = () => showStreamState(order.id);
  source.onmessage = (event) => {
    let data;
    try { data = JSON.parse(event.data); } catch { return; }
    const before = orders.get(order.id)?.status;
    applyStatus(data.orderId, data.status, data.timestamp, data.eventId);
    if (before && before !== data.status && data.eventId) flash(order.id);
    if (TERMINAL.has(data.status)) closeStatusStream(order.id);
    refreshSsePill();
  };
  source.onerror = () => {
    showStreamState(order.id);
    if (source.readyState === EventSource.CLOSED) {
      // Refused (e.g. expired token) or finished (204) rather than dropped.
      closeStatusStream(order.id);
      if (TERMINAL.has(orders.get(order.id)?.status)) return;
      setTimeout(async () => {
        try { await freshToken(); } catch { /* retried on the next error */ }
        const current = orders.get(order.id);
        if (current) openStatusStream(current);
      }, 3000);
    }
  };
  refreshSsePill();
}

function closeStatusStream(orderId) {
  const source = sseStreams.get(orderId);
  if (source) source.close();
  sseStreams.delete(orderId);
  const tag = document.querySelector(`#customer-orders [data-order-id="${CSS.escape(orderId)}"] .stream-tag`);
  if (tag) tag.remove();
  refreshSsePill();
}

function flash(orderId) {
  const card = document.querySelector(`[data-order-id="${CSS.escape(orderId)}"]`);
  if (!card) return;
  card.classList.remove("flash");
  void card.offsetWidth;
  card.classList.add("flash");
}

// ---------------------------------------------------------------- kitchen and support board

const BOARD_COLUMNS = [
  { title: "New", statuses: ["pending"] },
  { title: "Confirmed", statuses: ["confirmed"] },
  { title: "Cooking", statuses: ["preparing"] },
  { title: "Ready", statuses: ["ready"] },
  { title: "Done", statuses: ["delivered", "cancelled"] },
];

async function moveOrder(order, status, button) {
  button.disabled = true;
  try {
    await api("POST", `/api/demo/orders/${encodeURIComponent(order.id)}/status`, { status });
  } catch (err) {
    toast(`Order #${order.id} not moved`, err.message, "error");
    button.disabled = false;
  }
}

function boardCard(order, canMove) {
  const next = nextStatus(order.status);
  const times = stepTimes(order);
  const since = times[order.status];
  const actions = [];
  if (canMove && next) {
    const go = el("button", { class: "primary", type: "button", dataset: { action: "advance" } }, `${ACTION_LABEL[next]} →`);
    go.addEventListener("click", () => moveOrder(order, next, go));
    actions.push(go);
  }
  if (canMove && !TERMINAL.has(order.status)) {
    const cancel = el("button", { class: "ghost", type: "button", dataset: { action: "cancel" } }, "Cancel");
    cancel.addEventListener("click", () => moveOrder(order, "cancelled", cancel));
    actions.push(cancel);
  }
  return el("article", { class: `ticket status-${order.status}`, dataset: { orderId: order.id, status: order.status } },
    el("div", { class: "ticket-head" },
      el("strong", {}, `#${order.id}`),
      el("span", { class: `chip status-${order.status}` }, STATUS_LABEL[order.status] || order.status)),
    el("p", { class: "ticket-item" }, order.item || ""),
    el("p", { class: "muted small" },
      `for ${order.customerId || "?"}`,
      session.user.role === "support" ? ` · ${vendorName(order.vendorId)}` : "",
      order.totalCents ? ` · ${money(order.totalCents)}` : "",
      since ? ` · since ${clock(since)}` : ""),
    actions.length ? el("div", { class: "ticket-actions" }, actions) : null);
}

function renderBoard(container) {
  const canMove = session.user.role === "kitchen" || session.user.role === "support";
  const columns = BOARD_COLUMNS.map((column) => {
    // Oldest first, as a kitchen works its queue; finished orders newest first, a few only.
    let inColumn = newestFirst().filter((o) => column.statuses.includes(o.status));
    inColumn = column.title === "Done" ? inColumn.slice(0, 6) : inColumn.reverse();
    return el("section", { class: "board-column", dataset: { column: column.title.toLowerCase() } },
      el("h3", {}, column.title, el("span", { class: "count" }, String(inColumn.length))),
      inColumn.length ? inColumn.map((o) => boardCard(o, canMove)) : el("p", { class: "muted small empty" }, "—"));
  });
  container.replaceChildren(...columns);
}

// ---------------------------------------------------------------- rendering

function newestFirst() {
  const key = (o) => (Number.isFinite(Number(o.id)) ? Number(o.id) : 0);
  return [...orders.values()].sort((a, b) => key(b) - key(a) || String(b.id).localeCompare(String(a.id)));
}

const render = {
  all() {
    const role = session.user.role;
    if (role === "customer") {
      const list = newestFirst();
      $("customer-orders").replaceChildren(...(list.length ? list.map(customerCard)
        : [el("p", { class: "muted" }, "No orders yet. Order something from the menu above.")]));
    } else if (role === "kitchen") {
      renderBoard($("kitchen-board"));
    } else {
      renderBoard($("support-board"));
    }
  },
  order(order, animate) {
    if (session.user.role === "customer") {
      const old = document.querySelector(`#customer-orders [data-order-id="${CSS.escape(order.id)}"]`);
      const card = customerCard(order);
      if (old) old.replaceWith(card); else render.all();
      if (animate) flash(order.id);
    } else {
      render.all();
      if (animate) flash(order.id);
    }
  },
};

let ordersLoaded = false;

async function loadOrders() {
  const { orders: list } = await api("GET", "/api/demo/orders");
  ordersLoaded = true;
  const fresh = new Set(list.map((o) => o.id));
  for (const id of [...orders.keys()]) if (!fresh.has(id)) orders.delete(id);
  for (const order of list) orders.set(order.id, order);
  if (session.user.role === "customer") {
    for (const order of orders.values()) {
      if (TERMINAL.has(order.status)) closeStatusStream(order.id);
      else openStatusStream(order);
    }
  }
  render.all();
  refreshSsePill();
  return list;
}

// ---------------------------------------------------------------- Socket.IO /notifications

let lastEventId = 0;
let socketReconnected = false;
let notificationsSocket = null;
const REFUSED_RETRY_MS = 5000;

function noteEventId(id) {
  if (typeof id === "number" && id > lastEventId) lastEventId = id;
}

function connectNotifications() {
  const socket = io("/notifications", {
    // A function, so every reconnect sends a fresh token and the last event seen (for replay).
    auth: (cb) => { freshToken().then((token) => cb({ token, lastEventId: lastEventId || undefined }), () => cb({})); },
    transports: ["websocket", "polling"],
    reconnectionDelayMax: 5000,
  });
  notificationsSocket = socket;
  if (window.tiffinQueue) window.tiffinQueue.attach(socket, { el, clock, session }); // queue.js
  setPill("conn-socket", "connecting", "connecting");
  let connectedBefore = false;

  socket.on("connect", async () => {
    setPill("conn-socket", "live", "live");
    $("conn-socket").title = "Socket.IO /notifications";
    if (connectedBefore) socketReconnected = true;
    if (connectedBefore || !ordersLoaded) {
      // After a restart, a network drop or a refusal: reload what the page shows, then keep listening.
      try { await loadOrders(); showNotice(""); } catch (err) { showNotice(explain(err.message)); }
    } else {
      showNotice("");
    }
    connectedBefore = true;
    joinSupportRooms(socket);
  });
  socket.on("disconnect", (reason) => {
    setPill("conn-socket", "reconnecting", reason === "io server disconnect" ? "disconnected" : "reconnecting");
    if (reason === "io server disconnect") setTimeout(() => socket.connect(), 1000);
  });
  socket.on("connect_error", async (err) => {
    const refusal = refusalOf(err);
    if (refusal && (refusal.code === "token_expired" || refusal.code === "unauthorized")) {
      session.token = null;
      setPill("conn-socket", "reconnecting", "re-authenticating");
      setTimeout(() => socket.connect(), 1000);
      return;
    }
    if (refusal) {
      // The server answered and said no: say what it said. A namespace refusal is not retried
      // by the client itself, so try again a little later (another tab may have closed).
      setPill("conn-socket", "offline", "refused");
      $("conn-socket").title = refusal.message;
      showNotice(`Live updates refused: ${explain(refusal.message)}`);
      if (err.type !== "TransportError") setTimeout(() => { if (!socket.connected) socket.connect(); }, REFUSED_RETRY_MS);
      return;
    }
    const answers = await serverAnswers();
    if (socket.connected) return;
    setPill("conn-socket", "offline", answers ? "refused" : "server unreachable");
  });
  socket.io.on("reconnect_attempt", (attempt) => setPill("conn-socket", "reconnecting", `reconnecting (${attempt})`));

  socket.on("orderStatusUpdate", (data) => {
    noteEventId(data.eventId);
    const id = String(data.orderId);
    if (!orders.has(id)) {
      // A new order (or one this page has not seen): fetch the list again.
      loadOrders().then(() => {
        if (session.user.role === "kitchen" && data.status === "pending") toast("New order", `Order #${id} just came in`, "notify");
      }).catch(() => {});
      return;
    }
    const changed = applyStatus(id, data.status, data.timestamp, data.eventId);
    if (changed && session.user.role === "customer" && TERMINAL.has(data.status)) closeStatusStream(id);
  });
  // queue.js joins each active order's room, where riderLocation comes (the last one at once).
  socket.on("riderLocation", (position) => {
    const order = orders.get(String(position && position.orderId));
    if (session.user.role !== "customer" || !order || TERMINAL.has(order.status)) return;
    if (!RiderMap.update(position, order)) render.order(order, false);
  });
  socket.on("notification", (n) => { noteEventId(n.eventId); onNotification(n); });
  socket.on("notificationDigest", (d) => { noteEventId(d.eventId); onDigest(d); });
  socket.on("unreadCount", ({ unread: count }) => { if (typeof count === "number") setUnread($("drawer").hidden ? count : 0); });
  socket.on("notificationRead", (r) => {
    noteEventId(r.eventId);
    for (const id of r.ids || []) {
      const item = document.querySelector(`#notification-list li[data-notification-id="${CSS.escape(String(id))}"]`);
      if (item) item.classList.remove("unread");
    }
    if (typeof r.unread === "number") setUnread(r.unread);
  });
  socket.on("resync", (r) => {
    // Too much was missed to replay: reload what the page shows and continue live.
    lastEventId = (r && r.latestEventId) || lastEventId;
    loadOrders().catch(() => {});
  });
  socket.on("tokenExpiring", async () => {
    session.token = null;
    try { await socket.timeout(8000).emitWithAck("refreshToken", { token: await freshToken() }); } catch { /* reconnects with a new token */ }
  });
  return socket;
}

function joinSupportRooms(socket) {
  // Support sees every kitchen: its vendor rooms carry each order's events, new orders included.
  if (session.user.role !== "support" && session.user.role !== "admin") return;
  const vendors = new Set(Object.keys(VENDOR_NAME));
  for (const order of orders.values()) if (order.vendorId) vendors.add(order.vendorId);
  for (const vendor of vendors) socket.emit("joinRoom", `vendor-${vendor}`, () => {});
}

// ---------------------------------------------------------------- personas and start-up

function personaButton(user, current) {
  const roleLabel = user.role === "kitchen" ? "kitchen" : user.role;
  return el("a", {
    href: `#as=${encodeURIComponent(user.id)}`,
    class: `persona ${current && current.id === user.id ? "active" : ""}`,
    dataset: { user: user.id, role: user.role },
    onclick: (event) => { event.preventDefault(); location.hash = `as=${user.id}`; location.reload(); },
  }, el("span", { class: "avatar" }, user.name.slice(0, 1)), el("span", {}, user.name), el("small", {}, roleLabel));
}

function renderMenu() {
  const buttons = MENU.map((entry) => {
    const button = el("button", { type: "button", class: "menu-item" },
      `+ ${entry.item}`, el("small", {}, ` ${vendorName(entry.vendorId)} · ${money(entry.totalCents)}`));
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const { order } = await api("POST", "/api/demo/orders", entry);
        if (order && !orders.has(order.id)) { orders.set(order.id, order); openStatusStream(order); render.all(); }
      } catch (err) {
        toast("Order not placed", err.message, "error");
      } finally {
        button.disabled = false;
      }
    });
    return button;
  });
  $("menu").replaceChildren(...buttons);
}

async function start() {
  $("bell").addEventListener("click", toggleDrawer);
  let users = [];
  let usersError = null;
  try {
    const response = await fetch("/api/demo/users");
    if (response.status === 404) users = [];
    else if (!response.ok) throw await httpError(response);
    else users = (await response.json()).users || [];
  } catch (err) {
    usersError = err.status ? err.message : "the server is not reachable";
  }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("as");
  const user = users.find((u) => u.id === wanted) || null;
  $("personas").replaceChildren(...users.map((u) => personaButton(u, user)));
  if (usersError) {
    $("persona-cards").replaceChildren(el("p", { class: "error" }, `Cannot list the demo users: ${explain(usersError)}`));
    return;
  }
  if (!users.length) {
    $("persona-cards").replaceChildren(el("p", { class: "error" },
      "The demo is off on this server (demo.enabled: false), so there are no demo users to pick."));
    return;
  }
  if (!user) {
    $("persona-cards").replaceChildren(...users.map((u) => personaButton(u, null)));
    return;
  }
  session.user = user;
  document.body.dataset.role = user.role;
  $("welcome").hidden = true;
  $(`view-${user.role === "admin" ? "support" : user.role}`).hidden = false;
  $("whoami").textContent = `Signed in as ${user.name} (${user.role}${user.vendorId ? `, ${vendorName(user.vendorId)}` : ""}) with a demo token`;
  if (user.role === "kitchen") $("kitchen-title").textContent = `${vendorName(user.vendorId)} kitchen`;
  if (user.role === "customer") renderMenu();
  if (typeof io !== "function") {
    setPill("conn-socket", "offline", "client missing");
    toast("Socket.IO client missing", "Run `make install` to fetch it into tiffin_rt/web/static/vendor/.", "error");
  }
  try {
    await mintToken();
    await loadOrders();
  } catch (err) {
    toast("Cannot load orders", explain(err.message), "error");
    showNotice(`Cannot load orders: ${explain(err.message)}`);
  }
  if (window.tiffinPush) {
    window.tiffinPush.mount({ api, toast, onNotification, setPill }).catch((err) => console.warn("push:", err));
  }
  if (typeof io === "function") {
    connectNotifications();
    if (window.tiffinChat && user.role !== "kitchen") {
      window.tiffinChat.mount(user, { el, toast, freshToken, session, clock, refusalOf, explain, showNotice, serverAnswers });
    }
  }
}

document.addEventListener("DOMContentLoaded", start);
