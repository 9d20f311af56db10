"""The legal basis of a penalty, checked against the clause database (config `hazards.law_clauses`).

A penalty clause is cited only for a violation it covers (its `covers` holds the hazard's category), for a penalty
it allows (target and kind), and a fine's amount must lie within the range of every clause cited. Anything else is
refused with a clear error (400), before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence

from config.hazards import HazardsConfig, LawClause
from dispatch.errors import BadRequest

TARGETS = {"unit": "单位", "individual": "个人"}
KINDS = {"fine": "罚款", "warning": "警告"}


def penalty_basis(hcfg: HazardsConfig, category: str, target: str, kind: str, amount_yuan: int,
                  keys: Sequence[str] | None = None) -> list[LawClause]:
    """The clauses a penalty cites: `keys` as given (each checked), or by default the category's penalty clauses
    (then the matching rule's) that cover the category and allow this penalty. Raises BadRequest otherwise."""
    what = f"a penalty {target}/{kind} ({TARGETS.get(target, target)}{KINDS.get(kind, kind)})"
    if keys:
        cited = []
        for k in dict.fromkeys(keys):
            c = hcfg.clause(k)
            if c is None:
                raise BadRequest(f"unknown law clause {k!r}")
            if category not in c.covers:
                raise BadRequest(f"{c.citation()} does not cover the violation {category!r}; it covers "
                                 f"{c.covers or 'no violation'}")
            if c.allows(target, kind) is None:
                raise BadRequest(f"{c.citation()} does not allow {what}")
            cited.append(c)
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
