"""Uploaded images: judged by their bytes (never by the name or the declared type), within the configured
limits, and stored as a hazard's evidence with their SHA-256 written into the record."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from config.hazards import HazardsConfig
from dispatch.actor import Actor
from dispatch.errors import BadRequest
from dispatch.hazard_context import HazardContext
from dispatch.hazard_models import Hazard, HazardEvidence
from dispatch.hazards import EVIDENCE_ADDED
from dispatch.writer import Tx
from ingest.integrity import sha256_bytes

IMAGE_TYPES = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n", "image/webp": b"RIFF"}


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class EvidenceGroup:
    """Files stored together as one evidence entry (one stage, one note)."""

    stage: str
    files: Sequence[Upload]
    note: str = ""


def magic_type(data: bytes) -> str | None:
    """The image type the bytes start as (JPEG, PNG or WebP), before anything decodes them."""
    kind = None
    for ctype, magic in IMAGE_TYPES.items():
        if data.startswith(magic) and (ctype != "image/webp" or data[8:12] == b"WEBP"):
            kind = ctype
    return kind


def sniff_image(data: bytes) -> str | None:
    """The image type by its bytes (never by the name or the declared type), verified by Pillow."""
    kind = magic_type(data)
    if kind is None:
        return None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except Exception:
        return None
    return kind


def check_images(files: Sequence[Upload], hcfg: HazardsConfig) -> list[tuple[Upload, str]]:
    """Each file with its sniffed type; BadRequest for too many, too large, empty or not an image."""
    if len(files) > hcfg.max_files_per_upload:
        raise BadRequest(f"at most {hcfg.max_files_per_upload} files per upload")
    out = []
    for f in files:
        if len(f.data) > hcfg.max_upload_bytes:
            raise BadRequest(f"{f.filename or 'file'} is larger than {hcfg.max_upload_bytes} bytes")
        if not f.data:
            raise BadRequest(f"{f.filename or 'file'} is empty")
        kind = sniff_image(f.data)
        if kind is None:
            raise BadRequest(f"{f.filename or 'file'} is not a JPEG, PNG or WebP image")
        out.append((f, kind))
    return out


async def store_evidence(ctx: HazardContext, tx: Tx, h: Hazard, files: Sequence[Upload], stage: str, note: str,
                         actor: Actor, now: datetime) -> list[HazardEvidence]:
    """The files as evidence rows of `h` and one `hazard.evidence_added` entry with their SHA-256 (none: nothing)."""
    rows = []
    for f, kind in check_images(files, ctx.hcfg):
        row = HazardEvidence(hazard_id=h.id, stage=stage, content_type=kind, filename=f.filename[:200],
                             size=len(f.data), sha256=sha256_bytes(f.data), data=f.data,
                             note=note, uploaded_at=now, uploaded_by=actor.username)
        tx.session.add(row)
        rows.append(row)
    if rows:
        await tx.session.flush()
        ctx.record(tx, h, EVIDENCE_ADDED, actor, now,
                   {"stage": stage, "files": [{"evidence_id": r.id, "sha256": r.sha256, "size": r.size,
                                               "content_type": r.content_type} for r in rows]})
    return rows
