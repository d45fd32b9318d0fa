"""Levels on both stores: moves reported by every points change, levels derived from the
current thresholds, and the counts of who is where."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any

import pytest

from server.domain import commands, reports
from server.domain.errors import LevelExists, LevelNotFound, StoreUnavailable, ValidationFailed
from server.domain.model import EntryType, LevelBasis, TriggerStatus, TriggerType, UserProfile
from server.services.held import feed
from server.services.tally import Tally
from server.services.use_cases import (
    events,
    levels,
    points_changes,
    reads,
    systems,
    triggers,
    watch,
)
from server.store.database import SqlStore
from tests.conftest import T0
from tests.integration.helpers import award, deduct, system


def ladder(tally: Tally, system_key: str = "xp", /, **thresholds: int) -> None:
    for key, points in thresholds.items():
        cmd = commands.CreateLevel(system_key, commands.LevelFields(key=key, points=points))
        levels.create_level(tally, cmd, T0)


def keys(change: object) -> tuple[str | None, str | None]:
    previous = getattr(change, "previous_level", None)
    new = getattr(change, "new_level", None)
    return (previous.key if previous else None, new.key if new else None)


def user_level(tally: Tally, user: str) -> str | None:
    found = levels.get_user_level(tally, "xp", user, T0).level
    return found.key if found else None


class TestMoves:
    def test_balance_levels_go_up_and_down(self, tally: Tally) -> None:
        system(tally)
        ladder(tally, bronze=0, silver=50, gold=200)
        first = award(tally, "ann", 10)
        assert first.level_change is None  # bronze from the start (threshold 0)
        assert first.balance.level is not None
        assert first.balance.level.key == "bronze"
        up = award(tally, "ann", 45)
        assert keys(up.level_change) == ("bronze", "silver")
        assert up.level_change is not None
        assert up.level_change.entry_id == up.entry.id
        assert up.level_change.sequence > 0
        down = deduct(tally, "ann", 20)
        assert keys(down.level_change) == ("silver", "bronze")
        assert deduct(tally, "ann", 1).level_change is None

    def test_lifetime_levels_never_drop_on_spending(self, tally: Tally) -> None:
        systems.create_system(
            tally, commands.CreateSystem("xp", level_basis=LevelBasis.LIFETIME_EARNED), T0
        )
        ladder(tally, silver=50, gold=200)
        assert keys(award(tally, "ann", 60).level_change) == (None, "silver")
        assert deduct(tally, "ann", 60).level_change is None
        assert user_level(tally, "ann") == "silver"
        assert keys(award(tally, "ann", 140).level_change) == ("silver", "gold")

    def test_one_award_crossing_two_thresholds_reports_the_final_level(self, tally: Tally) -> None:
        system(tally)
        ladder(tally, bronze=10, silver=50, gold=200)
        move = award(tally, "ann", 500).level_change
        assert keys(move) == (None, "gold")
        page = reads.list_transactions(tally, commands.ListTransactions("xp", "ann"), T0)
        assert [e.type for e in page.entries] == [EntryType.AWARD]

    def test_events_report_their_move_per_system(self, tally: Tally) -> None:
        system(tally)
        ladder(tally, silver=5)
        cmd = commands.CreateTrigger(
            "xp",
            commands.TriggerFields(
                type=TriggerType.EVENT, points=5, event_type="lesson", status=TriggerStatus.ACTIVE
            ),
        )
        triggers.create_trigger(tally, cmd, T0)
        result = events.record_event(tally, commands.RecordEvent(UserProfile("ann"), "lesson"), T0)
        assert keys(result.results["xp"].level_change) == (None, "silver")
        assert result.results["xp"].balance.level is not None

    def test_expiry_and_reversal_move_levels_too(self, tally: Tally) -> None:
        system(tally)
        ladder(tally, silver=50)
        lasting = award(tally, "ann", 40)
        award(tally, "ann", 20, expire_time=T0 + timedelta(hours=1))
        later = T0 + timedelta(hours=2)
        view = reads.get_balance(tally, commands.GetBalance("xp", "ann"), later)
        assert view.balance.level is None
        assert view.next_level is not None
        award(tally, "ann", 15, at=later)  # 55: silver
        reversal = points_changes.reverse(tally, commands.Reverse(lasting.entry.id), later)
        assert keys(reversal.level_change) == ("silver", None)

    def test_a_dry_run_reports_the_move_without_an_entry(self, tally: Tally) -> None:
        system(tally)
        ladder(tally, silver=50)
        dry = award(tally, "ann", 60, validate_only=True)
        assert dry.level_change is not None
        assert dry.level_change.entry_id == ""
        assert levels.get_level_summary(tally, "xp").levels[0][1] == 0


class TestThresholds:
    def test_threshold_edits_are_seen_at_once(self, tally: Tally) -> None:
        system(tally)
        ladder(tally, silver=50, gold=200)
        award(tally, "ann", 120)
        assert user_level(tally, "ann") == "silver"
        edit = commands.UpdateLevel(
            "", "xp", "gold", frozenset({"points"}), commands.LevelFields(points=100)
        )
        levels.update_level(tally, edit, T0)
        assert user_level(tally, "ann") == "gold"
        view = reads.get_balance(tally, commands.GetBalance("xp", "ann"), T0)
        assert view.balance.level is not None
        assert view.balance.level.key == "gold"
        assert view.next_level is None
        levels.delete_level(tally, "xp", "gold")
        assert user_level(tally, "ann") == "silver"
        summary = levels.get_level_summary(tally, "xp")
        assert [(lv.key, n) for lv, n in summary.levels] == [("silver", 1)]

    def test_progress_and_points_to_next(self, tally: Tally) -> None:
        system(tally)
        ladder(tally, silver=50, gold=150)
        award(tally, "ann", 100)
        standing = levels.get_user_level(tally, "xp", "ann", T0)
        assert standing.level is not None
        assert standing.next_level is not None
        assert (standing.level.key, standing.next_level.key) == ("silver", "gold")
        assert (standing.points, standing.points_to_next, standing.progress) == (100, 50, 0.5)
        award(tally, "bob", 10)
        low = levels.get_user_level(tally, "xp", "bob", T0)
        assert (low.level, low.points_to_next, low.progress) == (None, 40, 0.2)

    def test_keys_and_thresholds_are_unique_in_a_system(self, tally: Tally) -> None:
        system(tally)
        system(tally, "coins")
        ladder(tally, silver=50)
        with pytest.raises(LevelExists):
            ladder(tally, silver=70)
        with pytest.raises(LevelExists):
            ladder(tally, other=50)
        ladder(tally, "coins", silver=50)  # another system's are its own
        with pytest.raises(LevelNotFound):
            levels.delete_level(tally, "xp", "gold")
        with pytest.raises(ValidationFailed):
            ladder(tally, Bad_Key=1)
        listed = levels.list_levels(tally, "xp")
        assert [(lv.key, lv.points) for lv in listed] == [("silver", 50)]

    def test_the_summary_matches_a_brute_force_count(self, tally: Tally, store: SqlStore) -> None:
        system(tally)
        thresholds = {"bronze": 10, "silver": 100, "gold": 500, "platinum": 900}
        ladder(tally, **thresholds)
        rng = random.Random(7)
        balances = {
            f"u{i:04d}": rng.choice([0, 1, 9, 10, 99, 100, 499, 500, 900, rng.randrange(1, 2000)])
            for i in range(1000)
        }
        items = [
            commands.Award("xp", UserProfile(user), amount)
            for user, amount in balances.items()
            if amount > 0
        ]
        for start in range(0, len(items), 100):
            points_changes.award_batch(tally, items[start : start + 100], T0)
        summary = levels.get_level_summary(tally, "xp")
        ordered = sorted(thresholds.items(), key=lambda kv: kv[1])

        def brute(value: int) -> str | None:
            reached = [key for key, points in ordered if points <= value]
            return reached[-1] if reached else None

        opened = [v for v in balances.values() if v > 0]  # users with an account
        expected = {key: sum(1 for v in opened if brute(v) == key) for key, _ in ordered}
        assert {lv.key: n for lv, n in summary.levels} == expected
        assert summary.users_without_level == sum(1 for v in opened if brute(v) is None)


class TestListLevelsPages:
    """ListLevels in pages: by threshold ascending, each level once."""

    def pages(self, tally: Tally, size: int) -> list[list[str]]:
        found: list[list[str]] = []
        token = ""
        while True:
            page = levels.list_levels_page(tally, "xp", size, token)
            found.append([lv.key for lv in page.items])
            token = page.next_page_token
            if not token:
                return found

    def test_paging_lists_each_level_once_by_threshold(self, tally: Tally) -> None:
        system(tally)
        system(tally, "coins")
        thresholds = random.Random(3).sample(range(0, 10_000), 17)
        ladder(tally, **{f"l{points}": points for points in thresholds})
        ladder(tally, "coins", other=5)
        expected = [f"l{points}" for points in sorted(thresholds)]
        for size in (1, 3, 4, 16, 17):
            pages = self.pages(tally, size)
            assert [key for page in pages for key in page] == expected, size
            assert [len(page) for page in pages[:-1]] == [size] * (len(pages) - 1)
        everything = levels.list_levels_page(tally, "xp", 0, "")
        assert ([lv.key for lv in everything.items], everything.next_page_token) == (expected, "")

    def test_a_page_continues_above_the_last_threshold_listed(self, tally: Tally) -> None:
        system(tally)
        ladder(tally, a=10, b=20, c=30, d=40, e=50)
        first = levels.list_levels_page(tally, "xp", 2, "")
        assert [lv.key for lv in first.items] == ["a", "b"]
        levels.delete_level(tally, "xp", "b")  # the token's level is gone: no matter
        levels.delete_level(tally, "xp", "d")
        ladder(tally, low=5, mid=25)
        rest = levels.list_levels_page(tally, "xp", 2, first.next_page_token)
        assert [lv.key for lv in rest.items] == ["mid", "c"]  # "low" is behind the token
        last = levels.list_levels_page(tally, "xp", 2, rest.next_page_token)
        assert ([lv.key for lv in last.items], last.next_page_token) == (["e"], "")

    @pytest.mark.parametrize("size", [-1, 1001])
    def test_a_bad_page_size_names_the_field(self, tally: Tally, size: int) -> None:
        system(tally)
        with pytest.raises(ValidationFailed) as caught:
            levels.list_levels_page(tally, "xp", size, "")
        assert caught.value.reason == "VALIDATION_FAILED"
        assert [v.field for v in caught.value.violations] == ["page_size"]

    def test_a_token_of_another_list_or_forged_names_the_field(self, tally: Tally) -> None:
        from server.services import page_tokens

        system(tally)
        system(tally, "coins")
        ladder(tally, a=10, b=20)
        ladder(tally, "coins", a=10, b=20)
        other = levels.list_levels_page(tally, "coins", 1, "").next_page_token
        query = page_tokens.query_id("ListLevels", "xp")
        forged = [page_tokens.encode(p, query) for p in (-1, 2**63, "10")]
        for token in [other, "garbage", *forged]:
            with pytest.raises(ValidationFailed) as caught:
                levels.list_levels_page(tally, "xp", 1, token)
            assert caught.value.reason == "VALIDATION_FAILED", token
            assert [v.field for v in caught.value.violations] == ["page_token"], token


class TestWatchLevelChanges:
    def test_a_resumed_watch_misses_nothing_and_repeats_nothing(
        self, tally: Tally, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(feed, "CHUNK", 3)  # several reads
        system(tally)
        system(tally, "coins")
        ladder(tally, silver=10, gold=30)
        ladder(tally, "coins", rich=5)
        moves = 0
        for user, amount, system_key in (  # up, up, down... across users and systems
            ("u0", 15, "xp"),
            ("u1", 15, "coins"),
            ("u0", 20, "xp"),
            ("u0", -25, "xp"),
            ("u2", 35, "xp"),
            ("u1", 10, "coins"),
            ("u2", -30, "xp"),
            ("u1", 12, "xp"),
        ):
            if amount > 0:
                result = award(tally, user, amount, system_key=system_key)
            else:
                result = deduct(tally, user, -amount, system_key=system_key)
            moves += result.level_change is not None
        cmd = reports.WatchLedger("", 0, follow=False)
        stream = watch.watch_level_changes(tally, cmd)
        seen = next(stream)  # the client drops after one message
        del stream
        rest = changes_of(tally, after=seen[-1].sequence)
        everything = changes_of(tally)
        assert [c.sequence for c in seen + rest] == [c.sequence for c in everything]
        assert len(everything) == moves == 7
        assert [c.sequence for c in everything] == sorted({c.sequence for c in everything})
        coins = changes_of(tally, system_key="coins")
        assert coins == [c for c in everything if c.system_key == "coins"]

    def test_a_follower_receives_each_move_as_it_commits(self, tally: Tally) -> None:
        system(tally)
        ladder(tally, silver=10)
        received: list[Any] = []
        arrived = threading.Event()

        def follow() -> None:
            cmd = reports.WatchLedger("xp", 0, follow=True)
            try:
                for chunk in watch.watch_level_changes(tally, cmd):
                    received.extend(chunk)
                    if len(received) >= 2:
                        arrived.set()
            except StoreUnavailable:
                pass  # the feeds closed

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        up = award(tally, "ann", 10).level_change
        down = deduct(tally, "ann", 5).level_change
        assert arrived.wait(30)
        tally.feeds.close()
        follower.join(10)
        assert [keys(c) for c in received] == [(None, "silver"), ("silver", None)]
        assert [c.sequence for c in received] == [up.sequence, down.sequence]  # type: ignore[union-attr]


def changes_of(tally: Tally, after: int = 0, system_key: str = "") -> list[Any]:
    cmd = reports.WatchLedger(system_key, after, follow=False)
    return [change for chunk in watch.watch_level_changes(tally, cmd) for change in chunk]
