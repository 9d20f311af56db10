"""Images of an inspection, judged by their bytes and re-encoded with Pillow before anything stores them.

A photo is decoded (JPEG, PNG or WebP, within a pixel budget), turned upright by its EXIF orientation, shrunk to
at most PHOTO_MAX_SIDE pixels, stamped along its bottom edge with the time and place the phone gave, and written
again as a fresh JPEG: no EXIF, GPS tags, ICC profile, comments or trailing bytes survive. The drawn signature is a
small PNG, re-encoded the same way. Both are CPU work: callers run them on a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatch.errors import BadRequest
from dispatch.hazard_uploads import sniff_image
from dispatch.hazards import CHINA_TZ

PHOTO_MAX_SIDE = 2048
MAX_PIXELS = 50_000_000  # a 12 MP phone photo is 12,000,000; more is refused before decoding
SIGNATURE_MAX_BYTES = 32 * 1024
SIGNATURE_MAX_SIDE = 1600
JPEG_QUALITY = 85


@dataclass(frozen=True, slots=True)
class Stamp:
    """When and where the phone says the photo was taken (None: it did not say)."""

    taken_at: datetime | None
    lat: float | None
    lon: float | None

    def text(self) -> str:
        when = self.taken_at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S +08") if self.taken_at else "time ?"
        if self.lat is None or self.lon is None:
            return f"{when}  GPS ?"
        return f"{when}  {abs(self.lat):.5f}{'N' if self.lat >= 0 else 'S'} {abs(self.lon):.5f}" \
               f"{'E' if self.lon >= 0 else 'W'}"


@dataclass(frozen=True, slots=True)
class Photo:
    jpeg: bytes
    width: int
    height: int


def reencode_photo(data: bytes, stamp: Stamp) -> Photo:
    """The photo as a fresh, stamped JPEG without metadata; BadRequest when it is no image or too large."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    if not data:
        raise BadRequest("the photo is empty")
    if sniff_image(data) is None:
        raise BadRequest("the photo is not a JPEG, PNG or WebP image")
    with Image.open(io.BytesIO(data)) as im:
        if im.width * im.height > MAX_PIXELS:
            raise BadRequest(f"the photo has {im.width}×{im.height} pixels; at most {MAX_PIXELS:,} are accepted")
        upright = ImageOps.exif_transpose(im).convert("RGB")
    upright.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))
    clean = Image.new("RGB", upright.size)  # a new image: nothing of the original's info travels along
    clean.paste(upright)
    size = max(12, clean.height // 36)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(clean)
    band = size + size // 2
    draw.rectangle((0, clean.height - band, clean.width, clean.height), fill=(0, 0, 0))
    draw.text((size // 3, clean.height - band + size // 4), stamp.text(), fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    clean.save(out, "JPEG", quality=JPEG_QUALITY)
    return Photo(out.getvalue(), clean.width, clean.height)


def signature_png(value: str) -> bytes:
    """The drawn signature: a PNG given as a data URL (or bare base64), within the size limits, re-encoded."""
    from PIL import Image

    text = value.strip()
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if head != "data:image/png;base64":
            raise BadRequest("signature must be a PNG data URL (data:image/png;base64,...)")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("signature is not valid base64") from None
    if not raw:
        raise BadRequest("signature is empty")
    if len(raw) > SIGNATURE_MAX_BYTES:
        raise BadRequest(f"signature larger than {SIGNATURE_MAX_BYTES} bytes")
    if sniff_image(raw) != "image/png":
        raise BadRequest("signature is not a PNG image")
    with Image.open(io.BytesIO(raw)) as im:
        if max(im.size) > SIGNATURE_MAX_SIDE:
            raise BadRequest(f"signature larger than {SIGNATURE_MAX_SIDE} pixels on a side")
        ink = im.convert("RGBA")
    bands: Any = ink.getextrema()  # ((min, max) per band) for an RGBA image
    if all(lo == hi for lo, hi in bands):  # one colour (or fully transparent): nothing was drawn
        raise BadRequest("signature is blank")
    clean = Image.new("RGBA", ink.size)
    clean.paste(ink)
    out = io.BytesIO()
    clean.save(out, "PNG")
    return out.getvalue()
