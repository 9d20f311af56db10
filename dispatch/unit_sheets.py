"""Units as spreadsheets: an import file (CSV or XLSX, with a header row) read into rows of registry fields, and
units written out as CSV or XLSX with the same columns (an export imports again elsewhere).

Headers may be English (the field names) or Chinese (单位名称, 统一社会信用代码, ...); see COLUMNS. Row numbers are the
spreadsheet's: the header is row 1, the first unit row 2. CSV may be UTF-8 (with or without BOM) or GB 18030 (what
Excel saves on a Chinese Windows). A file-level problem (no header, an unknown or repeated column, no name column)
is reported as an error of row 1. Pure functions: CPU work the console runs off the event loop.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from config.facilities import Facility, shipped_facilities
from dispatch.models import Unit
from dispatch.unit_views import unit_types
from dispatch.views import iso


@dataclass(frozen=True, slots=True)
class Column:
    field: str
    zh: str
    aliases: tuple[str, ...] = ()


COLUMNS: tuple[Column, ...] = (
    Column("id", "单位编号", ("编号", "unit_id")),
    Column("name", "单位名称", ("名称",)),
    Column("credit_code", "统一社会信用代码", ("信用代码", "社会信用代码")),
    Column("address", "地址", ("单位地址",)),
    Column("lat", "纬度", ("latitude",)),
    Column("lon", "经度", ("longitude", "lng")),
    Column("unit_type", "单位类型", ("类型", "单位类别", "category")),
    Column("contact_name", "消防安全责任人", ("责任人",)),
    Column("contact_phone", "责任人电话", ("消防安全责任人电话",)),
    Column("safety_manager_name", "消防安全管理人", ("管理人",)),
    Column("safety_manager_phone", "管理人电话", ("消防安全管理人电话",)),
    Column("floors", "楼层数", ("层数",)),
    Column("area_m2", "建筑面积", ("建筑面积(m²)", "建筑面积（平方米）", "面积")),
    Column("occupancy", "容纳人数", ("人数",)),
    Column("facilities", "消防设施", ()),
    Column("station_id", "责任派出所", ("派出所", "station")),
    Column("community_officer", "社区民警", ()),
)
INFO_COLUMNS: tuple[Column, ...] = (  # written by an export for people to read; ignored by an import
    Column("unit_class", "单位大类"),
    Column("retired_at", "注销时间"),
)
NUMBERS = {"lat", "lon", "area_m2"}
WHOLE_NUMBERS = {"floors", "occupancy"}
LIST_SPLIT = re.compile(r"[,，、;；|\n]+")
MAX_COLUMNS = 64


class SheetError(ValueError):
    """The file as a whole cannot be read (reported as row 1)."""


def _key(header: str) -> str:
    return "".join(header.split()).replace("*", "").casefold()


HEADERS: dict[str, str] = {}
for _c in (*COLUMNS, *INFO_COLUMNS):
    for _name in (_c.field, _c.zh, *_c.aliases):
        HEADERS[_key(_name)] = _c.field
IGNORED = {c.field for c in INFO_COLUMNS}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a phone or id typed into a number cell
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value).strip()


def _cell(field: str, value: Any) -> Any:
    """A cell as the registry's field expects it: "" → absent, numbers as numbers, facilities as a list."""
    if isinstance(value, str):
        value = value.strip()
        if value[:1] == "'" and value[1:2] in ("=", "+", "-", "@"):
            value = value[1:]  # what an export wrote to keep a spreadsheet from running it (see _safe)
    if value is None or value == "":
        return None
    if field in WHOLE_NUMBERS:
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return value  # the registry's check names it
            return int(number) if number.is_integer() else value
        return int(value) if isinstance(value, float) and value.is_integer() else value
    if field in NUMBERS:
        return value if isinstance(value, int | float) and not isinstance(value, bool) else _text(value)
    if field == "facilities":
        return [p.strip() for p in LIST_SPLIT.split(_text(value)) if p.strip()]
    return _text(value)


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise SheetError("the CSV is neither UTF-8 nor GB 18030 text")


