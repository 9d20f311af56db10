"""The two-level classification of units (class → unit type), read from a data file (config/unit_taxonomy.yaml).

A unit's type decides its inspection checklist; the class groups types in lists and rankings. The file is data:
users edit it without touching code. `resolve()` maps a type code, its Chinese name or an alias (an older
`category:` text) onto the type.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import Field, model_validator

from config.schema import FirelinkBaseModel

CODE_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"


class UnitType(FirelinkBaseModel):
    code: str = Field(..., pattern=CODE_PATTERN, title="Code", description="Stable id of the type.")
    zh: str = Field(..., min_length=1, max_length=40, title="Chinese name")
    en: str = Field(..., min_length=1, max_length=60, title="English name")
    aliases: list[str] = Field(default_factory=list, title="Aliases",
                               description="Other names (older category texts) that mean this type.")


class UnitClass(FirelinkBaseModel):
    code: str = Field(..., pattern=CODE_PATTERN, title="Code")
    zh: str = Field(..., min_length=1, max_length=40, title="Chinese name")
    en: str = Field(..., min_length=1, max_length=60, title="English name")
    types: list[UnitType] = Field(..., min_length=1, title="Unit types")


class Taxonomy(FirelinkBaseModel):
    version: int = Field(..., ge=1, title="Version", description="Raised on every edit of the file.")
    classes: list[UnitClass] = Field(..., min_length=1, title="Classes")

    @model_validator(mode="after")
    def _unique(self) -> Taxonomy:
        seen: dict[str, str] = {}
        for c in self.classes:
            for t in c.types:
                for name in (t.code, t.zh, *t.aliases):
                    if seen.setdefault(name, t.code) != t.code:
                        raise ValueError(f"{name!r} names two unit types ({seen[name]}, {t.code})")
        return self

    def types(self) -> dict[str, tuple[UnitClass, UnitType]]:
        return {t.code: (c, t) for c in self.classes for t in c.types}

    def resolve(self, name: str) -> UnitType | None:
        """The type whose code, Chinese name or alias is `name`."""
        for c in self.classes:
            for t in c.types:
                if name in (t.code, t.zh, *t.aliases):
                    return t
        return None

    def class_of(self, type_code: str) -> UnitClass | None:
        found = self.types().get(type_code)
        return found[0] if found else None


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """The taxonomy from `path`, or the shipped file."""
    text = (path.read_text(encoding="utf-8") if path is not None
            else resources.files("config").joinpath("unit_taxonomy.yaml").read_text(encoding="utf-8"))
    return Taxonomy.model_validate(yaml.safe_load(text))


@cache
def shipped_taxonomy() -> Taxonomy:
    return load_taxonomy()
