"""Logging setup shared by every command."""

from __future__ import annotations

import logging


def configure(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # paho/amqtt/aiohttp access logs are noise at INFO in a command room.
    for noisy in ("aiohttp.access", "amqtt", "transitions", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
