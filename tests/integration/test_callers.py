"""What the use cases decide from the caller: a key limited to some systems, and the
per-user write limit. Both stores."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import TypeVar

import pytest

from server.domain import commands, reports
from server.domain.access import Caller, Scope
from server.domain.errors import EntryNotFound, RateLimited, ScopeInsufficient, UserNotFound
from server.domain.model import UserProfile
from server.services.held import callers
from server.services.held.limits import RateLimiter
from server.services.tally import Tally
from server.services.use_cases import analytics, boosts, levels, points_changes, reads, systems
from server.store.database import SqlStore
from tests.conftest import T0
from tests.integration.helpers import award, balance, deduct, system

T = TypeVar("T")
XP_ONLY = Caller("xpkey", Scope.ADMIN, frozenset({"xp"}))


def as_caller(caller: Caller, work: Callable[[], T]) -> T:
    return callers.context_of(caller).run(work)


def ledger_size(tally: Tally, user: str, system_key: str) -> int:
    try:
        cmd = commands.ListTransactions(system_key, user, page_size=100)
        return len(reads.list_transactions(tally, cmd, T0).entries)
    except Exception:  # noqa: BLE001 - no user, no entries
        return 0


@pytest.fixture
def two_systems(tally: Tally) -> Tally:
    for key in ("coins", "gems", "xp"):
        system(tally, key)
    award(tally, "alice", 10, system_key="coins")
    award(tally, "alice", 10, system_key="xp")
    return tally


class TestSystemsLimitedKey:
    def test_writes_naming_another_system_are_refused_and_write_nothing(
        self, two_systems: Tally
    ) -> None:
        tally = two_systems
        refused = [
            lambda: award(tally, "alice", 5, system_key="coins"),
            lambda: deduct(tally, "alice", 5, system_key="coins"),
            lambda: award(tally, "bob", 5, system_key="coins"),  # would create bob
        ]
        for call in refused:
            with pytest.raises(ScopeInsufficient) as denied:
                as_caller(XP_ONLY, call)
            assert denied.value.metadata["system_key"] == "coins"
        assert balance(tally, "alice", system_key="coins") == 10
        assert ledger_size(tally, "bob", "coins") == 0
        assert as_caller(XP_ONLY, lambda: award(tally, "alice", 5)).balance.balance == 15

    def test_a_systems_absent_or_not_is_not_revealed(self, two_systems: Tally) -> None:
        with pytest.raises(ScopeInsufficient):
            as_caller(XP_ONLY, lambda: systems.get_system(two_systems, "nosuchsystem"))

    def test_reads_and_configuration(self, two_systems: Tally) -> None:
        tally = two_systems
        denied = [
            lambda: balance(tally, "alice", system_key="coins"),
            lambda: systems.get_system(tally, "coins"),
            lambda: systems.create_system(tally, commands.CreateSystem(key="new"), T0),
            lambda: systems.update_system(
                tally, commands.UpdateSystem(key="coins", fields=frozenset({"name"})), T0
            ),
            lambda: list(reads.stream_history(tally, commands.StreamHistory("coins", "alice"), T0)),
        ]
        for call in denied:
            with pytest.raises(ScopeInsufficient):
                as_caller(XP_ONLY, call)
        assert as_caller(XP_ONLY, lambda: balance(tally, "alice")) == 10
        assert as_caller(XP_ONLY, lambda: systems.get_system(tally, "xp")).key == "xp"

    def test_list_systems_shows_only_the_keys_systems_page_by_page(self, tally: Tally) -> None:
        for i in range(12):
            system(tally, f"s{i:02d}")
        mine = Caller("k", Scope.READ, frozenset({"s01", "s05", "s06", "s11", "gone"}))
        seen, token = [], ""
        while True:
            page = as_caller(mine, lambda t=token: systems.list_systems(tally, 2, t))  # type: ignore[misc]
            assert len(page.items) <= 2
            seen += [s.key for s in page.items]
            token = page.next_page_token
            if not token:
                break
        assert seen == ["s01", "s05", "s06", "s11"]
        everything = systems.list_systems(tally, 100, "")
        assert len(everything.items) == 12

    def test_reversing_an_entry_of_another_system_finds_no_entry(self, two_systems: Tally) -> None:
        tally = two_systems
        entry = award(tally, "alice", 3, system_key="coins").entry
        cmd = commands.Reverse(entry_id=entry.id, reason="oops")
        with pytest.raises(EntryNotFound):
            as_caller(XP_ONLY, lambda: points_changes.reverse(tally, cmd, T0))
        assert balance(tally, "alice", system_key="coins") == 13

    def test_a_batch_refuses_the_items_of_other_systems_alone(self, two_systems: Tally) -> None:
        items: list[commands.Award | Exception] = [
            commands.Award("xp", UserProfile("alice"), 1),
            commands.Award("coins", UserProfile("alice"), 1),
        ]
        results = as_caller(
            XP_ONLY,
            lambda: points_changes.award_batch(two_systems, items, T0),  # type: ignore[arg-type]
        )
        assert not isinstance(results[0], Exception)
        assert isinstance(results[1], ScopeInsufficient)
        assert balance(two_systems, "alice", system_key="coins") == 10

    def test_visible_filters_systems_for_record_event(self) -> None:
        assert XP_ONLY.visible(["coins", "xp", "gems"]) == ["xp"]
        assert Caller("k", Scope.WRITE).visible(["coins", "xp"]) == ["coins", "xp"]

    def test_require_for_request_dependent_scopes(self) -> None:
        Caller("k", Scope.ADMIN).require(Scope.ADMIN, "a global boost")
        with pytest.raises(ScopeInsufficient) as denied:
            Caller("k", Scope.WRITE).require(Scope.ADMIN, "a global boost")
        assert denied.value.metadata == {"scope": "write", "required_scope": "admin"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestWriteLimits:
    @pytest.fixture
    def limited(self, store: SqlStore) -> Tally:
        tally = Tally(store, limits=RateLimiter(rate=1, burst=2, clock=Clock()))
        system(tally)
        return tally

    def test_over_the_limit_is_refused_and_writes_nothing(self, limited: Tally) -> None:
        award(limited, "alice", 1)
        award(limited, "alice", 1)
        with pytest.raises(RateLimited) as refused:
            award(limited, "alice", 1)
        assert refused.value.retry_after_seconds == pytest.approx(1.0)
        with pytest.raises(RateLimited):
            deduct(limited, "alice", 1)
        assert balance(limited, "alice") == 2
        assert ledger_size(limited, "alice", "xp") == 2
        award(limited, "bob", 1)  # another user has their own bucket

    def test_reversals_count(self, limited: Tally) -> None:
        entry = award(limited, "alice", 5).entry
        award(limited, "alice", 1)
        with pytest.raises(RateLimited):
            points_changes.reverse(limited, commands.Reverse(entry_id=entry.id, reason="x"), T0)
        assert balance(limited, "alice") == 6

    def test_a_batch_item_over_the_limit_fails_alone(self, limited: Tally) -> None:
        items = [commands.Award("xp", UserProfile("alice"), 1) for _ in range(3)]
        items.append(commands.Award("xp", UserProfile("bob"), 1))
        results = points_changes.award_batch(limited, items, T0)
        assert [type(r).__name__ for r in results] == [
            "WriteResult",
            "WriteResult",
            "RateLimited",
            "WriteResult",
        ]
        assert balance(limited, "alice") == 2


class TestUsersOfOtherSystems:
    """L5 of issue 21: a key limited to some systems does not learn whether a user exists
    elsewhere. A user with an account only in coins is, to a key limited to xp, exactly a
    user never seen: USER_NOT_FOUND from every read that names a user (zeros before), and
    the multiplier of a user never seen. Keys of every system keep today's answers."""

    @pytest.fixture
    def elsewhere(self, tally: Tally) -> Tally:
        for key in ("coins", "xp"):
            system(tally, key)
        gold = commands.BoostFields("", "gold", Decimal(3), None, None, None, (("tier", "gold"),))
        boosts.create_boosts(tally, "xp", [gold], T0)
        profile = UserProfile("bea", attributes={"tier": "gold"})
        points_changes.award(tally, commands.Award(system_key="coins", user=profile, amount=5), T0)
        return tally

    def reads(self, tally: Tally, user: str) -> list[Callable[[], object]]:
        window = reports.Window("2026-01-01", "2026-01-02")
        return [
            lambda: reads.get_balance(tally, commands.GetBalance("xp", user), T0),
            lambda: reads.list_transactions(tally, commands.ListTransactions("xp", user), T0),
            lambda: list(reads.stream_history(tally, commands.StreamHistory("xp", user), T0)),
            lambda: levels.get_user_level(tally, "xp", user, T0),
            lambda: analytics.user_points_summary(
                tally, reports.GetUserPointsSummary("xp", user, window)
            ),
        ]

    @pytest.mark.parametrize("scope", [Scope.READ, Scope.ADMIN])
    def test_a_limited_key_cannot_tell_a_user_of_another_system_from_none(
        self, elsewhere: Tally, scope: Scope
    ) -> None:
        xp_only = Caller("xpkey", scope, frozenset({"xp"}))
        token = Caller("xpkey", Scope.READ, frozenset({"xp"}), user_id="bea")
        for caller in (xp_only, token):
            for user in ("bea", "nobody"):
                if caller.is_user_token and user != "bea":
                    continue
                for read in self.reads(elsewhere, user):
                    with pytest.raises(UserNotFound) as caught:
                        as_caller(caller, read)
                    assert (caught.value.reason, caught.value.metadata["user_id"]) == (
                        "USER_NOT_FOUND",
                        user,
                    )
                factor, applied = as_caller(
                    caller, partial(boosts.get_multiplier, elsewhere, "xp", user, T0)
                )
                assert (factor, applied) == (Decimal(1), [])

    def test_keys_of_every_system_or_of_the_users_system_see_them(self, elsewhere: Tally) -> None:
        both = Caller("bothkey", Scope.READ, frozenset({"xp", "coins"}))
        every = Caller("allkey", Scope.READ)
        for caller in (both, every):
            seen = as_caller(
                caller, lambda: reads.get_balance(elsewhere, commands.GetBalance("xp", "bea"), T0)
            )
            assert (seen.balance.balance, seen.recent) == (0, [])
            assert (
                as_caller(caller, lambda: levels.get_user_level(elsewhere, "xp", "bea", T0)).points
                == 0
            )
            factor, _ = as_caller(caller, lambda: boosts.get_multiplier(elsewhere, "xp", "bea", T0))
            assert factor == Decimal(3)
            with pytest.raises(UserNotFound):
                as_caller(
                    caller,
                    lambda: reads.get_balance(elsewhere, commands.GetBalance("xp", "nobody"), T0),
                )
