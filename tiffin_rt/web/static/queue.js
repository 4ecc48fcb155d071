// tiffin_rt demo page: the live kitchen queue. The kitchen's view gets a summary of its queue
// (counts by status, average preparation and wait times) and each ticket its place in the
// queue, from `kitchenQueue`; a customer's order cards say how many orders are ahead, from
// `queuePosition` (the page joins each open order's room to get it). Every piece of text goes
// through textContent; nothing is parsed as HTML.
"use strict";

window.tiffinQueue = (() => {
  const COUNTS = [
    ["pending", "New"], ["confirmed", "Confirmed"], ["preparing", "Cooking"], ["ready", "Ready"],
  ];
  const TERMINAL = new Set(["delivered", "cancelled"]);
  const queues = new Map(); // vendorId -> latest kitchenQueue
  const positions = new Map(); // orderId -> latest queuePosition
  const joined = new Set(); // order rooms this connection has joined
  let ctx = null;
  let socket = null;

  function duration(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "—";
    const total = Math.round(seconds);
    const minutes = Math.floor(total / 60);
    return minutes ? `${minutes} min ${String(total % 60).padStart(2, "0")} s` : `${total} s`;
  }

  function plural(count, noun) {
    return `${count} ${noun}${count === 1 ? "" : "s"}`;
  }

  function aheadText(p) {
    if (p.ahead === 0) return "Your order is next";
    return `${plural(p.ahead, "order")} ahead of yours`;
  }

  // Set the text only when it differs, so the observers below see no change of their own.
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  // ------------------------------------------------------------ kitchen view

  function renderSummary() {
    const board = document.getElementById("kitchen-board");
    if (!board || !ctx || ctx.session.user.role !== "kitchen") return;
    const queue = queues.get(ctx.session.user.vendorId);
    if (!queue) return;
    let summary = document.getElementById("kitchen-queue");
    if (!summary) {
      summary = ctx.el("section", { id: "kitchen-queue", class: "queue-summary", "aria-label": "Queue" });
      board.before(summary);
    }
    const counts = COUNTS.map(([status, label]) => ctx.el("span", { class: `queue-count status-${status}`, dataset: { count: status } },
      ctx.el("b", {}, String(queue.counts?.[status] ?? 0)), ` ${label}`));
    summary.replaceChildren(
      ctx.el("div", { class: "queue-counts" },
        ctx.el("span", { class: "queue-waiting", dataset: { waiting: String(queue.waiting ?? 0) } },
          ctx.el("b", {}, String(queue.waiting ?? 0)), " waiting"),
        ...counts),
      ctx.el("div", { class: "queue-averages muted small" },
        ctx.el("span", { class: "avg-prep" }, `Avg prep ${duration(queue.averagePrepSeconds)}`),
        ctx.el("span", { class: "avg-wait" }, `Avg wait to start ${duration(queue.averageWaitSeconds)}`),
        ctx.el("span", { class: "avg-samples" }, `over ${plural(queue.averageSamples ?? 0, "order")}`),
        ctx.el("span", { class: "queue-updated" }, `updated ${ctx.clock(queue.updatedAt)}`)));
  }

  function ticketPositions() {
    const queue = ctx && queues.get(ctx.session.user.vendorId);
    const byOrder = new Map();
    if (!queue || !queue.orders) return byOrder;
    for (const list of Object.values(queue.orders)) for (const o of list || []) byOrder.set(String(o.orderId), o);
    return byOrder;
  }

  function decorateTickets() {
    const board = document.getElementById("kitchen-board");
    if (!board || !ctx || ctx.session.user.role !== "kitchen") return;
    const byOrder = ticketPositions();
    for (const ticket of board.querySelectorAll(".ticket[data-order-id]")) {
      const entry = byOrder.get(ticket.dataset.orderId);
      let tag = ticket.querySelector(".queue-pos");
      if (!entry || typeof entry.position !== "number") {
        if (tag) tag.remove();
        continue;
      }
      if (!tag) {
        tag = ctx.el("p", { class: "queue-pos small" });
        ticket.querySelector(".ticket-item")?.after(tag);
      }
      const eta = entry.estimatedReadyAt ? ` · ready ~${ctx.clock(entry.estimatedReadyAt)}` : "";
      setText(tag, `#${entry.position} in queue${eta}`);
      if (tag.dataset.position !== String(entry.position)) tag.dataset.position = String(entry.position);
    }
  }

  // ------------------------------------------------------------ customer cards

  function decorateCards() {
    const list = document.getElementById("customer-orders");
    if (!list || !ctx || ctx.session.user.role !== "customer") return;
    for (const card of list.querySelectorAll(".order-card[data-order-id]")) {
      const id = card.dataset.orderId;
      if (!TERMINAL.has(card.dataset.status)) joinOrder(id);
      const p = positions.get(id);
      let tag = card.querySelector(".queue-ahead");
      if (!p || typeof p.ahead !== "number" || TERMINAL.has(card.dataset.status)) {
        if (tag) tag.remove();
        continue;
      }
      if (!tag) {
        tag = ctx.el("p", { class: "queue-ahead small" });
        card.querySelector("header")?.after(tag);
      }
      const eta = p.estimatedReadyAt ? ` · ready around ${ctx.clock(p.estimatedReadyAt)} (estimate)` : "";
      setText(tag, `${aheadText(p)}${eta}`);
      if (tag.dataset.ahead !== String(p.ahead)) tag.dataset.ahead = String(p.ahead);
    }
  }

  function joinOrder(id) {
    if (!socket || !socket.connected || joined.has(id)) return;
    joined.add(id);
    socket.emit("joinRoom", `order-${id}`, (ack) => { if (!ack || !ack.ok) joined.delete(id); });
  }

  // ------------------------------------------------------------ wiring

  function decorate() {
    decorateTickets();
    decorateCards();
  }

  function observe(id) {
    const node = document.getElementById(id);
    if (node) new MutationObserver(decorate).observe(node, { childList: true, subtree: true });
  }

  function attach(liveSocket, helpers) {
    socket = liveSocket;
    if (!ctx) {
      ctx = helpers;
      observe("kitchen-board");
      observe("customer-orders");
    }
    socket.on("connect", () => { joined.clear(); decorate(); });
    socket.on("kitchenQueue", (queue) => {
      if (!queue || typeof queue.vendorId !== "string") return;
      queues.set(queue.vendorId, queue);
      renderSummary();
      decorateTickets();
    });
    socket.on("queuePosition", (p) => {
      if (!p || p.orderId === undefined) return;
      if (typeof p.ahead === "number") positions.set(String(p.orderId), p);
      else positions.delete(String(p.orderId));
      decorateCards();
    });
  }

  return { attach };
})();
