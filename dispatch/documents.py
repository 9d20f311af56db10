"""Chinese documents as PDF: 责令限期改正通知书 / 责令立即改正通知书, 复查意见书, 行政处罚告知书, 行政处罚决定书,
案件移送书, 消防监督检查记录 and the period evaluation report.

Jinja2 HTML templates (dispatch/templates/) rendered by WeasyPrint, which lays out CJK text through
Pango/HarfBuzz and embeds subsets of the system's Noto CJK fonts (Debian `fonts-noto-cjk`). Rendering
is CPU work: the console renders through its heavy-work limiter (console/heavy.py), templates on a thread and
`html_to_pdf` in a worker process.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from dispatch.hazards import CHINA_TZ, NOTICE_TITLES, deadline_wording

TEMPLATES = Path(__file__).resolve().parent / "templates"
DIGITS = "零壹贰叁肆伍陆柒捌玖"


@cache
def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["j2", "html"]),
                      undefined=StrictUndefined)
    env.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:.1f}%"
    env.filters["num"] = lambda v: "—" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
    env.filters["secs"] = lambda v: "—" if v is None else str(round(v))  # response times: to the second
    return env


@cache
def _css() -> str:
    return (TEMPLATES / "base.css").read_text(encoding="utf-8")


def cn_date(dt: datetime | None) -> str:
    if dt is None:
        return ""
    d = dt.astimezone(CHINA_TZ)
    return f"{d.year}年{d.month}月{d.day}日"


def cn_datetime(dt: datetime | None) -> str:
    if dt is None:
        return ""
    d = dt.astimezone(CHINA_TZ)
    return f"{d.year}年{d.month}月{d.day}日{d.hour}时{d.minute:02d}分"


def yuan_upper(amount: int) -> str:
    """5000 → 伍仟元整; 12050 → 壹万贰仟零伍拾元整 (amounts below 100,000,000 yuan)."""
    if amount == 0:
        return "零元整"
    if not 0 < amount < 100_000_000:
        raise ValueError("amount out of range")

    def four(n: int) -> str:
        out, zero = "", False
        for unit, div in (("仟", 1000), ("佰", 100), ("拾", 10), ("", 1)):
            d = n // div % 10
            if d == 0:
                zero = bool(out)
            else:
                out += ("零" if zero else "") + DIGITS[d] + unit
                zero = False
        return out

    wan, rest = divmod(amount, 10000)
    text = (four(wan) + "万") if wan else ""
    if rest:
        text += ("零" if wan and rest < 1000 else "") + four(rest)
    return text + "元整"


def html_to_pdf(html: str) -> bytes:
    from weasyprint import HTML

    pdf: bytes = HTML(string=html, base_url=str(TEMPLATES)).write_pdf()
    return pdf


def notice_html(doc: dict[str, Any], evidence: list[dict[str, Any]] | None = None) -> str:
    """责令限期改正通知书, or (kind immediate) 责令立即改正通知书: the order's item-level basis, corrected on the spot,
    and the evidence the case holds. Either is sealed: it exists only once issued."""
    n, h = doc["notice"], doc["hazard"]
    return _env().get_template("notice.html.j2").render(
        css=_css(), notice=n, hazard=h, unit=doc["unit"], authority=doc["authority"], title=NOTICE_TITLES[n.kind],
        immediate=n.kind == "immediate", category_name=h["category_name"],
        found_date=cn_date(datetime.fromisoformat(h["found_at"])), deadline=deadline_wording(n.deadline),
        issued_date=cn_date(n.issued_at), issued_time=cn_datetime(n.issued_at), evidence=evidence or [],
        evidence_list=doc.get("evidence_list", []))


def opinion_html(doc: dict[str, Any]) -> str:
    """复查意见书: the notice rechecked (number, date, deadline), the recheck's time, result and note, the officer."""
    o = doc["opinion"]
    return _env().get_template("opinion.html.j2").render(
        css=_css(), opinion=o, hazard=doc["hazard"], unit=doc["unit"], authority=doc["authority"],
        notice_date=cn_date(o.notice_issued_at), deadline=deadline_wording(o.deadline),
        rechecked_time=cn_datetime(o.issued_at), issued_date=cn_date(o.issued_at),
        before_deadline=o.issued_at < o.deadline)


