"""Inspection checklists (消防监督检查 items) per unit type, read from a data file (config/checklists.yaml).

The file is data, versioned as a whole (`version`, raised on every edit): a shared `base` list every unit type
gets, and `lists` of type-specific items, each naming the unit types (codes of config/unit_taxonomy.yaml) it
applies to. A type in no list gets the base list alone (the generic checklist). Each item names the legal clause
it checks (a key of the clause database, `hazards.law_clauses`) and the hazard category a failure creates
(`hazards.categories`); the clause must cover that category. `load_checklists` refuses a file that breaks any of
this with a message naming the file and the item.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from config.hazards import HazardsConfig
from config.schema import FirelinkBaseModel
from config.taxonomy import Taxonomy, shipped_taxonomy

InspectionKind = Literal["daily", "pre_opening", "recheck"]
INSPECTION_KINDS: tuple[InspectionKind, ...] = ("daily", "pre_opening", "recheck")
ITEM_ID_PATTERN = r"^[a-z][a-z0-9_.]{0,63}$"
GENERIC = "通用检查项目"


class ChecklistError(ValueError):
    """The checklists file is unreadable or inconsistent (the message names the file and what is wrong)."""


class ChecklistItem(FirelinkBaseModel):
    id: str = Field(..., pattern=ITEM_ID_PATTERN, title="Id",
                    description="Stable id (unique in the file); inspections store it. Never reuse an id for "
                                "another check.")
    zh: str = Field(..., min_length=1, max_length=200, title="Text (Chinese)")
    en: str = Field(..., min_length=1, max_length=200, title="Text (English)")
    clause: str = Field(..., min_length=1, max_length=40, title="Clause",
                        description="Key of the clause database (hazards.law_clauses) this item checks.")
    category: str = Field(..., min_length=1, max_length=40, title="Hazard category",
                          description="Category (hazards.categories) of the hazard a failure creates.")
    kinds: list[InspectionKind] = Field(default_factory=lambda: list(INSPECTION_KINDS), min_length=1,
                                        title="Inspection kinds", description="Kinds of inspection that ask it.")


class ChecklistList(FirelinkBaseModel):
    name: str = Field(..., min_length=1, max_length=60, title="Name", description="e.g. 学校、幼儿园.")
    types: list[str] = Field(..., min_length=1, title="Unit types", description="Unit type codes it applies to.")
    items: list[ChecklistItem] = Field(..., min_length=1, title="Items", description="Asked after the base list.")


class ChecklistFile(FirelinkBaseModel):
    version: int = Field(..., ge=1, title="Version", description="Raised on every edit of the file.")
    base: list[ChecklistItem] = Field(..., min_length=1, title="Base items",
                                      description="Asked of every unit type (alone for a type without a list).")
    lists: list[ChecklistList] = Field(default_factory=list, title="Type-specific lists")

    @model_validator(mode="after")
    def _unique(self) -> ChecklistFile:
        ids = [i.id for i in self.base] + [i.id for lst in self.lists for i in lst.items]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"item ids used twice: {twice}")
        types = [t for lst in self.lists for t in lst.types]
        twice = sorted({t for t in types if types.count(t) > 1})
        if twice:
            raise ValueError(f"unit types in two lists: {twice}")
        return self


@dataclass(frozen=True, slots=True)
class Checklist:
    """The checklist of one unit type (and kind): the base items, then the type's own."""

    unit_type: str
    version: int
    name: str
    items: tuple[ChecklistItem, ...]

    def item(self, item_id: str) -> ChecklistItem | None:
        return next((i for i in self.items if i.id == item_id), None)


class Checklists:
    """The validated checklists file: the checklist of each unit type."""

    def __init__(self, data: ChecklistFile, hcfg: HazardsConfig, taxonomy: Taxonomy, source: str = "") -> None:
        where = f"checklists file {source}: " if source else "checklists: "
        known_types = taxonomy.types()
        for lst in data.lists:
            unknown = [t for t in lst.types if t not in known_types]
            if unknown:
                raise ChecklistError(f"{where}list {lst.name!r} names unit types {unknown} that are not in the unit "
                                     "taxonomy")
        for item in [*data.base, *(i for lst in data.lists for i in lst.items)]:
            clause = hcfg.clause(item.clause)
            if clause is None:
                raise ChecklistError(f"{where}item {item.id!r} names the clause {item.clause!r}, which is not in the "
                                     "clause database (hazards.law_clauses)")
            if hcfg.category(item.category) is None:
                raise ChecklistError(f"{where}item {item.id!r} names the hazard category {item.category!r}, which is "
                                     "not configured (hazards.categories)")
            if item.category not in clause.covers:
                raise ChecklistError(f"{where}item {item.id!r}: {clause.citation()} ({item.clause}) does not cover "
                                     f"the category {item.category!r}; it covers {clause.covers or 'nothing'}")
        self.data = data
        self.version = data.version
        self._by_type = {t: lst for lst in data.lists for t in lst.types}

    def for_type(self, unit_type: str, kind: InspectionKind | None = None) -> Checklist:
        """The unit type's checklist (the generic one for a type without its own list); only the items `kind`
        asks when given."""
        lst = self._by_type.get(unit_type)
        items = [*self.data.base, *(lst.items if lst is not None else [])]
        if kind is not None:
            items = [i for i in items if kind in i.kinds]
        return Checklist(unit_type, self.version, lst.name if lst is not None else GENERIC, tuple(items))


def parse_checklists(text: str, hcfg: HazardsConfig, taxonomy: Taxonomy | None = None,
                     source: str = "") -> Checklists:
    """Checklists from YAML text, validated against the clause database and the taxonomy (ChecklistError)."""
    where = f"checklists file {source}" if source else "checklists"
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ChecklistError(f"{where} is not valid YAML: {exc}") from None
    try:
        data = ChecklistFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ChecklistError(f"{where}: {at}: {first['msg']}") from None
    return Checklists(data, hcfg, taxonomy or shipped_taxonomy(), source)


def load_checklists(hcfg: HazardsConfig, path: Path | None = None, taxonomy: Taxonomy | None = None) -> Checklists:
    """The checklists of `path`, else of `hazards.checklists_file`, else the shipped file."""
    if path is None and hcfg.checklists_file:
        path = Path(hcfg.checklists_file)
    if path is None:
        return _shipped(hcfg)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ChecklistError(f"checklists file {path} cannot be read: {exc}") from None
    return parse_checklists(text, hcfg, taxonomy, str(path))


def _shipped(hcfg: HazardsConfig) -> Checklists:
    return parse_checklists(_shipped_text(), hcfg, source="config/checklists.yaml")


@cache
def _shipped_text() -> str:
    return resources.files("config").joinpath("checklists.yaml").read_text(encoding="utf-8")
