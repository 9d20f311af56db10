"""A reporter's photo, judged by its bytes and re-encoded before anything keeps it.

The bytes must start as a JPEG, PNG or WebP and declare at most `max_pixels` (checked from the header, before
anything is decoded: a decompression bomb is refused cheaply). The picture is then decoded (a large JPEG at a
reduced scale), turned upright by its EXIF orientation, flattened to RGB, shrunk to `max_side` and written as a
new baseline JPEG. Nothing of the upload survives but its pixels: no EXIF (GPS, camera, time), no XMP or ICC
profile, no comment, nothing appended after the image. CPU-bound: call it on a worker thread.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

from dispatch.errors import BadRequest
from dispatch.hazard_uploads import magic_type
from ingest.integrity import sha256_bytes

FORMATS = ("JPEG", "PNG", "WEBP")
QUALITY = 85


@dataclass(frozen=True, slots=True)
class Photo:
    data: bytes  # a JPEG with no metadata
    width: int
    height: int
    sha256: str
    content_type: str = "image/jpeg"


def reencode(data: bytes, *, max_pixels: int, max_side: int) -> Photo:
    """The photo as stored; BadRequest when the bytes are not a picture that can be taken."""
    if not data:
        raise BadRequest("the photo is empty")
    if magic_type(data) is None:
        raise BadRequest("the photo is not a JPEG, PNG or WebP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                width, height = im.size
                if width < 1 or height < 1 or width * height > max_pixels:
                    raise BadRequest(f"the photo declares {width}×{height} pixels; at most {max_pixels:,} are taken")
                if im.format == "JPEG":  # decoded at 1/2, 1/4 or 1/8 scale while the longer side stays over half
                    half = max_side / (2 * max(width, height))  # of max_side (the stored size is then at most that)
                    im.draft("RGB", (max(1, int(width * half)), max(1, int(height * half))))
                im.load()
                upright = ImageOps.exif_transpose(im)
                picture = _rgb(upright)
    except BadRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadRequest(f"the photo declares more than {max_pixels:,} pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise BadRequest(f"the photo cannot be read ({type(exc).__name__})") from None
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    # the pixels alone, in a new image: Pillow would write what `info` carries over (a comment, an ICC profile)
    bare = Image.frombytes("RGB", picture.size, picture.tobytes())
    out = io.BytesIO()
    bare.save(out, "JPEG", quality=QUALITY, optimize=True)
    body = out.getvalue()
    return Photo(body, bare.width, bare.height, sha256_bytes(body))


def _rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return im.convert("RGB")
