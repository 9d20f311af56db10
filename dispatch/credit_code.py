"""The unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters, the last a check character.

Characters come from the 31 of `ALPHABET` (digits and capitals without I, O, S, V, Z). Position i (0-16) weighs
3**i mod 31; the check character is the one whose value is 31 minus the weighted sum mod 31 (31 → 0).
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
VALUES = {c: i for i, c in enumerate(ALPHABET)}
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28
LENGTH = 18


def check_character(first17: str) -> str:
    """The check character of a code's first 17 characters (valid characters assumed)."""
    total = sum(VALUES[c] * w for c, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def normalise(code: str) -> str:
    """Upper case, spaces removed (how people type and spreadsheets store it)."""
    return "".join(code.split()).upper()


def validate(code: str) -> str:
    """The normalised code, or ValueError saying what is wrong with it."""
    norm = normalise(code)
    if len(norm) != LENGTH:
        raise ValueError(f"a unified social credit code has {LENGTH} characters, not {len(norm)}")
    bad = [(i + 1, c) for i, c in enumerate(norm) if c not in VALUES]
    if bad:
        pos, char = bad[0]
        raise ValueError(f"character {pos} ({char!r}) is not allowed in a unified social credit code "
                         "(digits and capitals without I, O, S, V, Z)")
    expected = check_character(norm[:17])
    if norm[17] != expected:
        raise ValueError(f"check character {norm[17]!r} does not match: the first 17 characters give {expected!r} "
                         "(GB 32100-2015); a character was mistyped")
    return norm


def make(first17: str) -> str:
    """A valid code from 17 characters (tests, demo data)."""
    return first17 + check_character(first17)