def _csv_rows(data: bytes) -> Iterable[Sequence[Any]]:
    text = _decode(data)
    if "\x00" in text:
        raise SheetError("the file is neither CSV text nor an XLSX workbook")
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first and "," not in first else ","
    try:
        yield from csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    except csv.Error as exc:
        raise SheetError(f"the CSV cannot be read: {exc}") from None


def _xlsx_rows(data: bytes) -> Iterable[Sequence[Any]]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as exc:
        raise SheetError(f"the XLSX workbook cannot be read: {type(exc).__name__}") from None
    try:
        sheet = wb.worksheets[0] if wb.worksheets else None
        if sheet is None:
            raise SheetError("the workbook has no sheet")
        yield from sheet.iter_rows(values_only=True)
    finally:
        wb.close()


def read_rows(data: bytes) -> list[tuple[int, dict[str, Any]]]:
    """The rows of an import file: (row number, {field: value}) for every row that is not empty. SheetError when the
    file itself is unusable."""
    rows = iter(_xlsx_rows(data) if data[:4] == b"PK\x03\x04" else _csv_rows(data))
    header: Sequence[Any] | None = None
    for cells in rows:
        if any(_text(c) for c in cells):
            header = cells
            break
    if header is None:
        raise SheetError("the file has no header row")
    if len(header) > MAX_COLUMNS:
        raise SheetError(f"{len(header)} columns: at most {MAX_COLUMNS}")
    fields: list[str | None] = []
    for h in header:
        name = _text(h)
        if not name:
            fields.append(None)
            continue
        found = HEADERS.get(_key(name))
        if found is None:
            known = "、".join(c.zh for c in COLUMNS)
            raise SheetError(f"unknown column {name!r}; columns are (English field names or): {known}")
        if found in fields:
            raise SheetError(f"column {name!r} appears twice")
        fields.append(found)
    if "name" not in fields:
        raise SheetError("no name (单位名称) column")
    out: list[tuple[int, dict[str, Any]]] = []
    for number, cells in enumerate(rows, start=2):
        if not any(_text(c) for c in cells):
            continue
        row: dict[str, Any] = {}
        for f, value in zip(fields, cells, strict=False):
            if f is None or f in IGNORED:
                continue
            v = _cell(f, value)
            if v is not None:
                row[f] = v
        if len(cells) > len(fields) and any(_text(c) for c in cells[len(fields):]):
            row["_extra"] = True
        out.append((number, row))
    return out


# ------------------------------------------------------------------ export

def export_header() -> list[str]:
    cols = (*COLUMNS[:6], INFO_COLUMNS[0], *COLUMNS[6:], INFO_COLUMNS[1])
    return [c.zh for c in cols]


def export_row(u: Unit, fac: dict[str, Facility] | None = None) -> list[Any]:
    found = unit_types().get(u.unit_type)
    fac = fac if fac is not None else shipped_facilities().by_code()
    facilities = "、".join(fac[c].zh if c in fac else c for c in (u.facilities or []))
    return [u.id, u.name, u.credit_code, u.address, u.lat, u.lon, found[0].zh if found else "",
            found[1].zh if found else u.unit_type, u.contact_name, u.contact_phone, u.safety_manager_name,
            u.safety_manager_phone, u.floors, u.area_m2, u.occupancy, facilities, u.station_id or "",
            u.community_officer, iso(u.retired_at) or ""]


def _safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula (=, +, -, @) is written with a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


def to_csv(units: Sequence[Unit]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(export_header())
    fac = shipped_facilities().by_code()
    for u in units:
        w.writerow([_safe(v) for v in export_row(u, fac)])
    return "\ufeff" + buf.getvalue()  # BOM: Excel opens UTF-8 Chinese correctly


def to_xlsx(units: Sequence[Unit]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("单位档案")
    ws.append(export_header())
    fac = shipped_facilities().by_code()
    for u in units:
        ws.append([_safe(v) for v in export_row(u, fac)])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
