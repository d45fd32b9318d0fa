"""Users' views read together, on both stores: one statement of many asks (one
PostgreSQL) answers each ask as its own read would, and concurrent GetBalance calls,
coalesced, each get their own user's standing, as their own caller."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from server.domain import commands
from server.domain.access import Caller, Scope
from server.domain.errors import UserNotFound
from server.domain.model import EntryType
from server.services.held import callers
from server.services.ports import ViewAsk
from server.services.tally import Tally
from server.services.use_cases import reads
from server.store.database import SqlStore
from tests.conftest import T0
from tests.integration.helpers import award, deduct, system


def test_views_read_together_equal_each_read_alone(tally: Tally, store: SqlStore) -> None:
    system(tally, "xp")
    system(tally, "coins")
    for amount in (1, 2, 3, 4, 5):
        award(tally, "ann", amount)
    deduct(tally, "ann", 2)
    award(tally, "bob", 7, system_key="coins")  # bob has no xp account
    award(tally, "cat", 9)
    asks = [
        ViewAsk("ann", "xp", 3),
        ViewAsk("nobody", "xp", 10),  # no such user
        ViewAsk("bob", "xp", 10),  # a user with no account in the system
        ViewAsk("ann", "xp", 0),  # the same user again, no entries
        ViewAsk("cat", "xp", 10),
        ViewAsk("bob", "coins", 10),
        ViewAsk("ann", "xp", 10, types=frozenset({EntryType.DEDUCT})),  # read alone
        ViewAsk("ann", "xp", 2, before_sequence=4),  # read alone
    ]
    with store.unit_of_work(write=False) as uow:
        together = uow.users.views(asks)
        alone = [
            uow.users.view(a.user_id, a.system_key, a.types, a.before_sequence, a.limit)
            for a in asks
        ]
    assert together == alone
    ann, nobody, bob, ann_again, cat = together[:5]
    assert nobody is None
    assert bob is not None
    assert bob.account is None
    assert bob.entries == []
    assert ann is not None
    assert ann.account is not None
    assert ann.account.balance == 13
    assert [e.amount for e in ann.entries] == [-2, 5, 4]  # newest first, three of them
    assert ann_again is not None
    assert ann_again.entries == []
    assert cat is not None
    assert [e.amount for e in cat.entries] == [9]


def test_concurrent_balances_are_each_their_users_and_their_callers(
    tally: Tally,
) -> None:
    """GetBalance calls at once (coalesced on PostgreSQL): each answer is its own
    user's, and a key limited to another system never sees a user that only exists
    elsewhere, whichever call led the read."""
    system(tally, "xp")
    system(tally, "coins")
    users = [f"user-{i}" for i in range(24)]
    for i, user in enumerate(users):
        award(tally, user, i + 1)
    award(tally, "coins-only", 5, system_key="coins")
    everyone = Caller("all", Scope.READ)
    xp_only = Caller("xp", Scope.READ, frozenset({"xp"}))
    start = threading.Barrier(8)

    def balance_of(user: str) -> int:
        cmd = commands.GetBalance("xp", user, 10)
        return callers.context_of(everyone).run(reads.get_balance, tally, cmd, T0).balance.balance

    def hidden(_: int) -> bool:
        cmd = commands.GetBalance("xp", "coins-only", 10)
        try:
            callers.context_of(xp_only).run(reads.get_balance, tally, cmd, T0)
        except UserNotFound:
            return True
        return False

    def run(worker: int) -> list[tuple[str, int]]:
        start.wait(10)
        seen = []
        for round_ in range(10):
            user = users[(worker * 7 + round_) % len(users)]
            seen.append((user, balance_of(user)))
            if round_ % 3 == 0:
                assert hidden(round_)
        return seen

    with ThreadPoolExecutor(8) as pool:
        answers = [pair for part in pool.map(run, range(8)) for pair in part]
    assert len(answers) == 80
    assert all(balance == int(user.split("-")[1]) + 1 for user, balance in answers)
    # a key of every system sees coins-only through xp: a user, with no xp account
    view = callers.context_of(everyone).run(
        reads.get_balance, tally, commands.GetBalance("xp", "coins-only", 0), T0
    )
    assert view.balance.balance == 0
