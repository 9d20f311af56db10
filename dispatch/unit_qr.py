"""A unit's printable QR sheet: one code for the unit and one per key facility it has (config/unit_facilities.yaml,
`qr: true`), each encoding `{public_url}/q/{unit_id}[/{facility}]`. Scanned, that address sends a logged-in officer to
the unit (inspection) and anyone else to the public complaint form (the console's /q route).

The codes are SVG (segno) embedded in HTML that WeasyPrint lays out like the other documents
(dispatch.documents.html_to_pdf; the console renders it in its heavy-work pool).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import quote

import segno
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from config.facilities import shipped_facilities
from dispatch.documents import TEMPLATES, cn_date


@cache
def _env() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["j2", "html"]),
                       undefined=StrictUndefined)


def qr_url(public_url: str, unit_id: str, facility: str | None = None) -> str:
    """What a code encodes: the unit's (or one of its facilities') scan address."""
    base = f"{public_url.rstrip('/')}/q/{quote(unit_id, safe='')}"
    return f"{base}/{quote(facility, safe='')}" if facility else base


def qr_svg(text: str) -> str:
    """A QR code as an SVG data URI (error correction M: a smudged or scratched sticker still reads)."""
    uri: str = segno.make(text, error="m", micro=False).svg_data_uri(scale=4, border=4)
    return uri


def key_facilities(codes: list[str]) -> list[tuple[str, str]]:
    """(code, Chinese name) of the unit's facilities that get their own code, in the data file's order."""
    known = shipped_facilities()
    return [(f.code, f.zh) for f in known.facilities if f.qr and f.code in set(codes)]


def qr_sheet_html(unit: dict[str, Any], public_url: str, authority: str, printed: datetime) -> str:
    """`unit`: the registry view (dispatch.unit_views) of the unit."""
    unit_url = qr_url(public_url, unit["id"])
    cards = [{"name": name, "url": (url := qr_url(public_url, unit["id"], code)), "qr": qr_svg(url)}
             for code, name in key_facilities(list(unit.get("facilities") or []))]
    return _env().get_template("unit_qr.html.j2").render(
        unit=unit, unit_url=unit_url, unit_qr=qr_svg(unit_url), cards=cards, authority=authority,
        printed=cn_date(printed))
