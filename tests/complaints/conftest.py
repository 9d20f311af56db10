"""Complaint tests: the real app on SQLite and PostgreSQL with two stations under one brigade, an officer of each,
two village/community fire assistants and the 96119 hotline's signing secret."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from config.schema import FirelinkConfig
from ingest.signing import SIGNATURE_HEADER, sign
from tests.support import TEST_USERS, Api, RunningApp, _hashed, base_config, running_app

HOTLINE_SECRET = "test-hotline-secret"
ORGS = [{"id": "city", "name": "市公安局", "level": "city"},
        {"id": "brigade", "name": "环江分局", "level": "brigade", "parent": "city"},
        {"id": "st-test", "name": "测试派出所", "level": "station", "parent": "brigade"},
        {"id": "st-east", "name": "城东派出所", "level": "station", "parent": "brigade"}]
UNITS = [
    {"id": "school-1", "name": "第一小学", "category": "学校", "address": "城北路18号", "lat": 24.82, "lon": 108.25,
     "contact_name": "韦保安", "contact_phone": "13800000001",
     "devices": [{"id": "btn-1", "heartbeat_interval_s": 60}]},
    {"id": "hotel-1", "name": "环江宾馆", "category": "宾馆/旅馆", "address": "解放路66号",
     "contact_name": "蒙经理", "contact_phone": "13800000002"},
    {"id": "east-market", "name": "城东农贸市场", "category": "商场/市场", "address": "东兴街3号", "lat": 24.90,
     "lon": 108.40, "station": "st-east"},
]
EXTRA_USERS = {"east": {"role": "duty_officer", "org": "st-east"}, "grid": {"role": "assistant"},
               "grid2": {"role": "assistant"}}


def config(db_url: str, **overrides: Any) -> FirelinkConfig:
    users = [{"username": name, "password_hash": _hashed(f"{name}-pw"), **extra}
             for name, extra in {**TEST_USERS, **EXTRA_USERS}.items()]
    complaints = {"hotline": {"secret": HOTLINE_SECRET}, "per_address_per_hour": 1000, "per_device_per_hour": 1000,
                  **overrides.pop("complaints", {})}
    units = overrides.pop("units", UNITS)
    return base_config(db_url, None, organisations=ORGS, units=units, users=users, complaints=complaints,
                       **overrides)


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[RunningApp]:
    async with running_app(config(db_url), mqtt=False) as running:
        yield running


async def login(app: RunningApp, users: dict[str, Api], name: str) -> Api:
    api = Api(app.url)
    users[name] = api  # closed by the `users` fixture
    await api.login(name, f"{name}-pw")
    return api


def jpeg_with_gps(size: tuple[int, int] = (640, 480), trailer: bytes = b"") -> bytes:
    """A JPEG carrying EXIF with a GPS position, a camera model and a comment, plus `trailer` after the image."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0110] = "SecretPhone 9"  # Model
    exif[0x8825] = {1: "N", 2: (24.0, 49.0, 43.0), 3: "E", 4: (108.0, 15.0, 30.0)}  # GPS IFD
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 60, 30)).save(buf, "JPEG", exif=exif.tobytes(), comment=b"shot at home")
    return buf.getvalue() + trailer


async def post_form(http: aiohttp.ClientSession, url: str, fields: dict[str, str],
                    photo: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """multipart/form-data as the report page's FormData sends it: (status, JSON body, response headers)."""
    form = aiohttp.FormData()
    for k, v in fields.items():
        form.add_field(k, v)
    if photo is not None:
        form.add_field("photo", photo, filename="IMG_0001.jpg", content_type="image/jpeg")
    async with http.post(url, data=form, headers=headers or {}) as resp:
        text = await resp.text()
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            body = text
        return resp.status, body, resp.headers


def signed(body: dict[str, Any] | bytes, secret: str = HOTLINE_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return raw, {SIGNATURE_HEADER: sign(secret, raw), "Content-Type": "application/json"}
