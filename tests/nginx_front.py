"""Debian's nginx, run by a test with docs/nginx.conf, in front of real `tiffin-rt serve` nodes.

nginx is a child process of the test: `daemon off`, a temporary `-p` prefix holding its
main config, pid, temp directories and logs, listening on 127.0.0.1 only. The site config is
docs/nginx.conf itself with the node ports, the listen address and the access log path
substituted (a change of shape in that file fails here, loudly, instead of testing something
else). Clients pick their source address in 127.0.0.0/8 to play different users: nginx hashes
on it, and its access log says which node each address reaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS_CONFIG = REPO / "docs" / "nginx.conf"
NGINX = "/usr/sbin/nginx"

_UPSTREAM_SERVER = re.compile(r"^(\s*)server 127\.0\.0\.1:\d+( [^;]*)?;\n", re.MULTILINE)
_LISTEN = re.compile(r"^(\s*)listen 80;$", re.MULTILINE)
_ACCESS_LOG = re.compile(
    r"^(\s*)access_log /var/log/nginx/tiffin_rt\.access\.log tiffin_rt;$", re.M
)
_LOG_LINE = re.compile(r"^(\S+) .* upstream=(.*)$")


def nginx_program() -> str:
    """Debian's nginx; `make test` installs it where missing (CI runs as root)."""
    program = shutil.which("nginx") or NGINX
    if not Path(program).exists():
        pytest.skip(
            "nginx is not installed and could not be: `make test` installs Debian's nginx with"
            " apt-get, which needs root (or sudo) and a package mirror"
        )
    return program


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def site_config(upstream_ports: list[int], listen_port: int, access_log: Path) -> str:
    """docs/nginx.conf with these node ports, listen address and access log."""
    text = DOCS_CONFIG.read_text()
    servers = list(_UPSTREAM_SERVER.finditer(text))
    assert len(servers) >= 2, "docs/nginx.conf: no `server 127.0.0.1:PORT ...;` lines in upstream"
    first = servers[0]
    indent, options = first[1], first[2] or ""
    lines = "".join(f"{indent}server 127.0.0.1:{port}{options};\n" for port in upstream_ports)
    text = text[: first.start()] + lines + _UPSTREAM_SERVER.sub("", text[first.start() :])
    text, listens = _LISTEN.subn(rf"\g<1>listen 127.0.0.1:{listen_port};", text)
    assert listens == 1, "docs/nginx.conf: expected one `listen 80;`"
    text, logs = _ACCESS_LOG.subn(rf"\g<1>access_log {access_log} tiffin_rt;", text)
    assert logs == 1, "docs/nginx.conf: expected one tiffin_rt access_log"
    return text


def main_config(prefix: Path, site: Path, worker_connections: int = 1024) -> str:
    """The main context Debian's /etc/nginx/nginx.conf would give, in the test's prefix.

    Each proxied client holds two of a worker's connections (its own and the node's).
    """
    temps = "\n".join(
        f"    {name}_temp_path {prefix / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "daemon off;\n"
        "worker_processes 1;\n"
        f"worker_rlimit_nofile {2 * worker_connections + 64};\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} info;\n"
        f"events {{ worker_connections {worker_connections}; }}\n"
        "http {\n"
        f"{temps}\n"
        f"    include {site};\n"
        "}\n"
    )


@dataclass
class Nginx:
    """A running nginx: its URL, its access log, and which node each client address reaches."""

    url: str
    access_log: Path
    error_log: Path
    node_of: dict[str, int] = field(default_factory=dict)

    def log_lines(self) -> list[tuple[str, str]]:
        """(client address, upstream addresses) of every request logged so far."""
        found = []
        for line in self.access_log.read_text().splitlines():
            match = _LOG_LINE.match(line)
            if match:
                found.append((match[1], match[2]))
        return found

    async def map_addresses(self, ports: list[int], per_node: int) -> dict[int, list[str]]:
        """Client source addresses (127.0.0.N) reaching each node, `per_node` of each."""
        wanted: dict[int, list[str]] = {port: [] for port in ports}
        for last in range(2, 250):
            if all(len(found) >= per_node for found in wanted.values()):
                return wanted
            address = f"127.0.0.{last}"
            async with (
                client_session(address) as http,
                http.get(f"{self.url}/healthz") as response,
            ):
                assert response.status == 200, await response.text()
            port = await self._upstream_of(address)
            self.node_of[address] = port
            if len(wanted[port]) < per_node:
                wanted[port].append(address)
        raise AssertionError(f"nginx spread 248 addresses unevenly: {wanted}")

    async def _upstream_of(self, address: str) -> int:
        for _ in range(200):
            for client, upstream in reversed(self.log_lines()):
                if client == address:
                    return int(upstream.rsplit(":", 1)[1])
            await asyncio.sleep(0.01)  # nginx logs a request just after answering it
        raise AssertionError(f"no access log line for {address}")


def client_session(address: str) -> aiohttp.ClientSession:
    """An HTTP client whose connections come from `address` (a user nginx tells apart)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


@contextlib.asynccontextmanager
async def running_nginx(upstream_ports: list[int]) -> AsyncIterator[Nginx]:
    program = nginx_program()
    with tempfile.TemporaryDirectory(prefix="tiffin-nginx-") as tmp:
        prefix = Path(tmp)
        os.chmod(prefix, 0o755)  # workers run as nobody when the test runs as root
        port = free_port()
        access_log = prefix / "access.log"
        site = prefix / "tiffin_rt.conf"
        site.write_text(site_config(upstream_ports, port, access_log))
        conf = prefix / "nginx.conf"
        conf.write_text(main_config(prefix, site))
        error_log = prefix / "error.log"
        process = await asyncio.create_subprocess_exec(
            program,
            "-p",
            str(prefix),
            "-c",
            str(conf),
            "-e",
            str(error_log),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await _wait_listening(port, process, error_log)
            yield Nginx(f"http://127.0.0.1:{port}", access_log, error_log)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()


def _text_of(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def _wait_listening(port: int, process: asyncio.subprocess.Process, log: Path) -> None:
    for _ in range(500):
        if process.returncode is not None:
            stderr = await process.stderr.read() if process.stderr else b""
            errors = _text_of(log)
            raise AssertionError(f"nginx exited: {stderr.decode()}{errors}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError("nginx never listened")


# Behind nginx every client comes from nginx's address: per-IP limits count all of them.
NODE_LIMITS = {"connect_per_ip": "100000/minute", "handshakes_per_ip": "100000/minute"}
