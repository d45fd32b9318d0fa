"""Boost arithmetic: which boosts apply to an award, and what they make of it.

All boosts that apply at the award's time stack by multiplication. The product is
computed exactly, in decimal arithmetic with as many digits as it needs, from each
multiplier's shortest decimal form, and rounded once: down if any applied boost rounds
down, else to nearest (halves up) if any rounds to nearest, else up. The entry records
the product to MULTIPLIER_DIGITS significant digits (callers read it as a double): a
product of many 17-digit multipliers has no bound on its length.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal

from server.domain.model import MAX_ENTRY_POINTS, Boost, Rounding, User, attributes_match

ONE = Decimal(1)
# Digits enough that no product is ever rounded (a multiplier's shortest form has at most
# 17 significant digits; precision is a bound, not a cost: small products stay cheap).
EXACT = Context(prec=100_000)
# Significant digits of the multiplier an entry records: IEEE decimal128's, exact for two
# stacked boosts and far past a double's, and at most about 45 characters as text.
MULTIPLIER_DIGITS = 34
RECORDED = Context(prec=MULTIPLIER_DIGITS, rounding=ROUND_HALF_EVEN)
# Live boosts (neither archived nor ended; scheduled ones count) one user may have in one
# system, and global ones a system may have: every award scans a user's and the system's
# live boosts, and every process holds them all in memory. CreateBoosts refuses items
# beyond it.
MAX_LIVE_BOOSTS = 100


@dataclass(frozen=True)
class Boosted:
    amount: int  # what the boosts make of the base amount (before max_points)
    base_amount: int
    multiplier: Decimal = ONE
    boost_ids: tuple[str, ...] = ()


def applying(candidates: Iterable[Boost], user: User, when: datetime) -> list[Boost]:
    """Of a system's global boosts and the user's own, those that apply at `when`."""
    return [
        boost
        for boost in candidates
        if boost.applies(when) and attributes_match(boost.user_attributes, user.attributes)
    ]


def product(boosts: Sequence[Boost]) -> Decimal:
    """The exact product of the multipliers (1 for none)."""
    result = ONE
    for boost in boosts:
        result = EXACT.multiply(result, boost.multiplier)
    return result


def multiply(amount: int, boosts: Sequence[Boost]) -> Boosted:
    """A positive award of `amount`, multiplied by the boosts and rounded once."""
    if not boosts:
        return Boosted(amount, amount)
    factor = product(boosts)
    roundings = {boost.rounding for boost in boosts}
    if Rounding.DOWN in roundings:
        mode = ROUND_FLOOR
    elif Rounding.NEAREST in roundings:
        mode = ROUND_HALF_UP
    else:
        mode = ROUND_CEILING
    exact = EXACT.multiply(Decimal(amount), factor)
    boosted = int(exact.to_integral_value(rounding=mode))
    recorded = RECORDED.plus(factor)
    return Boosted(min(boosted, MAX_ENTRY_POINTS), amount, recorded, tuple(b.id for b in boosts))
