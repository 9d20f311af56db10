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
        LawClause(key="fire_law_15_4", law=law, article="第十五条", paragraph="第四款",
                  text="公众聚集场所未经消防救援机构许可的，不得投入使用、营业。消防安全检查的具体办法，由国务院应急管理部门"
                       "制定。", covers=["no_permit"]),
        LawClause(key="fire_law_16", law=law, article="第十六条", paragraph="第一款",
                  text="机关、团体、企业、事业等单位应当履行下列消防安全职责：（一）落实消防安全责任制，制定本单位的"
                       "消防安全制度、消防安全操作规程，制定灭火和应急疏散预案；（二）按照国家标准、行业标准配置消防"
                       "设施、器材，设置消防安全标志，并定期组织检验、维修，确保完好有效；……（四）保障疏散通道、安全"
                       "出口、消防车通道畅通，保证防火防烟分区、防火间距符合消防技术标准；……",
                  covers=["blocked_exit", "locked_exit", "fire_door_open", "corridor_storage", "missing_extinguisher",
                          "fire_lane_blocked", "facility_fault", "evacuation_lighting", "safety_management", "other"]),
        *_article_16(law),
        *_article_17(law),
        LawClause(key="fire_law_19", law=law, article="第十九条",
                  text="生产、储存、经营易燃易爆危险品的场所不得与居住场所设置在同一建筑物内，并应当与居住场所保持安全"
                       "距离。生产、储存、经营其他物品的场所与居住场所设置在同一建筑物内的，应当符合国家工程建设消防"
                       "技术标准。", covers=["mixed_use_dwelling"]),
        LawClause(key="fire_law_21_1", law=law, article="第二十一条", paragraph="第一款",
                  text="禁止在具有火灾、爆炸危险的场所吸烟、使用明火。因施工等特殊情况需要使用明火作业的，应当按照规定"
                       "事先办理审批手续，采取相应的消防安全措施；作业人员应当遵守消防安全规定。", covers=["fire_use"]),
        LawClause(key="fire_law_21_2", law=law, article="第二十一条", paragraph="第二款",
                  text="进行电焊、气焊等具有火灾危险作业的人员和自动消防系统的操作人员，必须持证上岗，并遵守消防安全"
                       "操作规程。", covers=["fire_use", "control_room"]),
        LawClause(key="fire_law_23", law=law, article="第二十三条",
                  text="生产、储存、运输、销售、使用、销毁易燃易爆危险品，必须执行消防技术标准和管理规定。进入生产、储存"
                       "易燃易爆危险品的场所，必须执行消防安全规定。禁止非法携带易燃易爆危险品进入公共场所或者乘坐公共"
                       "交通工具。储存可燃物资仓库的管理，必须执行消防技术标准和管理规定。",
                  covers=["flammables", "other"]),
        LawClause(key="fire_law_26_2", law=law, article="第二十六条", paragraph="第二款",
                  text="人员密集场所室内装修、装饰，应当按照消防技术标准的要求，使用不燃、难燃材料。",
                  covers=["other"]),
        LawClause(key="fire_law_27", law=law, article="第二十七条",
                  text="电器产品、燃气用具的产品标准，应当符合消防安全的要求。电器产品、燃气用具的安装、使用及其线路、"
                       "管路的设计、敷设、维护保养、检测，必须符合消防技术标准和管理规定。",
                  covers=["illegal_wiring", "other"]),
        LawClause(key="fire_law_28", law=law, article="第二十八条",
                  text="任何单位、个人不得损坏、挪用或者擅自拆除、停用消防设施、器材，不得埋压、圈占、遮挡消火栓或者"
                       "占用防火间距，不得占用、堵塞、封闭疏散通道、安全出口、消防车通道。人员密集场所的门窗不得设置"
                       "影响逃生和灭火救援的障碍物。",
                  covers=["blocked_exit", "locked_exit", "corridor_storage", "fire_door_open", "hydrant_obstructed",
                          "fire_lane_blocked", "window_obstacle", "facility_fault"]),
        *_article_60(law),
        *_penalty_articles(law),
        *_regulations(),
    ]


_A16 = "机关、团体、企业、事业等单位应当履行下列消防安全职责："
_A17 = "消防安全重点单位除应当履行本法第十六条规定的职责外，还应当履行下列消防安全职责："


