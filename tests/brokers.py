"""The brokers the cluster tests use: Redis and RabbitMQ on 127.0.0.1 (TIFFIN_TEST_REDIS and
TIFFIN_TEST_AMQP override). A test that needs one is skipped, saying so, only where it is absent."""

from __future__ import annotations

import os
import socket
import uuid
from functools import cache
from urllib.parse import urlsplit

import pytest

REDIS_URL = os.environ.get("TIFFIN_TEST_REDIS", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("TIFFIN_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


@cache
def _unreachable(url: str) -> str | None:
    parts = urlsplit(url)
    default = 6379 if parts.scheme.startswith("redis") else 5672
    address = (parts.hostname or "127.0.0.1", parts.port or default)
    try:
        with socket.create_connection(address, timeout=2):
            return None
    except OSError as exc:
        return f"{address[0]}:{address[1]}: {exc.strerror or exc}"


def needs(url: str) -> pytest.MarkDecorator:
    """Skip where this broker cannot be reached, with the reason in the skip message."""
    kind = "Redis" if url.startswith("redis") else "RabbitMQ"
    problem = _unreachable(url)
    return pytest.mark.skipif(
        problem is not None, reason=f"{kind} not reachable at {problem} (set {_variable(url)})"
    )


def _variable(url: str) -> str:
    return "TIFFIN_TEST_REDIS" if url.startswith("redis") else "TIFFIN_TEST_AMQP"


# Both brokers, for tests that must hold on either.
BOTH = [
    pytest.param(REDIS_URL, id="redis", marks=needs(REDIS_URL)),
    pytest.param(AMQP_URL, id="rabbitmq", marks=needs(AMQP_URL)),
]


def cluster_name() -> str:
    """Channels and keys of one test's nodes: other tests (and other checkouts) on the same
    broker never hear them."""
    return f"tiffin_test_{uuid.uuid4().hex[:12]}"
