"""Hazard supervision: found → rectification notice → proof → recheck → closed, or overdue → penalty.

Every step goes through the core's single Writer (one lock, one transaction, one hash chain) and is
recorded with `hazard_id`, the actor and the time, so the hazard's timeline and every KPI derive from
the record. Evidence bytes live in `hazard_evidence`; their SHA-256 is written into the record.

Status: open → notice_issued → (proof_submitted) → closed(rectified)
        notice_issued/proof_submitted at the deadline → camera recheck (if camera-visible and a camera
        callable is wired) → closed(rectified) or penalty; without a camera result: no proof → penalty,
        proof → recheck_due (an officer rechecks).
        penalty: proposed → confirmed (officer) → approved (admin) → closed (paid / warned).

This module holds the vocabulary the parts share; each part has its own module:

- `hazard_cases.py` — the case commands (create, evidence, withdraw, inspection, notice, proof, recheck);
- `penalties.py` — the penalty decision commands (overdue → proposed → confirmed → approved → closed);
- `hazard_deadlines.py` — what happens at a deadline, and the scheduler that waits for the next one;
- `hazard_views.py` — the read side (lists, detail, evidence files, document data, counts, configuration);
- `hazard_context.py` (what every command shares), `hazard_rows.py` (row lookups, visibility, JSON views),
  `hazard_uploads.py` (uploaded images: checked by their bytes, stored as evidence).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from config.hazards import HazardsConfig, LawClause
from config.schema import FirelinkConfig
from dispatch.state import HazardStatus

# Record actions (the hazard timeline's vocabulary; KPIs read these).
HAZARD_CREATED = "hazard.created"
EVIDENCE_ADDED = "hazard.evidence_added"
NOTICE_ISSUED = "hazard.notice_issued"
PROOF_SUBMITTED = "hazard.proof_submitted"
RECHECKED = "hazard.rechecked"
RECHECK_DUE = "hazard.recheck_due"
OVERDUE = "hazard.overdue"
HAZARD_CLOSED = "hazard.closed"
PENALTY_PROPOSED = "penalty.proposed"
PENALTY_CONFIRMED = "penalty.confirmed"
PENALTY_APPROVED = "penalty.approved"
PENALTY_CLOSED = "penalty.closed"
PENALTY_INFORMED = "penalty.informed"  # 行政处罚告知书 served: facts, basis, intended penalty, the party's rights
PENALTY_STATEMENT = "penalty.statement"  # the party's statement and defence heard, or waived (陈述申辩)
NOTICE_IMMEDIATE = "hazard.immediate_notice"  # 责令立即改正通知书: the violation corrected on the spot; the case closes
PENALTY_REFERRED = "penalty.referred"  # beyond the station's authority: 案件移送书 drafted (no station decision)
REFERRAL_APPROVED = "penalty.referral_approved"  # the 案件移送书 approved (sealed) and the case handed over
INSPECTION = "inspection.recorded"
OBSTRUCTION_CLEARED = "hazard.obstruction_cleared"  # a detector saw the blocked exit clear again

NOTICE_TITLES = {"deadline": "责令限期改正通知书", "immediate": "责令立即改正通知书"}  # RectificationNotice.kind
STATUSES = tuple(HazardStatus)
SOURCES = ("detection", "patrol", "inspection", "complaint")  # complaint: a report accepted in triage
STAGES = ("before", "proof", "recheck", "after")

try:
    from zoneinfo import ZoneInfo

    CHINA_TZ: Any = ZoneInfo("Asia/Shanghai")
except Exception:  # pragma: no cover - no tzdata
    from datetime import timezone

    CHINA_TZ = timezone(timedelta(hours=8))


def deadline_wording(deadline: datetime) -> str:
    """The one wording of a deadline, on every document: 于2026年11月30日20时19分前改正."""
    d = deadline.astimezone(CHINA_TZ)
    return f"于{d.year}年{d.month}月{d.day}日{d.hour}时{d.minute:02d}分前改正"


def hazards_config(cfg: FirelinkConfig) -> HazardsConfig:
    """The `hazards:` section of the config, or the defaults while FirelinkConfig has none."""
    h = getattr(cfg, "hazards", None)
    return h if isinstance(h, HazardsConfig) else HazardsConfig()


def clause_snapshot(c: LawClause) -> dict[str, str]:
    """A cited law clause as a document stores it (a later config change does not alter what was issued)."""
    return {"key": c.key, "citation": c.citation(), "text": c.text}
