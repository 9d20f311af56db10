"""The fire facilities a unit may have (消防设施), read from a data file (config/unit_facilities.yaml).

A unit's registry entry lists the codes of the facilities it has; the key ones (`qr: true`) get their own QR code
on the unit's printed sheet. The file is data: users edit it without touching code. `resolve()` maps a code, its
Chinese or English name or an alias onto the facility (imports accept any of them).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import Field, model_validator

from config.schema import FirelinkBaseModel
from config.taxonomy import CODE_PATTERN


class Facility(FirelinkBaseModel):
    code: str = Field(..., pattern=CODE_PATTERN, title="Code", description="Stable id of the facility.")
    zh: str = Field(..., min_length=1, max_length=40, title="Chinese name")
    en: str = Field(..., min_length=1, max_length=60, title="English name")
    qr: bool = Field(False, title="Key facility", description="Printed with its own QR code on the unit's sheet.")
    aliases: list[str] = Field(default_factory=list, title="Aliases", description="Other names that mean it.")


class Facilities(FirelinkBaseModel):
    version: int = Field(..., ge=1, title="Version", description="Raised on every edit of the file.")
    facilities: list[Facility] = Field(..., min_length=1, title="Facilities")

    @model_validator(mode="after")
    def _unique(self) -> Facilities:
        seen: dict[str, str] = {}
        for f in self.facilities:
            for name in (f.code, f.zh, f.en, *f.aliases):
                if seen.setdefault(name.casefold(), f.code) != f.code:
                    raise ValueError(f"{name!r} names two facilities ({seen[name.casefold()]}, {f.code})")
        return self

    def by_code(self) -> dict[str, Facility]:
        return {f.code: f for f in self.facilities}

    def resolve(self, name: str) -> Facility | None:
        """The facility whose code, name or alias is `name` (case-insensitive)."""
        key = name.strip().casefold()
        for f in self.facilities:
            if key in (n.casefold() for n in (f.code, f.zh, f.en, *f.aliases)):
                return f
        return None

    def order(self, codes: set[str]) -> list[str]:
        """`codes` in the file's order."""
        return [f.code for f in self.facilities if f.code in codes]


def load_facilities(path: Path | None = None) -> Facilities:
    """The facility list from `path`, or the shipped file."""
    text = (path.read_text(encoding="utf-8") if path is not None
            else resources.files("config").joinpath("unit_facilities.yaml").read_text(encoding="utf-8"))
    return Facilities.model_validate(yaml.safe_load(text))


@cache
def shipped_facilities() -> Facilities:
    return load_facilities()
