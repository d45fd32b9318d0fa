"""A user's balance in a system as the API shows it: the account's figures with the
level its basis reaches on the system's ladder."""

from __future__ import annotations

from server.domain import levels
from server.domain.book import Book
from server.domain.ledger import Account
from server.domain.levels import Ladder
from server.domain.model import Balance, PointsSystem
from server.domain.rules import Rules


def balance_in(book: Book, system: PointsSystem, rules: Rules) -> Balance:
    """The user's balance in `system` as the decision at hand leaves it, with their level."""
    return balance_of(book.accounts[system.key], system, rules)


def balance_of(account: Account, system: PointsSystem, rules: Rules) -> Balance:
    ladder = rules.levels.get(system.key, Ladder())
    level = levels.level_of(ladder, levels.basis(account, system)) if ladder else None
    return account.to_balance(system.max_points, level)
