"""Several real `tiffin-rt serve` processes on 127.0.0.1 against one test database.

`cluster_nodes` starts them (one config file each, free ports, waits for /readyz) and stops
them all at the end of the test; `broker` sets `cluster.broker` ("" is one node's behaviour:
every process still LISTENs on PostgreSQL, nothing else crosses processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.helpers import make_settings
from tiffin_rt.config import Settings

REPO = Path(__file__).resolve().parents[1]
# A cold start imports everything, migrates (under an advisory lock) and connects the listener.
READY_TIMEOUT = 30.0
# Past `server.shutdown_timeout`, a node that has not exited after SIGTERM is killed.
EXIT_GRACE = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Node:
    """One `tiffin-rt serve` process; its stdout and stderr go to `log_path`."""

    name: str
    port: int
    config: Path
    log_path: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class Cluster:
    """Nodes sharing one database (and one broker when `broker` is set)."""

    dsn: str
    workdir: Path
    broker: str = ""
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    name: str = field(default_factory=lambda: f"tiffin_test_{uuid.uuid4().hex[:12]}")

    @property
    def settings(self) -> Settings:
        """The nodes' settings (for minting tokens; the port is each node's own)."""
        sections = dict(self.sections)
        if self.broker:
            # Its own channels and keys: other tests on the same broker never hear these nodes.
            cluster = {"broker": self.broker, "name": self.name}
            sections["cluster"] = cluster | sections.get("cluster", {})
        sections.setdefault("logging", {"level": "INFO"})
        return make_settings(self.dsn, **sections)

    def __getitem__(self, index: int) -> Node:
        return self.nodes[index]

    def __len__(self) -> int:
        return len(self.nodes)

    async def add(self, count: int = 1, **sections: dict[str, Any]) -> list[Node]:
        """Start `count` more nodes at once (keyword sections override this cluster's settings
        for them only) and wait until each answers /readyz."""
        started = await asyncio.gather(*(self._start_one(sections) for _ in range(count)))
        return list(started)

    async def _start_one(self, overrides: dict[str, dict[str, Any]]) -> Node:
        for attempt in range(3):
            node = self._prepare(overrides)
            await self._spawn(node)
            try:
                await self._wait_ready(node)
            except _PortTaken:
                if attempt == 2:
                    raise
                continue
            self.nodes.append(node)
            return node
        raise AssertionError("unreachable")

    def _prepare(self, overrides: dict[str, dict[str, Any]]) -> Node:
        name = f"node{len(self.nodes) + 1}-{os.urandom(2).hex()}"
        raw = self.settings.model_dump(mode="json")
        for section, values in overrides.items():
            raw.setdefault(section, {}).update(values)
        port = free_port()
        raw["server"].update({"host": "127.0.0.1", "port": port})
        config = self.workdir / f"{name}.yaml"
        config.write_text(yaml.safe_dump(raw, sort_keys=False))
        return Node(name, port, config, self.workdir / f"{name}.log")

    async def _spawn(self, node: Node) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIFFIN_RT__")}
        with node.log_path.open("ab") as log:
            node.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tiffin_rt",
                "serve",
                "--config",
                str(node.config),
                env=env,
                cwd=REPO,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

    async def _wait_ready(self, node: Node) -> None:
        assert node.process is not None
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            while True:
                if node.process.returncode is not None:
                    text = node.output()
                    if "is already in use" in text:
                        raise _PortTaken
                    raise AssertionError(f"{node.name} exited before it was ready:\n{text}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{node.url}/readyz") as response:
                        if response.status == 200:
                            return
                if asyncio.get_running_loop().time() > deadline:
                    await self._stop(node, signal.SIGKILL)
                    raise AssertionError(
                        f"{node.name} not ready in {READY_TIMEOUT:.0f} s:\n{node.output()}"
                    )
                await asyncio.sleep(0.1)

    async def health(self, node: Node) -> dict[str, Any]:
        """The node's /healthz document (its `cluster` part tells the broker's state)."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            http.get(f"{node.url}/healthz") as response,
        ):
            document: dict[str, Any] = await response.json()
            return document

    async def terminate(self, node: Node) -> int:
        """SIGTERM, as an orchestrator stops a node; returns the exit status."""
        return await self._stop(node, signal.SIGTERM)

    async def kill(self, node: Node) -> int:
        """SIGKILL: the node dies without a word to anyone (a crashed host)."""
        return await self._stop(node, signal.SIGKILL)

    async def restart(self, node: Node) -> Node:
        """Start a stopped node again on its port, with its config."""
        assert not node.running, f"{node.name} is still running"
        await self._spawn(node)
        await self._wait_ready(node)
        return node

    async def _stop(self, node: Node, signum: signal.Signals) -> int:
        process = node.process
        if process is None:
            return 0
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)
            try:
                await asyncio.wait_for(process.wait(), EXIT_GRACE)
            except TimeoutError:
                process.kill()
                await process.wait()
        assert process.returncode is not None
        return process.returncode

    async def close(self) -> None:
        await asyncio.gather(*(self.terminate(node) for node in self.nodes if node.running))

    def logs(self) -> str:
        """Every node's output, for a failing test's report."""
        return "\n".join(f"--- {node.name} ({node.url})\n{node.output()}" for node in self.nodes)


class _PortTaken(Exception):
    """Another process took the free port between the probe and the bind: try another."""


StartCluster = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def cluster_nodes(dsn: str, tmp_path: Path) -> AsyncIterator[StartCluster]:
    """`await cluster_nodes(3, broker="redis://...", limits={...})`: started and ready nodes.

    All stopped (SIGTERM, then SIGKILL past EXIT_GRACE) when the test ends. Each node's output
    stays in tmp_path (<name>.log); `cluster.logs()` makes a good assertion message.
    """
    clusters: list[Cluster] = []

    async def start(count: int = 3, *, broker: str = "", **sections: dict[str, Any]) -> Cluster:
        cluster = Cluster(dsn, tmp_path, broker=broker, sections=sections)
        clusters.append(cluster)
        await cluster.add(count)
        return cluster

    try:
        yield start
    finally:
        await asyncio.gather(*(cluster.close() for cluster in clusters))
