"""In-process MQTT broker (amqtt) for a fresh machine with no broker running.

Production uses Mosquitto or EMQX (deploy/mosquitto/firelink.conf); this
only exists so `make run` works out of the box.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


async def port_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


class EmbeddedBroker:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._broker: Any = None

    async def start(self) -> None:
        from amqtt.broker import Broker  # imported lazily: only needed on a bare machine

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._broker = Broker(config)
        await self._broker.start()
        log.warning("no MQTT broker answered at %s:%s; started an embedded amqtt broker there (not for production)",
                    self.host, self.port)

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()


async def maybe_start(host: str, port: int, mode: str) -> EmbeddedBroker | None:
    if mode != "auto" or host not in LOOPBACK or await port_answers(host, port):
        return None
    broker = EmbeddedBroker(host, port)
    await broker.start()
    return broker
