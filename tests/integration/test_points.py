"""The points use cases against real stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from server.domain import commands
from server.domain.errors import (
    AlreadyReversed,
    EntryNotFound,
    IdempotencyKeyInvalid,
    IdempotencyKeyReused,
    InsufficientPoints,
    NotReversible,
    SystemExists,
    SystemNotFound,
    UserNotFound,
    ValidationFailed,
)
from server.domain.model import EntryType, LedgerEntry, LevelBasis, UserProfile
from server.services.tally import Tally
from server.services.use_cases import points_changes, reads, sweeps, systems
from server.store.database import SqlStore
from tests.conftest import T0
from tests.integration.helpers import award, balance, deduct, later, system


def entries(tally: Tally, user: str, **fields: Any) -> list[LedgerEntry]:
    cmd = commands.ListTransactions("xp", user, page_size=100, **fields)
    return reads.list_transactions(tally, cmd, T0).entries


class TestSystems:
    def test_create_get_and_defaults(self, tally: Tally) -> None:
        created = systems.create_system(tally, commands.CreateSystem(key="xp"), T0)
        assert created.name == "xp"
        assert created.level_basis is LevelBasis.BALANCE
        assert systems.get_system(tally, "xp") == created

    def test_duplicate_key_is_refused(self, tally: Tally) -> None:
        system(tally)
        with pytest.raises(SystemExists):
            systems.create_system(tally, commands.CreateSystem(key="xp", name="other"), T0)
        assert systems.get_system(tally, "xp").name == "xp"

    def test_unknown_system(self, tally: Tally) -> None:
        with pytest.raises(SystemNotFound):
            systems.get_system(tally, "nope")

    def test_list_pages_visit_every_system_once(self, tally: Tally) -> None:
        keys = [f"s{i:02d}" for i in range(7)]
        for key in keys:
            system(tally, key)
        seen, token = [], ""
        while True:
            page = systems.list_systems(tally, 3, token)
            seen += [s.key for s in page.items]
            token = page.next_page_token
            if not token:
                break
        assert seen == keys

    def test_update_changes_only_named_fields(self, tally: Tally) -> None:
        system(tally)
        cmd = commands.UpdateSystem(
            key="xp", fields=frozenset({"max_points"}), name="ignored", max_points=500
        )
        updated = systems.update_system(tally, cmd, later(5))
        assert (updated.name, updated.max_points, updated.update_time) == ("xp", 500, later(5))
        assert systems.get_system(tally, "xp") == updated

    def test_update_unknown_system(self, tally: Tally) -> None:
        with pytest.raises(SystemNotFound):
            systems.update_system(
                tally, commands.UpdateSystem(key="nope", fields=frozenset({"name"})), T0
            )


class TestAward:
    def test_award_creates_user_and_credits(self, tally: Tally) -> None:
        system(tally)
        result = award(tally, "alice", 40, reason="signup", metadata={"campaign": "x"})
        assert (result.entry.amount, result.entry.type) == (40, EntryType.AWARD)
        assert result.entry.balance_after == 40
        assert result.entry.metadata == {"campaign": "x"}
        assert result.balance.balance == result.balance.total_earned == 40
        assert result.balance.last_earned_time == T0
        assert result.entry.sequence > 0

    def test_unknown_system_writes_nothing(self, tally: Tally) -> None:
        with pytest.raises(SystemNotFound):
            award(tally, "alice", 10, system_key="nope")
        system(tally)
        with pytest.raises(UserNotFound):
            balance(tally, "alice")

    def test_max_points_caps_the_award(self, tally: Tally) -> None:
        system(tally, max_points=100)
        award(tally, "alice", 80)
        capped = award(tally, "alice", 50)
        assert (capped.entry.amount, capped.entry.base_amount, capped.entry.capped) == (
            20,
            50,
            True,
        )
        assert capped.balance.balance == 100
        full = award(tally, "alice", 5)
        assert (full.entry.amount, full.entry.capped, full.balance.balance) == (0, True, 100)

    def test_validate_only_writes_nothing(self, tally: Tally) -> None:
        system(tally)
        dry = award(tally, "alice", 25, validate_only=True, idempotency_key="k")
        assert (dry.entry.amount, dry.balance.balance, dry.entry.id) == (25, 25, "")
        with pytest.raises(UserNotFound):
            balance(tally, "alice")
        real = award(tally, "alice", 25, idempotency_key="k")
        assert not real.replayed
        assert real.balance.balance == 25

    def test_bad_input_names_every_field(self, tally: Tally) -> None:
        system(tally)
        with pytest.raises(ValidationFailed) as caught:
            points_changes.award(
                tally,
                commands.Award(
                    system_key="XP",
                    user=UserProfile(" bob"),
                    amount=0,
                    reason="r" * 501,
                    metadata={"blob": "x" * 17_000},
                    expire_time=T0,
                ),
                T0,
            )
        fields = {v.field for v in caught.value.violations}
        assert fields == {"system_key", "user.id", "amount", "reason", "metadata", "expire_time"}

    @pytest.mark.parametrize("amount", [-1, 0, 1_000_000_001])
    def test_amount_out_of_range(self, tally: Tally, amount: int) -> None:
        system(tally)
        with pytest.raises(ValidationFailed) as caught:
            award(tally, "alice", amount)
        assert [v.field for v in caught.value.violations] == ["amount"]

    def test_profile_fields_update_the_user(self, tally: Tally) -> None:
        system(tally)
        cmd = commands.Award("xp", UserProfile("alice", display_name="Al"), 1)
        points_changes.award(tally, cmd, T0)
        cmd = commands.Award("xp", UserProfile("alice", email="a@example.com"), 1)
        points_changes.award(tally, cmd, T0)
        with tally.store.unit_of_work(write=False) as uow:
            user = uow.users.get("alice")
        assert user is not None
        assert (user.display_name, user.email) == ("Al", "a@example.com")


class TestIdempotency:
    def test_replay_returns_the_original_response(self, tally: Tally) -> None:
        system(tally)
        first = award(tally, "alice", 10, idempotency_key="order-1")
        award(tally, "alice", 5)
        again = award(tally, "alice", 10, idempotency_key="order-1", at=later(60))
        assert again.replayed
        assert again.entry == first.entry
        assert again.balance == first.balance
        assert balance(tally, "alice") == 15

    def test_same_key_different_request_is_refused(self, tally: Tally) -> None:
        system(tally)
        award(tally, "alice", 10, idempotency_key="order-1")
        with pytest.raises(IdempotencyKeyReused):
            award(tally, "alice", 11, idempotency_key="order-1")
        with pytest.raises(IdempotencyKeyReused):
            deduct(tally, "alice", 10, idempotency_key="order-1")

    def test_keys_are_scoped_to_system_and_user(self, tally: Tally) -> None:
        system(tally)
        system(tally, "coins")
        award(tally, "alice", 10, idempotency_key="k")
        assert not award(tally, "bob", 10, idempotency_key="k").replayed
        assert not award(tally, "alice", 10, idempotency_key="k", system_key="coins").replayed

    def test_invalid_key(self, tally: Tally) -> None:
        system(tally)
        with pytest.raises(IdempotencyKeyInvalid):
            award(tally, "alice", 10, idempotency_key="has space")

    def test_failed_call_does_not_use_up_the_key(self, tally: Tally) -> None:
        system(tally)
        award(tally, "alice", 5)
        with pytest.raises(InsufficientPoints):
            deduct(tally, "alice", 10, idempotency_key="d1")
        award(tally, "alice", 5)
        assert deduct(tally, "alice", 10, idempotency_key="d1").balance.balance == 0


class TestDeduct:
    def test_deduct_spends(self, tally: Tally) -> None:
        system(tally)
        award(tally, "alice", 30)
        result = deduct(tally, "alice", 12, reason="shop")
        assert (result.entry.amount, result.entry.type) == (-12, EntryType.DEDUCT)
        assert (result.balance.balance, result.balance.total_spent) == (18, 12)

    def test_insufficient_points_reports_available_and_requested(self, tally: Tally) -> None:
        system(tally)
        award(tally, "alice", 30)
        with pytest.raises(InsufficientPoints) as caught:
            deduct(tally, "alice", 31)
        assert caught.value.metadata == {"available": "30", "requested": "31"}
        assert balance(tally, "alice") == 30

    def test_unknown_user(self, tally: Tally) -> None:
        system(tally)
        with pytest.raises(UserNotFound):
            deduct(tally, "ghost", 1)

    def test_dry_run_reports_insufficient_points(self, tally: Tally) -> None:
        system(tally)
        award(tally, "alice", 3)
        with pytest.raises(InsufficientPoints):
            deduct(tally, "alice", 4, validate_only=True)
        assert deduct(tally, "alice", 3, validate_only=True).balance.balance == 0
        assert balance(tally, "alice") == 3


class TestExpiry:
    def test_spending_takes_earliest_expiring_credit_first(self, tally: Tally) -> None:
        system(tally)
        award(tally, "alice", 100)  # never expires
        award(tally, "alice", 30, expire_time=later(200))
        award(tally, "alice", 20, expire_time=later(100))
        deduct(tally, "alice", 25, at=later(10))  # all 20 of the first lot, 5 of the second
        assert balance(tally, "alice", at=later(99)) == 125
        # at 100 nothing is left of the 20-lot; at 200 the 25 left of the 30-lot lapse
        assert balance(tally, "alice", at=later(100)) == 125
        assert balance(tally, "alice", at=later(200)) == 100
        expiries = [e for e in entries(tally, "alice") if e.type is EntryType.EXPIRE]
        assert [(e.amount, e.create_time) for e in expiries] == [(-25, later(200))]

    def test_expiry_is_applied_before_a_deduct(self, tally: Tally) -> None:
        system(tally)
        award(tally, "alice", 50, expire_time=later(60))
        with pytest.raises(InsufficientPoints) as caught:
            deduct(tally, "alice", 10, at=later(61))
        assert caught.value.available == 0

    def test_totals_stay_consistent(self, tally: Tally) -> None:
        system(tally)
        award(tally, "alice", 40, expire_time=later(10))
        award(tally, "alice", 10)
        deduct(tally, "alice", 15, at=later(5))
        view = reads.get_balance(tally, commands.GetBalance("xp", "alice", 100), later(11))
        b = view.balance
        assert (b.balance, b.total_earned, b.total_spent, b.total_expired) == (10, 50, 15, 25)
        assert b.balance == sum(e.amount for e in view.recent)


class TestReverse:
    def test_reversing_an_award(self, tally: Tally) -> None:
        system(tally)
        first = award(tally, "alice", 40)
        award(tally, "alice", 5)
        result = points_changes.reverse(
            tally, commands.Reverse(first.entry.id, "mistake"), later(1)
        )
        assert (result.entry.type, result.entry.amount) == (EntryType.REVERSAL, -40)
        assert result.entry.reverses_entry_id == first.entry.id
        assert (result.balance.balance, result.balance.total_earned) == (5, 5)

    def test_reversing_a_deduct_gives_points_back(self, tally: Tally) -> None:
        system(tally)
        award(tally, "alice", 40)
        spent = deduct(tally, "alice", 15)
        result = points_changes.reverse(tally, commands.Reverse(spent.entry.id), later(1))
        assert result.entry.amount == 15
        assert (result.balance.balance, result.balance.total_spent) == (40, 0)

    def test_an_entry_reverses_once(self, tally: Tally) -> None:
        system(tally)
        first = award(tally, "alice", 40)
        points_changes.reverse(tally, commands.Reverse(first.entry.id), T0)
        with pytest.raises(AlreadyReversed):
            points_changes.reverse(tally, commands.Reverse(first.entry.id), T0)
        assert balance(tally, "alice") == 0

    def test_reversal_replay(self, tally: Tally) -> None:
        system(tally)
        first = award(tally, "alice", 40)
        once = points_changes.reverse(
            tally, commands.Reverse(first.entry.id, idempotency_key="r"), T0
        )
        twice = points_changes.reverse(
            tally, commands.Reverse(first.entry.id, idempotency_key="r"), T0
        )
        assert twice.replayed
        assert twice.entry == once.entry

    def test_reversing_an_award_already_spent(self, tally: Tally) -> None:
        system(tally)
        first = award(tally, "alice", 40)
        deduct(tally, "alice", 30)
        with pytest.raises(InsufficientPoints):
            points_changes.reverse(tally, commands.Reverse(first.entry.id), T0)

    def test_reversals_and_expiries_are_not_reversible(self, tally: Tally) -> None:
        system(tally)
        first = award(tally, "alice", 40)
        reversal = points_changes.reverse(tally, commands.Reverse(first.entry.id), T0)
        with pytest.raises(NotReversible):
            points_changes.reverse(tally, commands.Reverse(reversal.entry.id), T0)

    def test_naming_the_entrys_user_finds_it_there(self, tally: Tally) -> None:
        system(tally)
        first = award(tally, "alice", 40)
        reverse = commands.Reverse(first.entry.id, idempotency_key="r", user_id="alice")
        once = points_changes.reverse(tally, reverse, T0)
        assert (once.entry.user_id, once.entry.amount) == ("alice", -40)
        # The user only says where to look: a repeat without it is the same request.
        again = commands.Reverse(first.entry.id, idempotency_key="r")
        assert points_changes.reverse(tally, again, T0).replayed

    def test_naming_another_user_finds_no_entry(self, tally: Tally) -> None:
        system(tally)
        first = award(tally, "alice", 40)
        award(tally, "bob", 1)
        for user in ("bob", "nobody"):  # as unknown an entry as any: it reveals nothing
            reverse = commands.Reverse(first.entry.id, user_id=user)
            with pytest.raises(EntryNotFound):
                points_changes.reverse(tally, reverse, T0)
        assert balance(tally, "alice") == 40

    def test_a_bad_user_id_names_its_field(self, tally: Tally) -> None:
        system(tally)
        first = award(tally, "alice", 40)
        reverse = commands.Reverse(first.entry.id, user_id=" alice")
        with pytest.raises(ValidationFailed) as raised:
            points_changes.reverse(tally, reverse, T0)
        assert [v.field for v in raised.value.violations] == ["user_id"]
        assert balance(tally, "alice") == 40

    def test_unknown_entry(self, tally: Tally) -> None:
        with pytest.raises(EntryNotFound):
            points_changes.reverse(
                tally, commands.Reverse("6f1c2a7e-0000-4000-8000-000000000000"), T0
            )
        with pytest.raises(ValidationFailed):
            points_changes.reverse(tally, commands.Reverse("not-a-uuid"), T0)


class TestBatch:
    def test_one_failure_never_undoes_another(self, tally: Tally) -> None:
        system(tally)
        items = [
            commands.Award("xp", UserProfile("alice"), 10),
            commands.Award("nope", UserProfile("bob"), 10),
            commands.Award("xp", UserProfile("carol"), 0),
            commands.Award("xp", UserProfile("dave"), 7),
        ]
        results = points_changes.award_batch(tally, items, T0)
        assert [type(r).__name__ for r in results] == [
            "WriteResult",
            "SystemNotFound",
            "ValidationFailed",
            "WriteResult",
        ]
        assert isinstance(results[2], ValidationFailed)
        assert results[2].violations[0].field == "items[2].amount"
        assert (balance(tally, "alice"), balance(tally, "dave")) == (10, 7)

    @pytest.mark.parametrize("count", [0, 101])
    def test_batch_size_limits(self, tally: Tally, count: int) -> None:
        items = [commands.Award("xp", UserProfile(f"u{i}"), 1) for i in range(count)]
        with pytest.raises(ValidationFailed):
            points_changes.award_batch(tally, items, T0)


class TestReads:
    def test_get_balance_unknown_user(self, tally: Tally) -> None:
        system(tally)
        with pytest.raises(UserNotFound):
            balance(tally, "ghost")

    def test_known_user_without_points_in_a_system(self, tally: Tally) -> None:
        system(tally)
        system(tally, "coins")
        award(tally, "alice", 5)
        assert balance(tally, "alice", system_key="coins") == 0

    def test_recent_entries_newest_first(self, tally: Tally) -> None:
        system(tally)
        for amount in (1, 2, 3):
            award(tally, "alice", amount)
        view = reads.get_balance(tally, commands.GetBalance("xp", "alice", 2), T0)
        assert [e.amount for e in view.recent] == [3, 2]

    def test_transactions_filter_by_type(self, tally: Tally) -> None:
        system(tally)
        award(tally, "alice", 10)
        deduct(tally, "alice", 3)
        only = entries(tally, "alice", types=frozenset({EntryType.DEDUCT}))
        assert [e.amount for e in only] == [-3]
        for types, total in [(frozenset(), 2), (frozenset({EntryType.AWARD}), 1)]:
            cmd = commands.ListTransactions("xp", "alice", 1, types=types)
            assert reads.list_transactions(tally, cmd, T0).total_size == total

    def test_page_token_from_another_query_is_refused(self, tally: Tally) -> None:
        system(tally)
        for _ in range(3):
            award(tally, "alice", 1)
            award(tally, "bob", 1)
        page = reads.list_transactions(tally, commands.ListTransactions("xp", "alice", 1), T0)
        with pytest.raises(ValidationFailed):
            reads.list_transactions(
                tally, commands.ListTransactions("xp", "bob", 1, page.next_page_token), T0
            )

    def test_stream_history_oldest_first_within_window(self, tally: Tally) -> None:
        system(tally)
        for i in range(5):
            award(tally, "alice", i + 1, at=later(i))
        cmd = commands.StreamHistory("xp", "alice", start_time=later(1), end_time=later(4))
        assert [e.amount for e in reads.stream_history(tally, cmd, later(10))] == [2, 3, 4]

    def test_stream_history_checks_before_streaming(self, tally: Tally) -> None:
        system(tally)
        with pytest.raises(UserNotFound):
            reads.stream_history(tally, commands.StreamHistory("xp", "ghost"), T0)


class TestExpirySweep:
    def test_sweep_writes_off_idle_accounts(self, tally: Tally) -> None:
        system(tally)
        award(tally, "alice", 10, expire_time=later(60))
        award(tally, "bob", 7, expire_time=later(30))
        award(tally, "carol", 5, expire_time=later(600))
        assert sweeps.expire_due(tally, later(100)) == 2
        assert sweeps.expire_due(tally, later(100)) == 0  # nothing left to do
        with tally.store.unit_of_work(write=False) as uow:
            alice = uow.accounts.standing(["alice"], []).accounts.get(("alice", "xp"))
            carol = uow.accounts.standing(["carol"], []).accounts.get(("carol", "xp"))
            expiries = uow.ledger.page("xp", "bob", frozenset({EntryType.EXPIRE}), None, 10)
        assert alice is not None
        assert carol is not None
        assert (alice.balance, alice.total_expired, alice.next_expire_time) == (0, 10, None)
        assert carol.balance == 5
        assert [(e.amount, e.create_time) for e in expiries] == [(-7, later(30))]

    def test_sweeper_thread_settles_due_accounts(self, tally: Tally) -> None:
        from server.app import Sweeper

        system(tally)
        award(tally, "alice", 10, expire_time=later(1))
        sweeper = Sweeper(tally, lambda: later(5), every_seconds=0.01)
        sweeper.start()
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with tally.store.unit_of_work(write=False) as uow:
                    account = uow.accounts.standing(["alice"], []).accounts.get(("alice", "xp"))
                if account is not None and account.balance == 0:
                    break
                time.sleep(0.02)
        finally:
            sweeper.stop()
        assert account is not None
        assert account.total_expired == 10


@pytest.mark.parametrize("position", [10**30, -1, "7", True, None])
def test_a_forged_page_token_is_refused(tally: Tally, position: object) -> None:
    """Tokens are opaque but not secret: one rebuilt with a position the tally cannot
    compare with (an integer past int64 overflowed the driver: INTERNAL) is bad input."""
    import base64
    import json

    from server.services import page_tokens

    system(tally)
    award(tally, "alice", 1)
    query = page_tokens.query_id("xp", "alice", [])
    raw = json.dumps({"p": position, "q": query}).encode()
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    with pytest.raises(ValidationFailed) as caught:
        reads.list_transactions(tally, commands.ListTransactions("xp", "alice", 1, token), T0)
    assert [v.field for v in caught.value.violations] == ["page_token"]


class TestContract:
    """What common.proto and points.proto document, held to."""

    def test_update_mask_naming_key_or_an_output_only_field_is_refused(self, tally: Tally) -> None:
        system(tally)
        for path, why in (
            ("key", "immutable"),
            ("create_time", "output only"),
            ("triggers", "output only"),
            ("colour", "not a field"),
        ):
            cmd = commands.UpdateSystem("xp", frozenset({path, "name"}), name="X")
            with pytest.raises(ValidationFailed) as caught:
                systems.update_system(tally, cmd, later(1))
            assert caught.value.metadata == {"field": "update_mask"}
            assert why in caught.value.violations[0].description
        assert systems.get_system(tally, "xp").name == "xp"  # nothing was written

    def test_user_attributes_given_later_replace_only_those_keys(
        self, tally: Tally, store: SqlStore
    ) -> None:
        system(tally)
        first = UserProfile("alice", attributes={"plan": "pro", "a": "1"})
        points_changes.award(tally, commands.Award("xp", first, 1), T0)
        points_changes.award(
            tally,
            commands.Award("xp", UserProfile("alice", attributes={"a": "2", "b": "3"}), 1),
            later(1),
        )
        with store.unit_of_work(write=False) as uow:
            user = uow.users.get("alice")
        assert user is not None
        assert user.attributes == {"plan": "pro", "a": "2", "b": "3"}
