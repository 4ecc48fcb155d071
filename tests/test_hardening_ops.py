"""Operations hardening: settings the wire can carry, pool faults, readiness, the CLI."""

from __future__ import annotations

from pathlib import Path

import engineio
import pytest

from tests.conftest import StartServer
from tests.helpers import TEST_SECRET, base_url
from tiffin_rt.config import ConfigError, load_settings


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"auth: {{jwt_secret: {TEST_SECRET}}}\n{text}")
    return path


@pytest.mark.parametrize("interval", ["0.5", "1.5", "25.25", "0"])
def test_a_ping_interval_the_handshake_cannot_announce_is_refused(
    tmp_path: Path, interval: str
) -> None:
    path = write_config(tmp_path, f"delivery: {{ping_interval: {interval}}}\n")
    with pytest.raises(ConfigError, match=r"delivery\.ping_interval: a whole number of seconds"):
        load_settings(path, environ={})
    with pytest.raises(ConfigError, match=r"delivery\.ping_interval: a whole number of seconds"):
        load_settings(
            write_config(tmp_path, ""), environ={"TIFFIN_RT__DELIVERY__PING_INTERVAL": interval}
        )


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_real_client_is_told_the_configured_ping_interval(
    start_server: StartServer, transport: str
) -> None:
    server = await start_server(delivery={"ping_interval": 2.0, "ping_timeout": 1.5})
    client = engineio.AsyncClient()
    await client.connect(base_url(server), transports=[transport], engineio_path="socket.io")
    try:
        # what python-engineio's client read from the open packet
        assert (client.ping_interval, client.ping_timeout) == (2.0, 1.5)
    finally:
        await client.disconnect()
