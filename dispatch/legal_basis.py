"""The legal basis of a penalty, checked against the clause database (config `hazards.law_clauses`), and the
station's own authority (config `hazards.station_authority`).

A penalty clause is cited only for a violation it covers (its `covers` holds the hazard's category), for a penalty
it allows (target and kind), and a fine's amount must lie within the range of every clause cited. Anything else is
refused with a clear error (400), before anything is written. An order to correct at once (责令立即改正) rests on an
item-level clause that covers the violation. A penalty beyond the station's authority is not decided by the station:
the case is referred (移送) to the fire-rescue authority.
"""

from __future__ import annotations

from collections.abc import Sequence

from config.hazards import HazardsConfig, LawClause
from dispatch.errors import BadRequest

TARGETS = {"unit": "单位", "individual": "个人"}
KINDS = {"fine": "罚款", "warning": "警告"}


def beyond_authority(hcfg: HazardsConfig, target: str, kind: str, amount_yuan: int) -> str | None:
    """Why the station may not decide this penalty itself, as the 案件移送书 prints it; None when it may."""
    what = f"对{TARGETS.get(target, target)}{KINDS.get(kind, kind)}"
    limit = next((a for a in hcfg.station_authority if (a.target, a.kind) == (target, kind)), None)
    if limit is None:
        return f"本所无权决定{what}"
    if kind == "fine" and amount_yuan > limit.max_yuan:
        return f"本所可决定的{what}不超过{limit.max_yuan:,}元，拟处罚款{amount_yuan:,}元"
    return None


def referral_authority(hcfg: HazardsConfig, fire_agency: str | None) -> str:
    """The authority a case is referred to: configured, else the fire agency's name, else a generic one."""
    return hcfg.referral_authority or fire_agency or "辖区消防救援机构"


def cited_covering(hcfg: HazardsConfig, category: str, keys: Sequence[str]) -> list[LawClause]:
    """The clauses `keys` name (each once, in order), each checked to exist and to cover the violation."""
    cited = []
    for k in dict.fromkeys(keys):
        c = hcfg.clause(k)
        if c is None:
            raise BadRequest(f"unknown law clause {k!r}")
        if category not in c.covers:
            raise BadRequest(f"{c.citation()} does not cover the violation {category!r}; it covers "
                             f"{c.covers or 'no violation'}")
        cited.append(c)
    return cited


def order_basis(hcfg: HazardsConfig, category: str, keys: Sequence[str] | None = None) -> list[LawClause]:
    """The item-level clause an order to correct at once (责令立即改正) rests on: `keys` as given, each checked to
    cover the violation, or by default the category's first penalty clause on a unit that covers it."""
    if keys:
        return cited_covering(hcfg, category, keys)
    cat = hcfg.category(category)
    found = next((c for k in (cat.penalty_clauses if cat else []) if (c := hcfg.clause(k)) is not None
                  and category in c.covers and any(p.target == "unit" for p in c.penalties)), None)
    if found is None:
        raise BadRequest(f"no clause in the clause database covers {category!r} for an order to correct at once")
    return [found]


def penalty_basis(hcfg: HazardsConfig, category: str, target: str, kind: str, amount_yuan: int,
                  keys: Sequence[str] | None = None) -> list[LawClause]:
    """The clauses a penalty cites: `keys` as given (each checked), or by default the category's penalty clauses
    (then the matching rule's) that cover the category and allow this penalty. Raises BadRequest otherwise."""
    what = f"a penalty {target}/{kind} ({TARGETS.get(target, target)}{KINDS.get(kind, kind)})"
    if keys:
        cited = cited_covering(hcfg, category, keys)
        for clause in cited:
            if clause.allows(target, kind) is None:
                raise BadRequest(f"{clause.citation()} does not allow {what}")
    else:
        cat = hcfg.category(category)
        rule_keys = [k for r in hcfg.rules_for(target) if r.kind == kind for k in r.clauses]
        candidates = [c for k in dict.fromkeys([*(cat.penalty_clauses if cat else []), *rule_keys])
                      if (c := hcfg.clause(k)) is not None and category in c.covers and c.allows(target, kind)]
        if not candidates:
            raise BadRequest(f"no clause in the clause database covers {category!r} with {what}")
        cited = candidates[:1]
    if kind == "fine":
        for c in cited:
            p = c.allows(target, kind)
            assert p is not None
            if not p.min_yuan <= amount_yuan <= p.max_yuan:
                raise BadRequest(f"{c.citation()} allows a fine of {p.min_yuan}–{p.max_yuan} yuan for "
                                 f"{TARGETS.get(target, target)}; {amount_yuan} is outside that range")
    return cited