def _article_16(law: str) -> list[LawClause]:
    """Fire Law art. 16 ¶1, item by item (what an inspection checklist item checks)."""
    items = [("1", "（一）落实消防安全责任制，制定本单位的消防安全制度、消防安全操作规程，制定灭火和应急疏散预案",
              ["safety_management"]),
             ("2", "（二）按照国家标准、行业标准配置消防设施、器材，设置消防安全标志，并定期组织检验、维修，确保完好"
                   "有效", ["missing_extinguisher", "facility_fault", "evacuation_lighting", "fire_door_open"]),
             ("3", "（三）对建筑消防设施每年至少进行一次全面检测，确保完好有效，检测记录应当完整准确，存档备查",
              ["facility_fault"]),
             ("4", "（四）保障疏散通道、安全出口、消防车通道畅通，保证防火防烟分区、防火间距符合消防技术标准",
              ["blocked_exit", "locked_exit", "corridor_storage", "fire_lane_blocked", "other"]),
             ("5", "（五）组织防火检查，及时消除火灾隐患", ["safety_management"]),
             ("6", "（六）组织进行有针对性的消防演练", ["safety_management"])]
    nums = "一二三四五六"
    return [LawClause(key=f"fire_law_16_1_{n}", law=law, article="第十六条", paragraph="第一款",
                      item=f"第（{nums[int(n) - 1]}）项", text=_A16 + text + "；", covers=covers)
            for n, text, covers in items]


def _article_17(law: str) -> list[LawClause]:
    """Fire Law art. 17 ¶2 (key units), the items a checklist checks."""
    items = [("3", "三", "（三）实行每日防火巡查，并建立巡查记录"),
             ("4", "四", "（四）对职工进行岗前消防安全培训，定期组织消防安全培训和消防演练")]
    return [LawClause(key=f"fire_law_17_2_{n}", law=law, article="第十七条", paragraph="第二款", item=f"第（{cn}）项",
                      text=_A17 + text + "。", covers=["safety_management"]) for n, cn, text in items]


def _penalty_articles(law: str) -> list[LawClause]:
    """Fire Law arts. 58 ¶1 item 4, 61, 63 and 67: the penalties of the violations an inspection finds besides
    art. 60's."""
    return [
        LawClause(key="fire_law_58_1_4", law=law, article="第五十八条", paragraph="第一款", item="第（四）项",
                  text="违反本法规定，有下列行为之一的，由住房和城乡建设主管部门、消防救援机构按照各自职权责令停止施工、"
                       "停止使用或者停产停业，并处三万元以上三十万元以下罚款：……（四）公众聚集场所未经消防救援机构许可，"
                       "擅自投入使用、营业的，或者经核查发现场所使用、营业情况与承诺内容不符的。",
                  covers=["no_permit"],
                  penalties=[ClausePenalty(target="unit", kind="fine", min_yuan=30000, max_yuan=300000)]),
        LawClause(key="fire_law_61", law=law, article="第六十一条",
                  text="生产、储存、经营易燃易爆危险品的场所与居住场所设置在同一建筑物内，或者未与居住场所保持安全距离"
                       "的，责令停产停业，并处五千元以上五万元以下罚款。生产、储存、经营其他物品的场所与居住场所设置在"
                       "同一建筑物内，不符合消防技术标准的，依照前款规定处罚。",
                  covers=["mixed_use_dwelling"], penalties=_UNIT_FINE),
        LawClause(key="fire_law_63", law=law, article="第六十三条",
                  text="违反本法规定，有下列行为之一的，处警告或者五百元以下罚款；情节严重的，处五日以下拘留：（一）违反"
                       "消防安全规定进入生产、储存易燃易爆危险品场所的；（二）违反规定使用明火作业或者在具有火灾、爆炸"
                       "危险的场所吸烟、使用明火的。",
                  covers=["fire_use"],
                  penalties=[ClausePenalty(target="individual", kind="warning"),
                             ClausePenalty(target="individual", kind="fine", min_yuan=1, max_yuan=500)]),
        LawClause(key="fire_law_67", law=law, article="第六十七条",
                  text="机关、团体、企业、事业等单位违反本法第十六条、第十七条、第十八条、第二十一条第二款规定的，责令"
                       "限期改正；逾期不改正的，对其直接负责的主管人员和其他直接责任人员依法给予处分或者给予警告处罚。",
                  covers=["safety_management", "control_room"],
                  penalties=[ClausePenalty(target="individual", kind="warning")]),
    ]


