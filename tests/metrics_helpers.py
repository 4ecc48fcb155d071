"""Reading GET /metrics in tests: Prometheus's own parser, samples by name and labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import socketio
from prometheus_client.parser import text_string_to_metric_families

METRICS_ON: dict[str, Any] = {"enabled": True}


@dataclass(frozen=True)
class Scrape:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    # Every sample name the server declared, also of families with no sample yet.
    declared: frozenset[str] = frozenset()

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when the server has not exported it (nothing counted yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples} | self.declared


async def scrape(url: str, token: str | None = None) -> Scrape:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics", headers=headers) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    declared: set[str] = set()
    for family in text_string_to_metric_families(text):
        declared.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return Scrape(samples, frozenset(declared))


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}


async def polling_client(
    url: str, tok: str, namespace: str = "/notifications"
) -> socketio.AsyncClient:
    """A python-socketio client that stays on long-polling."""
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        url, namespaces=[namespace], auth={"token": tok}, transports=["polling"], wait_timeout=5
    )
    return client
