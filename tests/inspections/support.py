"""Inspection test helpers: a drawn signature, a phone photo with metadata, the answered checklist of a unit."""

from __future__ import annotations

import base64
import io
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp

from tests.support import Api


def signature() -> str:
    """A PNG data URL of a drawn stroke (transparent background), as the phone's canvas exports it."""
    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (480, 180), (0, 0, 0, 0))
    ImageDraw.Draw(im).line([(30, 120), (120, 40), (220, 140), (320, 50), (440, 110)], fill=(0, 0, 0, 255), width=5)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def phone_jpeg(color: tuple[int, int, int] = (180, 40, 30), size: tuple[int, int] = (640, 480)) -> bytes:
    """A JPEG as a phone writes it: EXIF with the camera model and GPS position, a comment."""
    from PIL import Image

    im = Image.new("RGB", size, color)
    exif = Image.Exif()
    exif[0x0110] = "PhoneModel-X"  # Model
    exif[0x8825] = {1: "N", 2: (24.0, 49.0, 12.0), 3: "E", 4: (108.0, 15.0, 0.0)}  # GPSInfo
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, comment=b"secret comment")
    return buf.getvalue()


async def send_photo(api: Api, unit_id: str, data: bytes, *, client_id: str | None = None,
                     taken_at: datetime | None = None, lat: float | None = 24.82, lon: float | None = 108.25,
                     **extra: str) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("unit_id", unit_id)
    form.add_field("client_id", client_id or uuid.uuid4().hex)
    form.add_field("taken_at", (taken_at or datetime(2026, 11, 10, 2, 5, tzinfo=UTC)).isoformat())
    if lat is not None and lon is not None:
        form.add_field("lat", str(lat))
        form.add_field("lon", str(lon))
    for k, v in extra.items():
        form.add_field(k, v)
    form.add_field("files", data, filename="IMG_0001.jpg", content_type="image/jpeg")
    async with api.http.post(api.base + "/api/inspection-photos", data=form,
                             headers={"X-CSRF-Token": api.csrf or ""}) as resp:
        try:
            return resp.status, await resp.json()
        except Exception:
            return resp.status, await resp.text()


async def checklist(api: Api, unit_id: str, kind: str = "daily") -> dict[str, Any]:
    return dict((await api.get(f"/api/units/{unit_id}/inspection?kind={kind}"))["checklist"])


def body(cl: dict[str, Any], unit_id: str, *, kind: str = "daily", fails: dict[str, str] | None = None,
         key: str | None = None, photos: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """Every item of the checklist answered: those in `fails` failed with their note, the rest passed."""
    fails = fails or {}
    items = [{"item_id": i["id"], "result": "fail" if i["id"] in fails else "pass", "note": fails.get(i["id"], "")}
             for i in cl["items"]]
    return {"unit_id": unit_id, "kind": kind, "items": items, "idempotency_key": key or uuid.uuid4().hex,
            "signature": signature(), "signer_name": "韦保安", "checklist_version": cl["version"],
            "lat": 24.8201, "lon": 108.2502, "started_at": "2026-11-10T10:00:00+08:00", "photos": photos or [],
            **extra}


async def inspect(api: Api, unit_id: str, *, kind: str = "daily", fails: dict[str, str] | None = None,
                  **extra: Any) -> dict[str, Any]:
    """A submitted inspection (201)."""
    status, answer = await api.request("POST", "/api/inspections",
                                       body(await checklist(api, unit_id, kind), unit_id, kind=kind, fails=fails,
                                            **extra))
    assert status == 201, answer
    return dict(answer)
