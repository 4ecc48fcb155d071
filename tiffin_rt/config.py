"""Typed settings from one YAML file, with environment overrides."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "TIFFIN_RT__"
# The longest timer a browser sets (2^31 - 1 ms), in whole seconds.
MAX_CLIENT_TIMER_SECONDS = (2**31 - 1) // 1000
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")

log = logging.getLogger(__name__)

# Keys that did nothing and were removed; a file that still sets one loads with one WARNING.
_REMOVED_KEYS = {
    ("database", "listen_channel"): "the listener's channel is fixed (tiffin_rt_events)",
}


class ConfigError(Exception):
    """A configuration problem a person can fix; the message names the file and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    cors_origins: list[str] = Field(default_factory=list)
    shutdown_timeout: float = Field(default=5.0, ge=0)
    access_log: bool = True
    log_format: Literal["text", "json"] = "text"


class DatabaseSettings(_Section):
    dsn: str = ""
    embedded_dir: Path = Path(".tiffin/pg")
    auto_migrate: bool = True
    pool_min: int = Field(default=1, ge=0)
    pool_max: int = Field(default=10, ge=1)
    command_timeout: float = Field(default=5.0, gt=0)
    heartbeat_interval: float = Field(default=5.0, gt=0)
    heartbeat_timeout: float = Field(default=3.0, gt=0)
    reconnect_min_delay: float = Field(default=0.1, gt=0)
    reconnect_max_delay: float = Field(default=10.0, gt=0)
    gap_timeout: float = Field(default=2.0, gt=0)
    late_event_window: float = Field(default=600.0, gt=0)
    retention_days: float = Field(default=7.0, gt=0)
    prune_interval: float = Field(default=600.0, gt=0)

    @field_validator("dsn")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if value and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError(f"not a PostgreSQL URL ({value.split('@')[-1]!r})")
        return value


