"""A unit's registry fields (单位档案) as they arrive: one model for the API's bodies and for the rows of an import,
so a unit is checked the same way whichever door it came through.

What a field can be checked against alone is checked here (lengths, ranges, the credit code's check character, the
unit type in the taxonomy, the facilities in their data file); what needs the database or the caller (the station
in the caller's scope, the community officer's account, a credit code used by another unit) is the registry's
(dispatch.registry).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from config.facilities import shipped_facilities
from config.schema import UNIT_ID_PATTERN
from config.taxonomy import shipped_taxonomy
from dispatch import credit_code
from ingest.contract import InputModel

PHONE_PATTERN = r"^[0-9+\-() ]*$"
RESERVED_IDS = frozenset({"import", "export", "options"})  # names of fixed routes under /api/units/

UnitId = Annotated[str, Field(pattern=UNIT_ID_PATTERN, description="Id: letters, digits, `_`, `.`, `-`; up to 64.")]
Name = Annotated[str, Field(min_length=1, max_length=200, description="单位名称.")]
CreditCode = Annotated[str, Field(max_length=40,
                                  description="统一社会信用代码: 18 characters (spaces ignored, any case) with the "
                                              "GB 32100-2015 check character; empty when the unit has none.")]
Address = Annotated[str, Field(max_length=400)]
Lat = Annotated[float, Field(ge=-90, le=90, description="WGS-84 latitude.")]
Lon = Annotated[float, Field(ge=-180, le=180, description="WGS-84 longitude.")]
UnitType = Annotated[str, Field(min_length=1, max_length=40,
                                description="Unit type: its code, Chinese name or alias in the taxonomy "
                                            "(GET /api/taxonomy).")]
Person = Annotated[str, Field(max_length=100)]
Phone = Annotated[str, Field(max_length=40, pattern=PHONE_PATTERN, description="Digits, +, -, brackets, spaces.")]
Floors = Annotated[int, Field(ge=0, le=300, description="Floors above ground plus below.")]
Area = Annotated[float, Field(ge=0, le=10_000_000, description="Building area in m².")]
Occupancy = Annotated[int, Field(ge=0, le=1_000_000, description="People at the busiest time.")]
FacilityList = Annotated[list[Annotated[str, Field(min_length=1, max_length=60)]], Field(
    max_length=40, description="Fire facilities present: codes (or names) of GET /api/taxonomy's facilities.")]
StationId = Annotated[str, Field(pattern=UNIT_ID_PATTERN, description="The responsible police station (its id); "
                                                                      "default: the caller's, when it has one.")]
Officer = Annotated[str, Field(max_length=64, description="社区民警: an officer's username; empty for none.")]

FIELDS = ("name", "credit_code", "address", "lat", "lon", "unit_type", "contact_name", "contact_phone",
          "safety_manager_name", "safety_manager_phone", "floors", "area_m2", "occupancy", "facilities",
          "station_id", "community_officer")
"""Every registry field a user sets, in the order forms, imports and exports list them."""


def unit_type_code(value: str) -> str:
    kind = shipped_taxonomy().resolve(value)
    if kind is None:
        raise ValueError(f"unknown unit type {value!r} (see the taxonomy: GET /api/taxonomy)")
    return kind.code


def facility_codes(values: list[str]) -> list[str]:
    known = shipped_facilities()
    codes: set[str] = set()
    for v in values:
        f = known.resolve(v)
        if f is None:
            raise ValueError(f"unknown facility {v!r} (see GET /api/taxonomy: facilities)")
        codes.add(f.code)
    return known.order(codes)


class UnitFields(InputModel):
    """Every field of a unit's registry entry, normalised: the credit code upper case, the unit type and the
    facilities as their codes."""

    name: Name
    credit_code: CreditCode = ""
    address: Address = ""
    lat: Lat | None = None
    lon: Lon | None = None
    unit_type: UnitType = "other"
    contact_name: Person = Field("", description="消防安全责任人.")
    contact_phone: Phone = ""
    safety_manager_name: Person = Field("", description="消防安全管理人.")
    safety_manager_phone: Phone = ""
    floors: Floors | None = None
    area_m2: Area | None = None
    occupancy: Occupancy | None = None
    facilities: FacilityList = Field(default_factory=list)
    station_id: StationId | None = None
    community_officer: Officer = ""

    @field_validator("credit_code")
    @classmethod
    def _credit_code(cls, v: str) -> str:
        return credit_code.validate(v) if v else ""

    @field_validator("unit_type")
    @classmethod
    def _unit_type(cls, v: str) -> str:
        return unit_type_code(v)

    @field_validator("facilities")
    @classmethod
    def _facilities(cls, v: list[str]) -> list[str]:
        return facility_codes(v)

    @model_validator(mode="after")
    def _both_coordinates(self) -> UnitFields:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        return self

    def stored(self) -> dict[str, Any]:
        """The values as stored (FIELDS, in order)."""
        return {f: getattr(self, f) for f in FIELDS}


class UnitCreate(UnitFields):
    id: UnitId | None = Field(None, description="The unit's id; default: one is made up (`u-` and 10 hex digits).")

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, v: str | None) -> str | None:
        if v is not None and v.lower() in RESERVED_IDS:
            raise ValueError(f"{v!r} is reserved (a fixed path under /api/units/)")
        return v


class UnitPatch(InputModel):
    """An edit: the fields present replace the stored ones (null clears an optional number or the coordinates);
    absent fields are kept. `version` is the unit's version the edit was made on (409 when it changed since)."""

    version: int = Field(..., ge=1, le=2**31 - 1, description="The version of the unit this edit was made on.")
    name: Name | None = None
    credit_code: CreditCode | None = None
    address: Address | None = None
    lat: Lat | None = None
    lon: Lon | None = None
    unit_type: UnitType | None = None
    contact_name: Person | None = None
    contact_phone: Phone | None = None
    safety_manager_name: Person | None = None
    safety_manager_phone: Phone | None = None
    floors: Floors | None = None
    area_m2: Area | None = None
    occupancy: Occupancy | None = None
    facilities: FacilityList | None = None
    station_id: StationId | None = None
    community_officer: Officer | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the edit sets."""
        return {f: getattr(self, f) for f in FIELDS if f in self.model_fields_set}


class RetireBody(InputModel):
    version: int | None = Field(None, ge=1, le=2**31 - 1, description="When given: 409 if the unit changed since.")
    reason: str = Field("", max_length=500, description="Why the unit leaves the registry (closed, moved, merged).")