def _regulations() -> list[LawClause]:
    """Ministerial rules and the national standard an inspection checks against: 公安部令第61号 (units' fire safety
    management), 公安部令第120号 (police stations' daily inspection, art. 31) and GB 25506-2010 (fire control rooms)."""
    m61 = "《机关、团体、企业、事业单位消防安全管理规定》（公安部令第61号）"
    m120 = "《消防监督检查规定》（公安部令第120号）"
    a31 = "公安派出所对单位进行日常消防监督检查，应当检查下列内容："
    a31_items = [
        ("1", "一", "（一）建筑物或者场所是否依法通过消防验收或者进行竣工验收消防备案，公众聚集场所是否依法通过"
                    "投入使用、营业前的消防安全检查；", ["no_permit"]),
        ("2", "二", "（二）是否制定消防安全制度；", ["safety_management"]),
        ("3", "三", "（三）是否组织防火检查、消防安全宣传教育培训、灭火和应急疏散演练；", ["safety_management"]),
        ("4", "四", "（四）消防车通道、疏散通道、安全出口是否畅通，室内消火栓、疏散指示标志、应急照明、灭火器是否完好"
                    "有效；", ["blocked_exit", "locked_exit", "corridor_storage", "fire_lane_blocked",
                              "hydrant_obstructed", "evacuation_lighting", "missing_extinguisher", "facility_fault"]),
        ("5", "五", "（五）生产、储存、经营易燃易爆危险品的场所是否与居住场所设置在同一建筑物内。",
         ["mixed_use_dwelling", "flammables"]),
    ]
    return [
        LawClause(key="mps61_18", law=m61, article="第十八条",
                  text="单位应当按照国家有关规定，结合本单位的特点，建立健全各项消防安全制度和保障消防安全的操作规程，"
                       "并公布执行。单位消防安全制度主要包括以下内容：消防安全教育、培训；防火巡查、检查；安全疏散设施"
                       "管理；消防（控制室）值班；消防设施、器材维护管理；火灾隐患整改；用火、用电安全管理；易燃易爆危险"
                       "物品和场所防火防爆；专职和义务消防队的组织管理；灭火和应急疏散预案演练；燃气和电气设备的检查和"
                       "管理（包括防雷、防静电）；消防安全工作考评和奖惩；其他必要的消防安全内容。",
                  covers=["safety_management", "control_room"]),
        LawClause(key="mps61_21", law=m61, article="第二十一条",
                  text="单位应当保障疏散通道、安全出口畅通，并设置符合国家规定的消防安全疏散指示标志和应急照明设施，"
                       "保持防火门、防火卷帘、消防安全疏散指示标志、应急照明、机械排烟送风、火灾事故广播等设施处于正常"
                       "状态。严禁下列行为：（一）占用疏散通道；（二）在安全出口或者疏散通道上安装栅栏等影响疏散的障碍"
                       "物；（三）在营业、生产、教学、工作等期间将安全出口上锁、遮挡或者将消防安全疏散指示标志遮挡、"
                       "覆盖；（四）其他影响安全疏散的行为。",
                  covers=["blocked_exit", "locked_exit", "corridor_storage", "evacuation_lighting", "fire_door_open",
                          "window_obstacle"]),
        LawClause(key="mps61_25", law=m61, article="第二十五条",
                  text="消防安全重点单位应当进行每日防火巡查，并确定巡查的人员、内容、部位和频次。其他单位可以根据需要"
                       "组织防火巡查。巡查的内容应当包括：（一）用火、用电有无违章情况；（二）安全出口、疏散通道是否"
                       "畅通，安全疏散指示标志、应急照明是否完好；（三）消防设施、器材和消防安全标志是否在位、完整；"
                       "（四）常闭式防火门是否处于关闭状态，防火卷帘下是否堆放物品影响使用；（五）消防安全重点部位的"
                       "人员在岗情况；（六）其他消防安全情况。公众聚集场所在营业期间的防火巡查应当至少每二小时一次；"
                       "营业结束时应当对营业现场进行检查，消除遗留火种。医院、养老院、寄宿制的学校、托儿所、幼儿园应当"
                       "加强夜间防火巡查，其他消防安全重点单位可以结合实际组织夜间防火巡查。……",
                  covers=["safety_management"]),
        LawClause(key="mps61_29", law=m61, article="第二十九条",
                  text="单位应当按照有关规定定期对灭火器进行维护保养和维修检查。对灭火器应当建立档案资料，记明配置类型、"
                       "数量、设置位置、检查维修单位（人员）、更换药剂的时间等有关情况。",
                  covers=["missing_extinguisher"]),
        LawClause(key="mps61_36", law=m61, article="第三十六条",
                  text="单位应当通过多种形式开展经常性的消防安全宣传教育。消防安全重点单位对每名员工应当至少每年进行一次"
                       "消防安全培训。……公众聚集场所对员工的消防安全培训应当至少每半年进行一次，培训的内容还应当包括"
                       "组织、引导在场群众疏散的知识和技能。单位应当组织新上岗和进入新岗位的员工进行上岗前的消防安全"
                       "培训。", covers=["safety_management"]),
        LawClause(key="mps61_37_2", law=m61, article="第三十七条", paragraph="第二款",
                  text="学校、幼儿园应当通过寓教于乐等多种形式对学生和幼儿进行消防安全常识教育。",
                  covers=["safety_management"]),
        LawClause(key="mps61_40", law=m61, article="第四十条",
                  text="消防安全重点单位应当按照灭火和应急疏散预案，至少每半年进行一次演练，并结合实际，不断完善预案。"
                       "其他单位应当结合本单位实际，参照制定相应的应急方案，至少每年组织一次演练。……",
                  covers=["safety_management"]),
        *[LawClause(key=f"mps120_31_1_{n}", law=m120, article="第三十一条", paragraph="第一款", item=f"第（{cn}）项",
                    text=a31 + text, covers=covers) for n, cn, text, covers in a31_items],
        LawClause(key="mps120_31_2", law=m120, article="第三十一条", paragraph="第二款",
                  text="对设有建筑消防设施的单位，公安派出所还应当检查单位是否对建筑消防设施定期组织维修保养。",
                  covers=["facility_fault"]),
        LawClause(key="gb25506_4_2_1", law="GB 25506—2010《消防控制室通用技术要求》", article="第4.2.1条",
                  text="消防控制室管理应符合下列要求：a）应实行每日24h专人值班制度，每班不应少于2人，值班人员应持有消防"
                       "控制室操作职业资格证书；b）消防设施日常维护管理应符合GB 25201的要求；c）应确保火灾自动报警"
                       "系统、灭火系统和其他联动控制设备处于正常工作状态，不得将应处于自动状态的设在手动状态；d）应确保高位"
                       "消防水箱、消防水池、气压水罐等消防储水设施水量充足，确保消防泵出水管阀门、自动喷水灭火系统管道"
                       "上的阀门常开；确保消防水泵、防排烟风机、防火卷帘等消防用电设备的配电柜开关处于自动位置（通电"
                       "状态）。", covers=["control_room", "facility_fault"]),
    ]