def referral_html(doc: dict[str, Any]) -> str:
    """案件移送书. Sealed and dated only once approved; before that a draft watermarked 草稿, without a seal."""
    r = doc["referral"]
    return _env().get_template("referral.html.j2").render(
        css=_css(), referral=r, hazard=doc["hazard"], unit=doc["unit"], authority=doc["authority"],
        amount_cn=yuan_upper(r.amount_yuan) if r.kind == "fine" else "", approved=r.approved_at is not None,
        approved_date=cn_date(r.approved_at), issued_time=cn_datetime(r.issued_at),
        approved_time=cn_datetime(r.approved_at))


def penalty_html(doc: dict[str, Any]) -> str:
    """行政处罚决定书. Sealed and dated only once approved; before that a draft watermarked 草稿, without a seal."""
    p = doc["penalty"]
    return _env().get_template("penalty.html.j2").render(
        css=_css(), penalty=p, hazard=doc["hazard"], unit=doc["unit"], notice=doc["notice"],
        authority=doc["authority"], amount_cn=yuan_upper(p.amount_yuan) if p.kind == "fine" else "",
        approved=p.approved_at is not None, evidence=doc.get("evidence", []),
        decided_date=cn_date(p.approved_at), confirmed_time=cn_datetime(p.confirmed_at),
        approved_time=cn_datetime(p.approved_at))


def inform_html(doc: dict[str, Any]) -> str:
    """行政处罚告知书: the facts, the basis, the intended penalty and the party's rights, before the decision."""
    i = doc["inform"]
    return _env().get_template("inform.html.j2").render(
        css=_css(), inform=i, hazard=doc["hazard"], unit=doc["unit"], authority=doc["authority"],
        amount_cn=yuan_upper(i.amount_yuan) if i.kind == "fine" else "", evidence=doc.get("evidence", []),
        issued_date=cn_date(i.issued_at), issued_time=cn_datetime(i.issued_at), reply_by=cn_datetime(i.reply_by))


def _where(lat: float | None, lon: float | None) -> str:
    if lat is None or lon is None:
        return "—"
    return f"{abs(lat):.5f}°{'N' if lat >= 0 else 'S'}，{abs(lon):.5f}°{'E' if lon >= 0 else 'W'}"


def inspection_html(doc: dict[str, Any]) -> str:
    """消防监督检查记录: the unit as inspected, kind, time, place, officers, every item with its clause, result and
    note, the hazards found, the hazards rechecked, the photos (time, place, SHA-256) and the signatures."""
    i = doc["inspection"]
    items = sorted(i.items, key=lambda t: t.position)
    positions = {t.item_id: t.position for t in items}
    counts = {r: sum(1 for t in items if t.result == r) for r in ("pass", "fail", "na")}
    hazards = doc["hazards"]
    rechecked = {r.hazard_id for r in i.rechecks}
    found = [{"hazard_id": t.hazard_id, "position": t.position, "citation": t.clause.get("citation", ""),
              "category_name": hazards.get(t.hazard_id, {}).get("category_name", t.category)}
             for t in items if t.hazard_id is not None and t.hazard_id not in rechecked]
    photos = [{"item": f"第{positions[p.item_id]}项" if p.item_id in positions else "—",
               "taken": cn_datetime(p.taken_at) or "—", "where": _where(p.lat, p.lon),
               "received": cn_datetime(p.received_at), "sha256": p.sha256}
              for p in sorted(i.photos, key=lambda p: p.id)]
    officers = "、".join([i.officer_name or i.officer, *(c["name"] for c in i.co_officers)])
    return _env().get_template("inspection.html.j2").render(
        css=_css(), i=i, unit=doc["unit"], authority=doc["authority"], kind_name=doc["kind_name"], items=items,
        counts=counts, results=doc["results"], hazards=hazards, found=found, photos=photos,
        rechecks=sorted(i.rechecks, key=lambda r: r.hazard_id), officers=officers,
        signature_uri=doc["signature_uri"], started=cn_datetime(i.started_at), submitted=cn_datetime(i.submitted_at),
        submitted_date=cn_date(i.submitted_at), position=_where(i.lat, i.lon))


def report_html(k: dict[str, Any], authority: str, categories: dict[str, str], generated: datetime) -> str:
    end = datetime.fromisoformat(k["to"])
    from datetime import timedelta

    return _env().get_template("report.html.j2").render(
        css=_css(), k=k, authority=authority, categories=categories, generated=cn_datetime(generated),
        start=cn_date(datetime.fromisoformat(k["from"])), end=cn_date(end - timedelta(seconds=1)))
