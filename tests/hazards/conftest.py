"""Hazard tests: the real app (no MQTT needed) with the hazard service installed, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

from config.schema import FirelinkConfig
from tests.support import Api, RunningApp, base_config, running_app


@contextlib.asynccontextmanager
async def hazard_app(cfg: FirelinkConfig, **kwargs: Any) -> AsyncIterator[RunningApp]:
    async with running_app(cfg, mqtt=False, **kwargs) as app:
        yield app


def config(db_url: str, **overrides: Any) -> FirelinkConfig:
    return base_config(db_url, None, **overrides)


def jpeg(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


async def upload(api: Any, path: str, files: list[tuple[str, bytes, str]], **fields: str) -> tuple[int, Any]:
    """multipart/form-data POST with the session's CSRF header (as the browser's FormData does)."""
    import aiohttp

    form = aiohttp.FormData()
    for k, v in fields.items():
        form.add_field(k, v)
    for name, data, ctype in files:
        form.add_field("files", data, filename=name, content_type=ctype)
    async with api.http.post(api.base + path, data=form, headers={"X-CSRF-Token": api.csrf or ""}) as resp:
        try:
            return resp.status, await resp.json()
        except Exception:
            return resp.status, await resp.text()


async def login(base: str, name: str) -> Api:
    """A logged-in API client for one of the test config's users (password `{name}-pw`)."""
    api = Api(base)
    await api.login(name, f"{name}-pw")
    return api


async def wait_status(api: Api, hazard_id: int, status: str, timeout: float = 8) -> dict[str, Any]:
    """The hazard once its status is `status` (set by the deadline scheduler in the background)."""
    async def go() -> dict[str, Any]:
        while True:
            h = await api.get(f"/api/hazards/{hazard_id}")
            if h["status"] == status:
                return h
            await asyncio.sleep(0.05)
    return await asyncio.wait_for(go(), timeout)
