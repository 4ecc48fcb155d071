"""The Prometheus collector: reads the app's state and the process's counts at scrape time.

Nothing is exported by keeping Prometheus objects up to date on the delivery path: open
connections, the listener's cursor, the pool and the broker are read as they are when
Prometheus asks; counts are the plain integers of `tiffin_rt.metrics`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tiffin_rt import __version__, metrics
from tiffin_rt.cluster import CLUSTER_BUS
from tiffin_rt.core.hub import SSE
from tiffin_rt.keys import HUB, LISTENER, POOL, ROUTER, SOCKETIO
from tiffin_rt.kitchen_wiring import KITCHEN_QUEUES
from tiffin_rt.metrics.lag import ListenerLag
from tiffin_rt.tracking_wiring import SOCKET_LOCATIONS
from tiffin_rt.transports.socketio.websocket import LeanWebSocket
from tiffin_rt.transports.sse_location import LOCATION_STREAMS, RIDER_TRACKING

PREFIX = "tiffin_rt"
LISTENER_LAG = web.AppKey("listener_lag", ListenerLag)


def socket_transport(socket: Any) -> str:
    """'websocket' or 'polling', as the client is connected now (an upgrade counts)."""
    if type(socket) is LeanWebSocket or getattr(socket, "upgraded", False):
        return "websocket"
    return "polling"


def socketio_connections(sio: Any) -> Counter[tuple[str, str]]:
    """Open Socket.IO namespace connections by (transport, namespace)."""
    found: Counter[tuple[str, str]] = Counter()
    sockets = sio.eio.sockets
    hub = sio.manager.hub
    for namespace in sio.namespace_handlers:
        for client in list(hub.members(namespace, None)):
            socket = sockets.get(client.eio_sid)
            if socket is not None and not socket.closed:
                found[socket_transport(socket), namespace] += 1
    return found


# Label values known in advance: exported at 0 before the first count, so that rate() and
# increase() see the first one (a series that appears with 1 has no increase to show).
TRANSPORTS = ("websocket", "polling", "sse")
REPLAY_TRANSPORTS = ("socketio", "sse")
RESYNC_REASONS = ("expired", "too_many", "unavailable", "invalid")
LIMITS = (
    "connect_per_ip",
    "handshakes_per_ip",
    "events_per_connection",
    "events_per_user",
    "connections_per_user",
    "abuse_strikes",
)


def _counter(
    name: str,
    doc: str,
    labels: list[str],
    counts: Counter[Any],
    known: Iterable[Any] = (),
) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)
    values = dict.fromkeys(known, 0) | dict(counts)
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


class AppCollector(Collector):
    """Everything /metrics says about one app (one process serves one app)."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterable[Metric]:
        yield InfoMetricFamily(f"{PREFIX}_build", "tiffin_rt's version", {"version": __version__})
        yield from self._connections()
        yield from self._counts()
        yield from self._listener()
        yield from self._router()
        yield from self._tracking()
        yield from self._kitchen()
        yield from self._pool()
        yield from self._broker()

    def _connections(self) -> Iterator[Metric]:
        open_now = GaugeMetricFamily(
            f"{PREFIX}_connections",
            "Open connections by transport (websocket, polling, sse) and namespace",
            labels=["transport", "namespace"],
        )
        sio: Any = self._app.get(SOCKETIO)
        found = socketio_connections(sio) if sio is not None else Counter()
        for namespace in sio.namespace_handlers if sio is not None else ():
            for transport in ("websocket", "polling"):
                found.setdefault((transport, namespace), 0)
        found["sse", "sse"] = self._app[HUB].count(SSE) if HUB in self._app else 0
        locations = self._app.get(LOCATION_STREAMS)
        found["sse", "sse_location"] = len(locations) if locations is not None else 0
        for (transport, namespace), count in sorted(found.items()):
            open_now.add_metric([transport, namespace], count)
        yield open_now
        sessions = GaugeMetricFamily(
            f"{PREFIX}_engineio_sessions",
            "Open Engine.IO sessions (Socket.IO clients, connected to a namespace or not yet)",
        )
        eio_sockets = sio.eio.sockets.values() if sio is not None else ()
        sessions.add_metric([], sum(1 for s in eio_sockets if not s.closed))
        yield sessions

    def _counts(self) -> Iterator[Metric]:
        yield _counter(
            "connects",
            "Connections accepted, by namespace (/notifications, /support, sse)",
            ["namespace"],
            metrics.CONNECTS,
            ("/notifications", "/support", "sse"),
        )
        yield _counter(
            "refusals",
            "Connections and requests refused, by namespace (http: before a route) and reason",
            ["namespace", "reason"],
            metrics.REFUSALS,
        )
        yield _counter(
            "events_delivered",
            "Messages written to clients, one per recipient, by event name and transport",
            ["kind", "transport"],
            self._delivered(),
        )
        yield _counter(
            "rate_limited",
            "Rate-limit refusals, by the limit that refused",
            ["limit"],
            metrics.RATE_LIMITED,
            LIMITS,
        )
        yield _counter(
            "slow_consumers_dropped",
            "Connections cut for being more than delivery.max_buffered_kib behind",
            ["transport"],
            metrics.SLOW_DROPPED,
            TRANSPORTS,
        )
        yield _counter(
            "replays",
            "Reconnections sent the events they missed",
            ["transport"],
            metrics.REPLAYS,
            REPLAY_TRANSPORTS,
        )
        yield _counter(
            "replayed_events",
            "Events sent by replays",
            ["transport"],
            metrics.REPLAYED_EVENTS,
            REPLAY_TRANSPORTS,
        )
        yield _counter(
            "resyncs",
            "Reconnections told to reload (resync) instead of a replay, by reason",
            ["transport", "reason"],
            metrics.RESYNCS,
            ((t, r) for t in REPLAY_TRANSPORTS for r in RESYNC_REASONS),
        )

    def _delivered(self) -> Counter[tuple[str, str]]:
        """The process's counts, and the rider positions written to SSE location streams (which
        count their own)."""
        delivered = Counter(metrics.DELIVERED)
        locations = self._app.get(LOCATION_STREAMS)
        if locations is not None:
            delivered["riderLocation", "sse"] += locations.sent
        return delivered

    def _listener(self) -> Iterator[Metric]:
        listener = self._app.get(LISTENER)
        connected = GaugeMetricFamily(
            f"{PREFIX}_listener_connected", "1 while the LISTEN connection is up"
        )
        connected.add_metric([], 1 if listener is not None and listener.connected else 0)
        yield connected
        if listener is None:
            return
        if listener.cursor is not None:
            cursor = GaugeMetricFamily(
                f"{PREFIX}_listener_cursor", "Id of the last event handed to the transports"
            )
            cursor.add_metric([], listener.cursor)
            yield cursor
        for name, doc, value in (
            ("listener_reconnects", "Reconnections of the LISTEN connection", listener.reconnects),
            (
                "listener_callback_deliveries",
                "Events delivered from the NOTIFY callback itself (no task, no read)",
                listener.delivered_from_callback,
            ),
            (
                "listener_late_delivered",
                "Events delivered late, past a gap",
                listener.late_delivered,
            ),
            (
                "listener_late_abandoned",
                "Missing ids no longer watched after database.late_event_window",
                listener.late_abandoned,
            ),
            (
                "listener_malformed_payloads",
                "Payloads on notifications.extra_channels that could not be read",
                listener.malformed_payloads,
            ),
        ):
            family = CounterMetricFamily(f"{PREFIX}_{name}", doc)
            family.add_metric([], value)
            yield family
        sources = CounterMetricFamily(
            f"{PREFIX}_listener_events",
            "Events the listener delivered, by source (notify: carried by the NOTIFY; log: read)",
            labels=["source"],
        )
        carried = listener.delivered_from_callback + listener.carried_delivered
        sources.add_metric(["notify"], carried)
        sources.add_metric(["log"], listener.read_delivered)
        yield sources
        reads = CounterMetricFamily(
            f"{PREFIX}_listener_log_reads", "Reads of the event log after the cursor"
        )
        reads.add_metric([], listener.log_reads)
        yield reads
        gaps = CounterMetricFamily(
            f"{PREFIX}_listener_gaps",
            "Holes in the log's ids: seen (waited for), then rolled back or timed out",
            labels=["outcome"],
        )
        for outcome in ("seen", "rolled_back", "timed_out"):
            gaps.add_metric([outcome], listener.gaps[outcome])
        yield gaps
        waiting = GaugeMetricFamily(
            f"{PREFIX}_listener_waiting_for_gap", "1 while later events wait for a missing id"
        )
        waiting.add_metric([], 0 if listener.waiting_for is None else 1)
        yield waiting
        lag = self._app.get(LISTENER_LAG)
        if lag is not None:
            histogram = HistogramMetricFamily(
                f"{PREFIX}_listener_lag_seconds",
                "Seconds from an event's insert in the log (in its committing transaction) to "
                "its hand-over to every transport",
            )
            histogram.add_metric([], lag.cumulative(), lag.total_seconds)
            yield histogram

    def _router(self) -> Iterator[Metric]:
        router = self._app.get(ROUTER)
        if router is None:
            return
        routed = CounterMetricFamily(
            f"{PREFIX}_events_routed", "Events through every transport's sink"
        )
        routed.add_metric([], router.delivered)
        yield routed
        deferred = CounterMetricFamily(
            f"{PREFIX}_router_deferred_batches",
            "Batches a sink could not finish at once (stock sockets, /support)",
        )
        deferred.add_metric([], router.deferred)
        yield deferred
        backlog = GaugeMetricFamily(
            f"{PREFIX}_router_backlog", "Batches waiting behind a sink that awaits"
        )
        backlog.add_metric([], router.backlog)
        yield backlog

    def _tracking(self) -> Iterator[Metric]:
        """Rider positions: declared (without samples) when tracking is off."""
        tracking = self._app.get(RIDER_TRACKING)
        sockets = self._app.get(SOCKET_LOCATIONS)
        streams = self._app.get(LOCATION_STREAMS)
        positions = CounterMetricFamily(
            f"{PREFIX}_rider_positions",
            "Rider positions: accepted from this node's riders, refused, or from other nodes",
            labels=["outcome"],
        )
        superseded = CounterMetricFamily(
            f"{PREFIX}_rider_positions_superseded",
            "Positions never sent to a client that was behind: a newer one replaced them",
            labels=["transport"],
        )
        late = CounterMetricFamily(
            f"{PREFIX}_rider_positions_sent_late",
            "Positions held for a client that was behind, sent once it caught up",
            labels=["transport"],
        )
        waiting = GaugeMetricFamily(
            f"{PREFIX}_rider_positions_waiting",
            "Socket.IO connections and orders with a position held until they catch up",
        )
        tracked = GaugeMetricFamily(
            f"{PREFIX}_rider_orders_tracked", "Orders whose last position this node keeps"
        )
        if tracking is not None and sockets is not None and streams is not None:
            positions.add_metric(["accepted"], tracking.accepted)
            positions.add_metric(["refused"], tracking.refused)
            positions.add_metric(["from_other_nodes"], tracking.from_other_nodes)
            on_socketio, on_sse = sockets.describe(), streams.describe()
            superseded.add_metric(["socketio"], on_socketio["superseded"])
            superseded.add_metric(["sse"], on_sse["superseded"])
            late.add_metric(["socketio"], on_socketio["sentLate"])
            late.add_metric(["sse"], on_sse["sentLate"])
            waiting.add_metric([], on_socketio["waiting"])
            tracked.add_metric([], tracking.describe()["ordersTracked"])
        yield from (positions, superseded, late, waiting, tracked)

    def _kitchen(self) -> Iterator[Metric]:
        """The kitchen queue: declared (without samples) when kitchen.enabled is off."""
        queues = self._app.get(KITCHEN_QUEUES)
        reads = CounterMetricFamily(
            f"{PREFIX}_kitchen_queue_reads", "Kitchen queue reads of the orders table"
        )
        failures = CounterMetricFamily(
            f"{PREFIX}_kitchen_queue_failures",
            "Kitchen queue reads that failed (retried later, nothing dropped)",
        )
        messages = CounterMetricFamily(
            f"{PREFIX}_kitchen_queue_messages",
            "Kitchen queue messages: queue (kitchenQueue to a vendor room), position "
            "(queuePosition to an order room), snapshot (either, to one newcomer)",
            labels=["kind"],
        )
        pending = GaugeMetricFamily(
            f"{PREFIX}_kitchen_queue_vendors_pending",
            "Vendors whose queue changed and is not sent yet (coalescing, or a failed read)",
        )
        if queues is not None:
            c = queues.counters
            reads.add_metric([], c.reads)
            failures.add_metric([], c.failures)
            messages.add_metric(["queue"], c.queues_sent)
            messages.add_metric(["position"], c.positions_sent)
            messages.add_metric(["snapshot"], c.snapshots_sent)
            pending.add_metric([], queues.describe()["vendorsPending"])
        yield from (reads, failures, messages, pending)

    def _pool(self) -> Iterator[Metric]:
        pool = self._app.get(POOL)
        if pool is None:
            return
        size, idle = pool.get_size(), pool.get_idle_size()
        connections = GaugeMetricFamily(
            f"{PREFIX}_db_pool_connections",
            "Query pool connections by state (the listener's own is not in it)",
            labels=["state"],
        )
        connections.add_metric(["in_use"], size - idle)
        connections.add_metric(["idle"], idle)
        yield connections
        maximum = GaugeMetricFamily(f"{PREFIX}_db_pool_max", "database.pool_max")
        maximum.add_metric([], pool.get_max_size())
        yield maximum

    def _broker(self) -> Iterator[Metric]:
        bus = self._app.get(CLUSTER_BUS)
        if bus is None or bus.kind == "none":
            return
        state = bus.describe()
        labels = ["broker"]
        kind = [str(state["broker"])]
        for name, doc, value, family_type in (
            ("broker_connected", "1 while cluster.broker is reachable", state["connected"], "g"),
            ("broker_other_nodes", "Other nodes heard from", state["otherNodes"], "g"),
            (
                "broker_reconnects",
                "Re-subscriptions after losing the broker",
                state["reconnects"],
                "c",
            ),
            ("broker_published", "Messages published to other nodes", state["published"], "c"),
            ("broker_received", "Messages received from other nodes", state["received"], "c"),
            ("broker_dropped", "Messages from other nodes dropped here", state["dropped"], "c"),
        ):
            family: Metric
            if family_type == "g":
                family = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)
            else:
                family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)
            family.add_metric(kind, float(value))
            yield family