_EXITS = ["blocked_exit", "locked_exit", "corridor_storage"]
_EQUIPMENT = ["missing_extinguisher", "fire_door_open", "facility_fault", "evacuation_lighting"]
_ALL = ["blocked_exit", "locked_exit", "fire_door_open", "corridor_storage", "missing_extinguisher", "illegal_wiring",
        "fire_lane_blocked", "hydrant_obstructed", "window_obstacle", "facility_fault", "evacuation_lighting",
        "fire_use", "flammables", "mixed_use_dwelling", "safety_management", "control_room", "no_permit", "other"]
_UNIT_FINE = [ClausePenalty(target="unit", kind="fine", min_yuan=5000, max_yuan=50000)]
_A60_1 = "单位违反本法规定，有下列行为之一的，责令改正，处五千元以上五万元以下罚款："


def _article_60(law: str) -> list[LawClause]:
    """Fire Law art. 60, item by item: ¶1 (units) items 1–7; ¶2 (individuals: items 2–5); ¶3."""
    items = [("1", "第（一）项",
              "（一）消防设施、器材或者消防安全标志的配置、设置不符合国家标准、行业标准，或者未保持完好有效的",
              _EQUIPMENT),
             ("2", "第（二）项", "（二）损坏、挪用或者擅自拆除、停用消防设施、器材的", ["fire_door_open"]),
             ("3", "第（三）项", "（三）占用、堵塞、封闭疏散通道、安全出口或者有其他妨碍安全疏散行为的", _EXITS),
             ("4", "第（四）项", "（四）埋压、圈占、遮挡消火栓或者占用防火间距的", ["hydrant_obstructed"]),
             ("5", "第（五）项", "（五）占用、堵塞、封闭消防车通道，妨碍消防车通行的", ["fire_lane_blocked"]),
             ("6", "第（六）项", "（六）人员密集场所在门窗上设置影响逃生和灭火救援的障碍物的", ["window_obstacle"]),
             ("7", "第（七）项", "（七）对火灾隐患经消防救援机构通知后不及时采取措施消除的", _ALL)]
    out = [LawClause(key=f"fire_law_60_1_{n}", law=law, article="第六十条", paragraph="第一款", item=item,
                     text=_A60_1 + text + "。", covers=covers, penalties=_UNIT_FINE)
           for n, item, text, covers in items]
    out += [
        LawClause(key="fire_law_60_2", law=law, article="第六十条", paragraph="第二款",
                  text="个人有前款第二项、第三项、第四项、第五项行为之一的，处警告或者五百元以下罚款。",
                  covers=[*_EXITS, "fire_door_open", "hydrant_obstructed", "fire_lane_blocked"],
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
        HazardCategory(key="fire_lane_blocked", name="占用、堵塞、封闭消防车通道", severity="major",
                       clauses=["fire_law_28", "fire_law_16"], penalty_clauses=["fire_law_60_1_5", "fire_law_60_2"],
                       requirement="立即清除占用、堵塞消防车通道的车辆和物品，保持消防车通道畅通。", default_days=1),
        HazardCategory(key="hydrant_obstructed", name="埋压、圈占、遮挡消火栓",
                       clauses=["fire_law_28"], penalty_clauses=["fire_law_60_1_4", "fire_law_60_2"],
                       requirement="清除埋压、圈占、遮挡消火栓的物品，保持消火栓完好有效、便于取用。", default_days=1),
        HazardCategory(key="window_obstacle", name="人员密集场所门窗设置影响逃生和灭火救援的障碍物", severity="major",
                       clauses=["fire_law_28"], penalty_clauses=["fire_law_60_1_6"],
                       requirement="拆除门窗上影响逃生和灭火救援的障碍物（防盗网等），或者设置可从内部开启的逃生口。",
                       default_days=5),
        HazardCategory(key="facility_fault", name="消防设施未保持完好有效",
                       clauses=["fire_law_16"], penalty_clauses=["fire_law_60_1_1"],
                       requirement="维修、恢复火灾自动报警、自动灭火、消火栓等消防设施，并确保完好有效。",
                       default_days=7),
        HazardCategory(key="evacuation_lighting", name="疏散指示标志、应急照明缺失或损坏",
                       clauses=["fire_law_16"], penalty_clauses=["fire_law_60_1_1"],
                       requirement="按照国家标准设置、修复疏散指示标志和应急照明，并确保完好有效。", default_days=3),
        HazardCategory(key="fire_use", name="违规使用明火或在具有火灾、爆炸危险的场所吸烟",
                       clauses=["fire_law_21_1"], penalty_clauses=["fire_law_63"],
                       requirement="立即停止违规用火、吸烟；动火作业应当事先办理审批手续，落实现场监护等消防安全措施。",
                       default_days=1),
        HazardCategory(key="flammables", name="易燃易爆危险品违规存放、使用",
                       clauses=["fire_law_23"], penalty_clauses=["fire_law_60_1_7"],
                       requirement="按照消防技术标准和管理规定存放、使用易燃易爆危险品，清除违规存放的危险品。",
                       default_days=3),
        HazardCategory(key="mixed_use_dwelling", name="生产、储存、经营场所与居住场所设置在同一建筑物内",
                       severity="major", clauses=["fire_law_19"], penalty_clauses=["fire_law_61"],
                       requirement="将居住部分迁出，或者按照国家工程建设消防技术标准实施防火分隔、设置独立的疏散设施。",
                       default_days=15),
        HazardCategory(key="safety_management", name="消防安全制度、防火检查巡查、培训演练未落实",
                       clauses=["fire_law_16"], penalty_clauses=["fire_law_67"],
                       requirement="制定并落实消防安全制度和操作规程，组织防火检查、巡查，开展消防安全培训和演练，并"
                                   "建立记录。", default_days=15),
        HazardCategory(key="control_room", name="消防控制室值班不符合要求",
                       clauses=["fire_law_21_2", "fire_law_16"], penalty_clauses=["fire_law_67"],
                       requirement="落实消防控制室24小时值班制度，每班不少于2人，值班操作人员持证上岗，联动控制设备处于"
                                   "自动状态。", default_days=3),
        HazardCategory(key="no_permit", name="公众聚集场所未经消防安全检查擅自投入使用、营业", severity="major",
                       clauses=["fire_law_15_4"], penalty_clauses=["fire_law_58_1_4"],
                       requirement="停止使用、营业，依法申请投入使用、营业前消防安全检查，取得许可后方可投入使用、营业。",
                       default_days=1),
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
    inspection_number_format: str = Field(
        "{station}消检字〔{year}〕第{seq:04d}号", title="Inspection record number format",
        description="Python format with station, year, seq (per year) for 消防监督检查记录.")
    checklists_file: str = Field(
        "", max_length=400, title="Checklists file",
        description="Inspection checklists per unit type (YAML, see docs/inspections.md); empty: the shipped "
                    "config/checklists.yaml.")
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