class AuthSettings(_Section):
    jwt_secret: str = ""
    jwt_public_key: str = ""
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    leeway: float = Field(default=0.0, ge=0)
    cookie_name: str = "tiffin_rt_token"
    expiry_warning: float = Field(default=60.0, ge=0)

    @field_validator("jwt_algorithms")
    @classmethod
    def _no_none(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one algorithm is required")
        if any(alg.lower() == "none" for alg in value):
            raise ValueError("'none' is never an accepted algorithm")
        return value


class LimitsSettings(_Section):
    """Rate limits are `limits` strings ("10/second", "30 per minute"); sizes in bytes."""

    connect_per_ip: str = "30/minute"
    handshakes_per_ip: str = "60/minute"
    events_per_connection: str = "20/second"
    event_overrides: dict[str, str] = Field(default_factory=dict)
    # One budget per user across all their connections and event names: the per-connection
    # limits alone multiply by connections_per_user and by the number of event names.
    events_per_user: str = "50/second; 1000/minute"
    abuse_strikes: str = "50/minute"
    connections_per_user: int = Field(default=20, ge=1)
    max_message_bytes: int = Field(default=65536, ge=1024)
    order_cache_ttl: float = Field(default=5.0, ge=0)

    @field_validator(
        "connect_per_ip",
        "handshakes_per_ip",
        "events_per_connection",
        "events_per_user",
        "abuse_strikes",
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        return _rate_string(value)

    @field_validator("event_overrides")
    @classmethod
    def _rates(cls, value: dict[str, str]) -> dict[str, str]:
        return {event: _rate_string(rate) for event, rate in value.items()}


def _rate_string(value: str) -> str:
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValueError(f"not a rate such as '10/second' or '30 per minute' ({value!r})") from None
    return value


class OrdersSettings(_Section):
    table: str = "public.orders"
    id_column: str = "id"
    status_column: str = "status"
    customer_column: str = "user_id"
    vendor_column: str = "vendor_id"
    rider_column: str = "rider_id"
    create_demo_table: bool = True

    @field_validator("table")
    @classmethod
    def _qualified_name(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > 2 or not all(_IDENTIFIER.match(p) for p in parts):
            raise ValueError(f"not a table name or schema.table ({value!r})")
        return value

    @field_validator(
        "id_column", "status_column", "customer_column", "vendor_column", "rider_column"
    )
    @classmethod
    def _column_name(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"not a column name ({value!r})")
        return value

    @property
    def schema_name(self) -> str:
        return self.table.split(".")[0] if "." in self.table else "public"

    @property
    def table_name(self) -> str:
        return self.table.split(".")[-1]


class PaymentsSettings(_Section):
    """The backend's payments table (empty `table`: no payment events) and the provider webhook."""

    table: str = ""
    id_column: str = "id"
    order_id_column: str = "order_id"
    status_column: str = "status"
    amount_column: str = "amount"
    currency_column: str = "currency"
    reference_column: str = "provider_reference"
    # Amounts stored as integers of the currency's smallest unit (1450 = 14.50 EUR).
    amount_in_minor_units: bool = False
    # Locale of the amounts in the inbox text ("Payment of €14.50 received").
    locale: str = "en"
    create_demo_table: bool = False
    # POST /api/webhooks/payments: off while the secret is empty.
    webhook_secret: SecretStr = SecretStr("")
    webhook_signature_header: str = "Stripe-Signature"
    webhook_tolerance: float = Field(default=300.0, gt=0, le=86400)
    webhook_max_bytes: int = Field(default=65536, ge=1024, le=10 * 1024 * 1024)
    webhook_retention_days: float = Field(default=30.0, gt=0)

    @field_validator("table")
    @classmethod
    def _qualified_name(cls, value: str) -> str:
        parts = value.split(".")
        if value and (len(parts) > 2 or not all(_IDENTIFIER.match(p) for p in parts)):
            raise ValueError(f"not a table name or schema.table ({value!r})")
        return value

    @field_validator(
        "id_column",
        "order_id_column",
        "status_column",
        "amount_column",
        "currency_column",
        "reference_column",
    )
    @classmethod
    def _column_name(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"not a column name ({value!r})")
        return value

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        from babel import Locale, UnknownLocaleError

        try:
            Locale.parse(value)
        except (UnknownLocaleError, ValueError, TypeError):
            raise ValueError(f"not a locale such as 'en' or 'de_CH' ({value!r})") from None
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value().encode()) < 16:
            raise ValueError("at least 16 bytes (or empty: no webhook)")  # never quotes it
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.table)

    @property
    def schema_name(self) -> str:
        return self.table.split(".")[0] if "." in self.table else "public"

    @property
    def table_name(self) -> str:
        return self.table.split(".")[-1]


class ChannelMapping(_Section):
    """How an existing NOTIFY channel's JSON maps to an order status event."""

    channel: str
    order_id_field: str = "orderId"
    status_field: str = "status"
    previous_status_field: str | None = "previousStatus"
    customer_field: str | None = "userId"


class NotificationsSettings(_Section):
    terminal_statuses: list[str] = Field(default_factory=lambda: ["delivered", "cancelled"])
    sse_ping_interval: float = Field(default=15.0, gt=0)
    sse_retry_ms: int = Field(default=2000, ge=0)
    extra_channels: list[ChannelMapping] = Field(default_factory=list)


class SupportSettings(_Section):
    """Live support chat on /support."""

    max_message_length: int = Field(default=4000, ge=1, le=100_000)
    max_subject_length: int = Field(default=200, ge=1, le=10_000)
    typing_timeout: float = Field(default=5.0, gt=0)
    typing_throttle: float = Field(default=2.0, ge=0)
    history_page_size: int = Field(default=50, ge=1)
    history_max_page_size: int = Field(default=200, ge=1)


class InboxSettings(_Section):
    on_connect: Literal["unread", "latest", "off"] = "unread"
    on_connect_limit: int = Field(default=50, ge=1, le=1000)
    page_size: int = Field(default=20, ge=1)
    max_page_size: int = Field(default=100, ge=1)
    retention_days: float = Field(default=90.0, gt=0)
    prune_interval: float = Field(default=3600.0, gt=0)


class ReplaySettings(_Section):
    max_events: int = Field(default=1000, ge=1)


class DeliverySettings(_Section):
    """How events are written to connections: pings, compression, slow-client limits."""

    ping_interval: float = 25.0
    ping_timeout: float = Field(default=20.0, gt=0)
    websocket_compression: bool = False
    max_buffered_kib: int = Field(default=1024, ge=16)

    @field_validator("ping_interval", "ping_timeout", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML's `yes`/`true` would pass as 1 second
            raise ValueError(f"a number of seconds, not {value!r}")
        return value

    @field_validator("ping_interval")
    @classmethod
    def _whole_seconds(cls, value: float) -> float:
        # python-engineio announces int(ping_interval) * 1000 ms: a fraction would be told wrong.
        if value < 1 or not float(value).is_integer():
            raise ValueError(f"a whole number of seconds, at least 1 (got {value})")
        return value

    @model_validator(mode="after")
    def _a_timer_clients_can_set(self) -> DeliverySettings:
        # Clients wait ping_interval + ping_timeout for a ping; a browser's setTimeout fires at
        # once past 2^31 - 1 ms, so a longer wait would drop every connection at once.
        if self.ping_interval + self.ping_timeout > MAX_CLIENT_TIMER_SECONDS:
            raise ValueError(
                f"ping_interval + ping_timeout: at most {MAX_CLIENT_TIMER_SECONDS} seconds"
                " (a browser timer's limit)"
            )
        return self


_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
BROKER_SCHEMES = ("redis", "rediss", "unix", "amqp", "amqps")


class ClusterSettings(_Section):
    """Several nodes: the broker that carries typing, presence, server-side emits and (Redis)
    per-user counters between them. Database events never need it."""

    broker: str = ""
    name: str = "tiffin_rt"
    heartbeat_interval: float = Field(default=1.0, gt=0)
    node_timeout: float = Field(default=3.0, gt=0)

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        scheme = value.partition("://")[0].lower() if "://" in value else ""
        if value and scheme not in BROKER_SCHEMES:
            # Only the scheme is quoted: the rest may hold a password.
            raise ValueError(f"not a redis:// or amqp:// URL ({scheme or value[:12]!r})")
        if value:
            try:
                parts = urlsplit(value)
                parts.port  # noqa: B018  (raises for a port that is no number or out of range)
            except ValueError as exc:  # the message names no password
                raise ValueError(f"not a valid {scheme}:// URL: {exc}") from None
            if not parts.hostname and scheme != "unix":
                raise ValueError(f"not a valid {scheme}:// URL: no host")
        return value

    @field_validator("name")
    @classmethod
    def _channel_name(cls, value: str) -> str:
        if not _CLUSTER_NAME.match(value):
            raise ValueError(f"letters, digits, '_', '.' or '-', at most 64 ({value!r})")
        return value

    @model_validator(mode="after")
    def _timeout_spans_heartbeats(self) -> ClusterSettings:
        if self.node_timeout < 2 * self.heartbeat_interval:
            raise ValueError(
                "node_timeout: at least twice heartbeat_interval (one late heartbeat is not death)"
            )
        return self


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "", "0.0.0.0"-like names or a host name: reachable from elsewhere


class MetricsSettings(_Section):
    """GET /metrics (Prometheus). Bound beyond localhost it needs a token."""

    enabled: bool = False
    token: str = ""

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and (len(value) < 16 or not value.isascii() or not value.isprintable()):
            raise ValueError("at least 16 printable ASCII characters (or empty)")
        return value


def metrics_exposure_problem(settings: Settings) -> str | None:
    """GET /metrics reachable from other machines without a token."""
    metrics, host = settings.metrics, settings.server.host
    if metrics.enabled and not metrics.token and not is_loopback(host):
        return (
            f"metrics.token: required when server.host ({host!r}) is reachable from other"
            " machines (or set metrics.enabled: false)"
        )
    return None
class TrackingSettings(_Section):
    """Rider location tracking: `locationUpdate` in, `riderLocation` out (README)."""

    enabled: bool = True
    updates_per_rider: str = "1/second"
    max_clock_skew: float = Field(default=5.0, ge=0)
    max_age: float = Field(default=120.0, gt=0)
    store_interval: float = Field(default=5.0, gt=0)
    order_cache_ttl: float = Field(default=60.0, ge=0)
    trail: bool = False
    trail_retention_hours: float = Field(default=24.0, gt=0)
    prune_interval: float = Field(default=600.0, gt=0)
    destination_lat_column: str | None = None
    destination_lng_column: str | None = None
    eta_speed_kmh: float = Field(default=20.0, gt=0, le=300)
    slow_client_retry_ms: int = Field(default=100, ge=10, le=5000)

    @field_validator("updates_per_rider")
    @classmethod
    def _rate(cls, value: str) -> str:
        return _rate_string(value)

    @field_validator("destination_lat_column", "destination_lng_column")
    @classmethod
    def _column_name(cls, value: str | None) -> str | None:
        if value is not None and not _IDENTIFIER.match(value):
            raise ValueError(f"not a column name ({value!r})")
        return value

    @model_validator(mode="after")
    def _both_or_neither(self) -> TrackingSettings:
        if (self.destination_lat_column is None) != (self.destination_lng_column is None):
            raise ValueError(
                "destination_lat_column and destination_lng_column: set both or neither"
            )
        return self


class KitchenSettings(_Section):
    """The live kitchen queue (`kitchenQueue`, `queuePosition`)."""

    enabled: bool = True
    # At most one kitchenQueue per vendor per interval: changes are gathered this long after
    # the first one, then sent as one message with the state at that moment.
    coalesce_interval: float = Field(default=0.25, ge=0, le=60)
    average_samples: int = Field(default=20, ge=1, le=1000)
    average_max_age: float = Field(default=86400.0, gt=0)
    parallel_orders: int = Field(default=1, ge=1, le=1000)
    # kitchenQueue lists at most this many orders per status (the first in queue order);
    # counts and positions always cover every order.
    max_listed: int = Field(default=200, ge=1, le=10_000)


class PushSettings(_Section):
    """Web Push (RFC 8030/8291/8292) for users with no live connection; off unless enabled."""

    enabled: bool = False
    when: Literal["offline", "always"] = "offline"
    vapid_private_key: str = ""
    vapid_subject: str = ""
    ttl: int = Field(default=86400, ge=0, le=28 * 86400)
    urgency: Literal["very-low", "low", "normal", "high"] = "normal"
    queue_size: int = Field(default=10_000, ge=1)
    workers: int = Field(default=4, ge=1, le=256)
    # One user's share: pushes waiting, and sends in flight (a hanging device holds one).
    user_queue_size: int = Field(default=100, ge=1)
    user_in_flight: int = Field(default=1, ge=1, le=256)
    timeout: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    retry_min_delay: float = Field(default=1.0, gt=0)
    retry_max_delay: float = Field(default=60.0, gt=0)
    max_subscriptions_per_user: int = Field(default=10, ge=1, le=1000)
    claim_delay: float = Field(default=1.0, ge=0, le=60)
    http_hosts: list[str] = Field(default_factory=list)

    @field_validator("vapid_subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        if value and not value.startswith(("mailto:", "https://")):
            raise ValueError(f"a mailto: or https:// URL (got {value[:40]!r})")
        return value

    @model_validator(mode="after")
    def _keys_when_enabled(self) -> PushSettings:
        if not self.enabled:
            return self
        if not self.vapid_private_key:
            raise ValueError("vapid_private_key: required with enabled: true (tiffin-rt push keys)")
        if not self.vapid_subject:
            raise ValueError("vapid_subject: required with enabled: true (mailto:you@example.com)")
        from tiffin_rt.push.vapid import InvalidKey, load_key  # cryptography: only when used

        try:
            load_key(self.vapid_private_key)
        except InvalidKey as exc:
            raise ValueError(f"vapid_private_key: {exc}") from None
        if self.retry_max_delay < self.retry_min_delay:
            raise ValueError("retry_max_delay: at least retry_min_delay")
        return self


BatchableKind = Literal["notification", "paymentStatusUpdate", "orderStatusUpdate"]


class BatchingSettings(_Section):
    """Per user: past `max_per_window` live events in `window_seconds`, the rest of the
    window's go out as one notificationDigest (README: Batching)."""

    enabled: bool = False
    max_per_window: int = Field(default=5, ge=1, le=10_000)
    window_seconds: float = Field(default=10.0, ge=0.5, le=3600)
    # Socket.IO events that may be batched; orderStatusUpdate only when listed.
    kinds: list[BatchableKind] = Field(
        default_factory=lambda: list[BatchableKind](["notification"]), min_length=1
    )
    digest_items: int = Field(default=3, ge=0, le=50)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class DemoSettings(_Section):
    enabled: bool = False
    token_ttl: int = Field(default=3600, gt=0)


class Settings(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    orders: OrdersSettings = Field(default_factory=OrdersSettings)
    payments: PaymentsSettings = Field(default_factory=PaymentsSettings)
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    notifications: NotificationsSettings = Field(default_factory=NotificationsSettings)
    support: SupportSettings = Field(default_factory=SupportSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    kitchen: KitchenSettings = Field(default_factory=KitchenSettings)
    push: PushSettings = Field(default_factory=PushSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    demo: DemoSettings = Field(default_factory=DemoSettings)


# RFC 7518 3.2: an HMAC key at least as long as the hash output.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


def auth_key_problem(auth: AuthSettings) -> str | None:
    """Key/algorithm combinations that would weaken verification, described for the user."""
    hmac = [a for a in auth.jwt_algorithms if a.upper().startswith("HS")]
    if auth.jwt_public_key:
        if hmac:
            # An HMAC algorithm next to a public key lets anyone sign with the public key.
            return "auth.jwt_algorithms: with jwt_public_key only RS/PS/ES/EdDSA algorithms"
        return None
    if len(hmac) != len(auth.jwt_algorithms):
        return "auth.jwt_algorithms: RS/PS/ES/EdDSA algorithms need auth.jwt_public_key"
    need = max(_HMAC_MIN_BYTES.get(a.upper(), 32) for a in hmac)
    if len(auth.jwt_secret.encode()) < need:
        return f"auth.jwt_secret: at least {need} bytes for {'/'.join(hmac)} (RFC 7518)"
    return None


def _field_at(path: list[str]) -> Any:
    """The annotation of the settings field at `path`, or None where there is none."""
    model: Any = Settings
    annotation: Any = None
    for part in path:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return None
        annotation = fields[part].annotation
        model = annotation
    return annotation


def _takes_text(path: list[str]) -> bool:
    """A string setting takes the variable's text as it is: a secret such as `abc #x` or
    `0123456789012345` is not cut at '#' or turned into a number by YAML."""
    annotation = _field_at(path)
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    return annotation in (str, SecretStr) or (
        bool(options) and all(a in (str, SecretStr, type(None)) for a in options)
    )


def _env_overrides(
    raw: dict[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Apply TIFFIN_RT__SECTION__KEY=value. A string setting takes the text as it is; any
    other value is parsed as a YAML scalar or list. Returns the settings and, per key set from
    the environment, the variable's name (errors name it, not the file)."""
    sources: dict[tuple[str, ...], str] = {}
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment {name}: {'.'.join(path)}: not a section")
            node = child
        sources[tuple(path)] = name
        if _takes_text(path):
            node[path[-1]] = text
            continue
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        node[path[-1]] = "" if value is None and text == "" else value
    return raw, sources


def _describe(
    error: ValidationError, source: str, sources: Mapping[tuple[str, ...], str] | None = None
) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    loc = tuple(str(p) for p in first["loc"])
    for end in range(len(loc), 0, -1):  # a value from the environment: name the variable
        if sources and loc[:end] in sources:
            source = f"environment {sources[loc[:end]]}"
            break
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"].startswith("value_error"):
        message = message.removeprefix("Value error, ")
    elif "secret" not in key:  # a secret is never quoted back, not even a malformed one
        message = f"{message} (got {first.get('input')!r})"
    return f"{source}: {key}: {message}"


def _drop_removed_keys(raw: dict[str, Any], source: str) -> None:
    for (section, key), why in _REMOVED_KEYS.items():
        values = raw.get(section)
        if isinstance(values, dict) and key in values:
            del values[key]
            log.warning("%s: %s.%s is ignored: %s; remove it", source, section, key, why)


def load_settings(path: Path | str | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, override from the environment and validate; raise ConfigError naming the key."""
    environ = os.environ if environ is None else environ
    raw: Any = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{source}: not valid YAML{where}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections")
    raw, sources = _env_overrides(raw, environ)
    _drop_removed_keys(raw, source)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, sources)) from None
    if not settings.auth.jwt_secret and not settings.auth.jwt_public_key:
        raise ConfigError(f"{source}: auth.jwt_secret: set a secret or auth.jwt_public_key")
    problem = auth_key_problem(settings.auth)
    if problem is not None:
        raise ConfigError(f"{source}: {problem}")
    if "*" in settings.server.cors_origins:
        raise ConfigError(
            f"{source}: server.cors_origins: '*' is refused (credentials are sent); list origins"
        )
    problem = metrics_exposure_problem(settings)
    if problem is not None:
        raise ConfigError(f"{source}: {problem}")
    if settings.database.pool_min > settings.database.pool_max:
        raise ConfigError(f"{source}: database.pool_min: larger than database.pool_max")
    return settings
