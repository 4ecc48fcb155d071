// The Node.js peer: socket.io 4 with a plain emit loop, SSE on node's http, and the `pg`
// client's LISTEN on a trigger that NOTIFYs JSON. Nothing tuned, nothing replayed.
//   node bench/peer_node.js PORT DSN PING_INTERVAL_SECONDS
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { Client } = require("pg");

const [port, dsn, pingInterval] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4])];
const streams = new Map(); // order id -> Set of http.ServerResponse

function benchNotification(i, room) {
  return { id: i, type: "bench", title: "Kitchen update", body: `event ${i}`, data: { seq: i },
           createdAt: "2026-11-25T20:00:00.000Z", eventId: i, room };
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  const match = url.pathname.match(/^\/api\/notifications\/orders\/([^/]+)\/status$/);
  if (req.method === "GET" && match) {
    const orderId = decodeURIComponent(match[1]);
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                         Connection: "keep-alive" });
    res.write(": ok\n\n");
    if (!streams.has(orderId)) streams.set(orderId, new Set());
    streams.get(orderId).add(res);
    req.on("close", () => { const s = streams.get(orderId); if (s) s.delete(res); });
    return;
  }
  if (req.method === "POST" && url.pathname === "/bench/burst") {
    const room = url.searchParams.get("room");
    const n = Number(url.searchParams.get("n"));
    for (let i = 0; i < n; i++) nsp.to(room).emit("notification", benchNotification(i, room));
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end('{"ok":true}');
    return;
  }
  if (url.pathname === "/healthz") {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end('{"status":"ok"}');
    return;
  }
  if (!url.pathname.startsWith("/socket.io/")) { res.writeHead(404); res.end(); }
});

const io = new Server(server, { pingInterval: pingInterval * 1000, pingTimeout: pingInterval * 1000, cors: { origin: false } });
const nsp = io.of("/notifications");
nsp.on("connection", (socket) => {
  socket.on("joinRoom", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack({ ok: true, room });
  });
});

const pg = new Client({ connectionString: dsn });
pg.connect().then(() => pg.query("LISTEN order_status")).then(() => {
  server.listen(port, "127.0.0.1");
});
pg.on("notification", (msg) => {
  const data = JSON.parse(msg.payload);
  nsp.to(`order-${data.orderId}`).emit("orderStatusUpdate", data);
  const watchers = streams.get(data.orderId);
  if (watchers) for (const res of watchers) res.write(`data: ${msg.payload}\n\n`);
});
