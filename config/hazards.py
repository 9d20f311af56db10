"""Configuration of hazard supervision and evaluation: categories, law clauses, penalty rules, KPI targets, scoring.

Mounted on FirelinkConfig as `hazards:` (model HazardsConfig). Every default here works out of the box:
the law-clause texts are those of 《中华人民共和国消防法》 (2021 revision), the penalty ranges those of its
article 60, and the response targets those of NFPA 1225 (2022) plus the county "2-minute" model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClausePenalty(_Model):
    """A penalty a clause allows: who, which kind, and the amount range of a fine."""

    target: Literal["unit", "individual"] = Field(..., title="Target", description="单位 or 个人.")
    kind: Literal["fine", "warning"] = Field(..., title="Kind", description="罚款 (fine) or 警告 (warning).")
    min_yuan: int = Field(0, ge=0, title="Minimum", description="Lowest fine in yuan (0 for a warning).")
    max_yuan: int = Field(0, ge=0, title="Maximum", description="Highest fine in yuan (0 for a warning).")

    @model_validator(mode="after")
    def _range(self) -> ClausePenalty:
        if self.kind == "warning" and (self.min_yuan or self.max_yuan):
            raise ValueError("a warning carries no amount")
        if self.kind == "fine" and not 0 < self.max_yuan >= self.min_yuan:
            raise ValueError("a fine needs 0 <= min_yuan <= max_yuan and max_yuan > 0")
        return self


class LawClause(_Model):
    """One entry of the clause database: a citable provision down to its item, what it covers and allows."""

    key: str = Field(..., pattern=r"^[a-z0-9_.\-]{1,40}$", title="Key",
                     description="Stable id used by categories and penalty rules, e.g. fire_law_28.")
    law: str = Field(..., min_length=1, title="Law", description="Law title, e.g. 《中华人民共和国消防法》.")
    article: str = Field(..., min_length=1, title="Article", description="Article, e.g. 第二十八条.")
    paragraph: str = Field("", title="Paragraph", description="Paragraph (款), e.g. 第一款.")
    item: str = Field("", title="Item", description="Item (项) within the paragraph, e.g. 第（三）项.")
    text: str = Field(..., min_length=1, title="Text", description="The clause text quoted in documents.")
    covers: list[str] = Field(default_factory=list, title="Violations covered",
                              description="Hazard category keys this clause applies to (a penalty clause cited for "
                                          "another category is refused).")
    penalties: list[ClausePenalty] = Field(default_factory=list, title="Penalties allowed",
                                           description="Penalty kinds and amount ranges this clause allows "
                                                       "(empty: not a penalty clause).")

    def citation(self) -> str:
        return f"{self.law}{self.article}{self.paragraph}{self.item}"

    def allows(self, target: str, kind: str) -> ClausePenalty | None:
        return next((p for p in self.penalties if (p.target, p.kind) == (target, kind)), None)


class HazardCategory(_Model):
    key: str = Field(..., pattern=r"^[a-z0-9_\-]{1,40}$", title="Key", description="Stable id, e.g. blocked_exit.")
    name: str = Field(..., min_length=1, title="Name", description="Chinese name shown in the UI and documents.")
    severity: Literal["general", "major"] = Field("general", title="Default severity",
                                                   description="一般 (general) or 重大 (major) hazard.")
    camera_visible: bool = Field(False, title="Camera-visible",
                                 description="A camera can recheck it automatically at the deadline.")
    clauses: list[str] = Field(default_factory=list, title="Violated clauses",
                               description="Law-clause keys cited on the rectification notice.")
    penalty_clauses: list[str] = Field(default_factory=list, title="Penalty clauses",
                                       description="Law-clause keys cited as the legal basis of a penalty.")
    requirement: str = Field("", title="Rectification requirement",
                             description="Default wording of what the unit must do (notice body).")
    default_days: int = Field(3, ge=1, le=365, title="Default deadline (days)",
                              description="Days from the notice to the deadline, unless the officer sets one.")


class PenaltyRule(_Model):
    target: Literal["unit", "individual"] = Field(..., title="Target", description="单位 or 个人.")
    kind: Literal["fine", "warning"] = Field(..., title="Kind", description="罚款 (fine) or 警告 (warning).")
    min_yuan: int = Field(0, ge=0, title="Minimum", description="Lowest fine in yuan (0 for a warning).")
    max_yuan: int = Field(0, ge=0, title="Maximum", description="Highest fine in yuan.")
    proposed_yuan: int = Field(0, ge=0, title="Proposed", description="Amount the system proposes.")
    clauses: list[str] = Field(default_factory=list, title="Legal basis",
                               description="Law-clause keys cited as the basis (penalty clause).")

    @model_validator(mode="after")
    def _range(self) -> PenaltyRule:
        if self.kind == "warning" and (self.max_yuan or self.proposed_yuan):
            raise ValueError("a warning carries no amount")
        if self.kind == "fine" and not (self.min_yuan <= self.proposed_yuan <= self.max_yuan):
            raise ValueError("need min_yuan <= proposed_yuan <= max_yuan")
        return self


class AuthorityLimit(_Model):
    """A penalty the station may decide itself: who, which kind, and (a fine) up to which amount."""

    target: Literal["unit", "individual"] = Field(..., title="Target", description="单位 or 个人.")
    kind: Literal["fine", "warning"] = Field(..., title="Kind", description="罚款 (fine) or 警告 (warning).")
    max_yuan: int = Field(0, ge=0, title="Maximum", description="Highest fine in yuan the station decides itself "
                                                                "(0 for a warning).")

    @model_validator(mode="after")
    def _amount(self) -> AuthorityLimit:
        if self.kind == "warning" and self.max_yuan:
            raise ValueError("a warning carries no amount")
        if self.kind == "fine" and self.max_yuan <= 0:
            raise ValueError("a fine limit needs max_yuan > 0 (leave the entry out when the station may not fine)")
        return self


def _default_authority() -> list[AuthorityLimit]:
    """By default the station decides every penalty the clause database allows; a station whose delegated authority
    is smaller (e.g. only warnings and fines up to 500 yuan on individuals) lists just those."""
    return [AuthorityLimit(target="unit", kind="fine", max_yuan=50000),
            AuthorityLimit(target="individual", kind="warning"),
            AuthorityLimit(target="individual", kind="fine", max_yuan=500)]


class KpiTargets(_Model):
    ack_s: float = Field(10, gt=0, title="Acknowledge target (s)",
                         description="Alarm → acknowledge within this (NFPA 1225-2022: 10 s)...")
    ack_share: float = Field(0.9, gt=0, le=1, title="Acknowledge share", description="...for this share of alarms.")
    dispatch_s: float = Field(60, gt=0, title="Dispatch target (s)",
                              description="Alarm → dispatch within this (NFPA 1225-2022: 60 s)...")
    dispatch_share: float = Field(0.9, gt=0, le=1, title="Dispatch share", description="...for this share.")
    response_s: float = Field(120, gt=0, title="Whole response (s)",
                              description="Alarm → dispatched or closed: the county 2-minute model.")
    recheck_within_h: float = Field(72, gt=0, title="Recheck window (h)",
                                    description="A recheck later than this after the deadline is late "
                                                "(消防监督检查规定: 3 working days).")


class ScoreRule(_Model):
    metric: str = Field(..., title="Metric", description="A KPI field name, e.g. ack_within_target_share.")
    weight: float = Field(..., gt=0, title="Weight", description="Relative weight in the total score.")
    target: float = Field(..., gt=0, title="Target", description="Value that earns the full points.")
    better: Literal["higher", "lower"] = Field("higher", title="Better", description="Direction of the metric.")


def _default_clauses() -> list[LawClause]:
    law = "《中华人民共和国消防法》"
    return [
        LawClause(key="fire_law_16", law=law, article="第十六条", paragraph="第一款",
                  text="机关、团体、企业、事业等单位应当履行下列消防安全职责：（一）落实消防安全责任制，制定本单位的"
                       "消防安全制度、消防安全操作规程，制定灭火和应急疏散预案；（二）按照国家标准、行业标准配置消防"
                       "设施、器材，设置消防安全标志，并定期组织检验、维修，确保完好有效；……（四）保障疏散通道、安全"
                       "出口、消防车通道畅通，保证防火防烟分区、防火间距符合消防技术标准；……"),
        LawClause(key="fire_law_27", law=law, article="第二十七条",
                  text="电器产品、燃气用具的产品标准，应当符合消防安全的要求。电器产品、燃气用具的安装、使用及其线路、"
                       "管路的设计、敷设、维护保养、检测，必须符合消防技术标准和管理规定。"),
        LawClause(key="fire_law_28", law=law, article="第二十八条",
                  text="任何单位、个人不得损坏、挪用或者擅自拆除、停用消防设施、器材，不得埋压、圈占、遮挡消火栓或者"
                       "占用防火间距，不得占用、堵塞、封闭疏散通道、安全出口、消防车通道。人员密集场所的门窗不得设置"
                       "影响逃生和灭火救援的障碍物。"),
        *_article_60(law),
    ]


_EXITS = ["blocked_exit", "locked_exit", "corridor_storage"]
_EQUIPMENT = ["missing_extinguisher", "fire_door_open"]
_ALL = ["blocked_exit", "locked_exit", "fire_door_open", "corridor_storage", "missing_extinguisher", "illegal_wiring",
        "other"]
_UNIT_FINE = [ClausePenalty(target="unit", kind="fine", min_yuan=5000, max_yuan=50000)]
_A60_1 = "单位违反本法规定，有下列行为之一的，责令改正，处五千元以上五万元以下罚款："


def _article_60(law: str) -> list[LawClause]:
    """Fire Law art. 60, item by item: ¶1 (units) items 1, 2, 3, 7; ¶2 (individuals: items 2–5); ¶3."""
    items = [("1", "第（一）项",
              "（一）消防设施、器材或者消防安全标志的配置、设置不符合国家标准、行业标准，或者未保持完好有效的",
              _EQUIPMENT),
             ("2", "第（二）项", "（二）损坏、挪用或者擅自拆除、停用消防设施、器材的", ["fire_door_open"]),
             ("3", "第（三）项", "（三）占用、堵塞、封闭疏散通道、安全出口或者有其他妨碍安全疏散行为的", _EXITS),
             ("7", "第（七）项", "（七）对火灾隐患经消防救援机构通知后不及时采取措施消除的", _ALL)]
    out = [LawClause(key=f"fire_law_60_1_{n}", law=law, article="第六十条", paragraph="第一款", item=item,
                     text=_A60_1 + text + "。", covers=covers, penalties=_UNIT_FINE)
           for n, item, text, covers in items]
    out += [
        LawClause(key="fire_law_60_2", law=law, article="第六十条", paragraph="第二款",
                  text="个人有前款第二项、第三项、第四项、第五项行为之一的，处警告或者五百元以下罚款。",
                  covers=[*_EXITS, "fire_door_open"],
                  penalties=[ClausePenalty(target="individual", kind="warning"),
                             ClausePenalty(target="individual", kind="fine", min_yuan=1, max_yuan=500)]),
        LawClause(key="fire_law_60_3", law=law, article="第六十条", paragraph="第三款",
                  text="有本条第一款第三项、第四项、第五项、第六项行为，经责令改正拒不改正的，强制执行，所需费用由违法"
                       "行为人承担。"),
    ]
    return out


def _default_categories() -> list[HazardCategory]:
    return [
        HazardCategory(key="blocked_exit", name="占用、堵塞、封闭疏散通道或安全出口", severity="major",
                       camera_visible=True, clauses=["fire_law_28", "fire_law_16"],
                       penalty_clauses=["fire_law_60_1_3", "fire_law_60_2"],
                       requirement="立即清除堵塞疏散通道、安全出口的物品，保持疏散通道、安全出口畅通。",
                       default_days=1),
        HazardCategory(key="locked_exit", name="安全出口上锁", severity="major", camera_visible=True,
                       clauses=["fire_law_28", "fire_law_16"], penalty_clauses=["fire_law_60_1_3", "fire_law_60_2"],
                       requirement="立即打开被锁闭的安全出口，营业期间保持安全出口畅通。", default_days=1),
        HazardCategory(key="fire_door_open", name="常闭式防火门处于开启状态", camera_visible=True,
                       clauses=["fire_law_16", "fire_law_28"], penalty_clauses=["fire_law_60_1_1", "fire_law_60_2"],
                       requirement="将常闭式防火门恢复关闭状态，并保持闭门器完好有效。", default_days=1),
        HazardCategory(key="corridor_storage", name="疏散走道堆放杂物", camera_visible=True,
                       clauses=["fire_law_28"], penalty_clauses=["fire_law_60_1_3", "fire_law_60_2"],
                       requirement="清理疏散走道内堆放的杂物。", default_days=1),
        HazardCategory(key="missing_extinguisher", name="灭火器缺失或失效",
                       clauses=["fire_law_16"], penalty_clauses=["fire_law_60_1_1"],
                       requirement="按照国家标准配置灭火器，并确保完好有效。", default_days=3),
        HazardCategory(key="illegal_wiring", name="电气线路私拉乱接",
                       clauses=["fire_law_27"], penalty_clauses=["fire_law_60_1_7"],
                       requirement="拆除私拉乱接的电气线路，由具备资质的电工按照规范敷设。", default_days=5),
        HazardCategory(key="other", name="其他火灾隐患", clauses=["fire_law_16"], penalty_clauses=["fire_law_60_1_7"],
                       requirement="按照消防技术标准和管理规定消除火灾隐患。", default_days=3),
    ]


def _default_penalty_rules() -> list[PenaltyRule]:
    return [
        PenaltyRule(target="unit", kind="fine", min_yuan=5000, max_yuan=50000, proposed_yuan=5000,
                    clauses=["fire_law_60_1_7"]),
        PenaltyRule(target="individual", kind="warning", clauses=["fire_law_60_2"]),
        PenaltyRule(target="individual", kind="fine", min_yuan=1, max_yuan=500, proposed_yuan=200,
                    clauses=["fire_law_60_2"]),
    ]


def _default_scoring() -> list[ScoreRule]:
    return [
        ScoreRule(metric="ack_within_target_share", weight=25, target=0.9),
        ScoreRule(metric="dispatch_within_target_share", weight=25, target=0.9),
        ScoreRule(metric="handled_within_2min_share", weight=20, target=1.0),
        ScoreRule(metric="rectified_on_time_share", weight=15, target=1.0),
        ScoreRule(metric="rechecks_on_time_share", weight=15, target=1.0),
    ]


class HazardsConfig(_Model):
    categories: list[HazardCategory] = Field(default_factory=_default_categories, title="Hazard categories",
                                             description="The list officers pick from (隐患类别).")
    law_clauses: list[LawClause] = Field(default_factory=_default_clauses, title="Law clauses",
                                         description="法律条款 cited by notices and penalty decisions.")
    penalty_rules: list[PenaltyRule] = Field(default_factory=_default_penalty_rules, title="Penalty rules",
                                             description="Ranges and proposed amounts (Fire Law art. 60).")
    default_penalty_target: Literal["unit", "individual"] = Field(
        "unit", title="Default penalty target", description="Who the system proposes to penalise when overdue.")
    notice_number_format: str = Field(
        "{station}消限字〔{year}〕第{seq:04d}号", title="Notice number format",
        description="Python format with station, year, seq (per year) for 责令限期改正通知书.")
    penalty_number_format: str = Field(
        "{station}消罚决字〔{year}〕第{seq:04d}号", title="Penalty number format",
        description="Python format with station, year, seq (per year) for 行政处罚决定书.")
    inform_number_format: str = Field(
        "{station}消罚告字〔{year}〕第{seq:04d}号", title="Penalty notice number format",
        description="Python format with station, year, seq (per year) for 行政处罚告知书.")
    immediate_number_format: str = Field(
        "{station}消立字〔{year}〕第{seq:04d}号", title="Immediate-correction notice number format",
        description="Python format with station, year, seq (per year) for 责令立即改正通知书.")
    opinion_number_format: str = Field(
        "{station}消复字〔{year}〕第{seq:04d}号", title="Recheck opinion number format",
        description="Python format with station, year, seq (per year) for 复查意见书.")
    referral_number_format: str = Field(
        "{station}消移字〔{year}〕第{seq:04d}号", title="Case referral number format",
        description="Python format with station, year, seq (per year) for 案件移送书.")
    station_authority: list[AuthorityLimit] = Field(
        default_factory=_default_authority, title="Station authority",
        description="Penalties the station may decide itself (kind and highest fine). A penalty outside these is "
                    "not decided by the station: the case is referred (移送) to `referral_authority`.")
    referral_authority: str = Field(
        "", max_length=100, title="Receiving authority",
        description="The fire-rescue authority a case beyond the station's authority is referred to, as printed on "
                    "the 案件移送书 (default: the configured fire agency's name, else 辖区消防救援机构).")
    statement_days: int = Field(3, ge=1, le=30, title="Statement period (days)",
                                description="Days the party has after the 行政处罚告知书 to state and defend "
                                            "(陈述、申辩) before the decision may be approved.")
    hearing_days: int = Field(5, ge=1, le=30, title="Hearing request period (days)",
                              description="Days to request a hearing (听证) when the fine is large enough "
                                          "(Administrative Penalty Law art. 64: five days).")
    hearing_min_yuan: dict[str, int] = Field(
        default_factory=lambda: {"unit": 10000, "individual": 2000}, title="Hearing threshold (yuan)",
        description="Fines from this amount give the party the right to a hearing (较大数额罚款), per target.")
    issuing_authority: str = Field("", title="Issuing authority",
                                   description="Name printed on documents; default: the station's name.")
    max_upload_bytes: int = Field(5 * 1024 * 1024, ge=1024, title="Max upload",
                                  description="Largest photo/snapshot accepted, in bytes.")
    max_files_per_upload: int = Field(6, ge=1, le=20, title="Files per upload",
                                      description="Most photos in one proof/evidence upload.")
    targets: KpiTargets = Field(default_factory=KpiTargets, title="KPI targets", description="Response targets.")
    scoring: list[ScoreRule] = Field(default_factory=_default_scoring, title="Scoring scheme",
                                     description="Weighted rules turning KPIs into a 0–100 score.")

    @model_validator(mode="after")
    def _refs(self) -> HazardsConfig:
        keys = [c.key for c in self.law_clauses]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate law clause keys")
        cats = [c.key for c in self.categories]
        if len(set(cats)) != len(cats) or not cats:
            raise ValueError("categories must be non-empty with unique keys")
        known = set(keys)
        for c in self.categories:
            bad = [k for k in (*c.clauses, *c.penalty_clauses) if k not in known]
            if bad:
                raise ValueError(f"category {c.key!r} names unknown law clauses {bad}")
            clause = {k.key: k for k in self.law_clauses}
            stray = [k for k in c.penalty_clauses if c.key not in clause[k].covers or not clause[k].penalties]
            if stray:
                raise ValueError(f"category {c.key!r}: penalty clauses {stray} do not cover it or allow no penalty")
        for r in self.penalty_rules:
            bad = [k for k in r.clauses if k not in known]
            if bad:
                raise ValueError(f"penalty rule names unknown law clauses {bad}")
        limits = [(a.target, a.kind) for a in self.station_authority]
        if len(set(limits)) != len(limits):
            raise ValueError("station_authority lists a target/kind twice")
        if not any(r.target == self.default_penalty_target for r in self.penalty_rules):
            raise ValueError("no penalty rule for default_penalty_target")
        return self

    def category(self, key: str) -> HazardCategory | None:
        return next((c for c in self.categories if c.key == key), None)

    def clause(self, key: str) -> LawClause | None:
        return next((c for c in self.law_clauses if c.key == key), None)

    def rules_for(self, target: str) -> list[PenaltyRule]:
        return [r for r in self.penalty_rules if r.target == target]
