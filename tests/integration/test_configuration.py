"""The configuration in memory: each process (here, each Tally) holds it, and a change
made in one is used by every other from its next write, and by reads within the bound."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from server.domain import commands
from server.domain.errors import SystemNotFound
from server.services.held import configuration
from server.services.ports import UnitOfWork
from server.services.tally import Tally
from server.services.use_cases import boosts, levels, reads, systems
from server.store.database import SqlStore
from tests.integration.helpers import award, later, system


def test_a_change_made_by_one_process_is_used_by_the_next_write_of_another(
    store: SqlStore,
) -> None:
    here, there = Tally(store), Tally(store)
    system(here)
    assert award(here, "alice", 30).balance.balance == 30  # `here` now holds xp, uncapped
    systems.update_system(
        there, commands.UpdateSystem("xp", frozenset({"max_points"}), max_points=50), later(1)
    )
    capped = award(here, "alice", 30, at=later(2))
    assert capped.entry.amount == 20
    assert capped.entry.capped
    assert capped.balance.max_points == 50


def test_reads_see_another_process_change_at_once_or_within_the_bound(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of a user's standing carries the configuration's version (at once); GetSystem
    compares it when what it holds is older than READ_MAX_AGE."""
    here, there = Tally(store), Tally(store)
    system(here)
    award(here, "alice", 5)
    view = reads.get_balance(here, commands.GetBalance("xp", "alice", 0), later(1))
    assert view.balance.max_points == 0
    assert systems.get_system(here, "xp").max_points == 0
    systems.update_system(
        there, commands.UpdateSystem("xp", frozenset({"max_points"}), max_points=70), later(2)
    )
    view = reads.get_balance(here, commands.GetBalance("xp", "alice", 0), later(3))
    assert view.balance.max_points == 70
    monkeypatch.setattr(configuration, "READ_MAX_AGE", 0.0)  # the bound has passed
    assert systems.get_system(here, "xp").max_points == 70


def test_a_change_is_seen_at_once_by_the_process_that_made_it(tally: Tally) -> None:
    system(tally)
    award(tally, "alice", 5)
    systems.update_system(
        tally, commands.UpdateSystem("xp", frozenset({"name"}), name="Experience"), later(1)
    )
    assert systems.get_system(tally, "xp").name == "Experience"


def test_a_system_created_by_another_process_is_found_at_once(store: SqlStore) -> None:
    here, there = Tally(store), Tally(store)
    system(here)
    award(here, "alice", 1)
    system(there, "coins")
    assert award(here, "alice", 4, system_key="coins").balance.balance == 4


def test_a_name_that_names_no_system_costs_a_point_read_never_a_reload(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """M7 of issue 21: each call naming an unknown system loaded the whole configuration
    (every live boost included). Now one point read of the name decides; a system made by
    another process since is still found at once, by one load."""
    here, there = Tally(store), Tally(store)
    system(here)
    award(here, "alice", 1)
    loads: list[int] = []
    load = here.config._load

    def counted(uow: UnitOfWork) -> configuration.Snapshot:
        loads.append(1)
        return load(uow)

    monkeypatch.setattr(here.config, "_load", counted)
    unknown: list[Callable[[], object]] = [
        lambda: systems.get_system(here, "nosuch"),
        lambda: award(here, "alice", 1, system_key="nosuch"),
        lambda: levels.list_levels(here, "nosuch"),
        lambda: reads.get_balance(here, commands.GetBalance("nosuch", "alice", 0), later(1)),
        lambda: boosts.get_multiplier(here, "nosuch", "alice", later(1)),
    ]
    for _ in range(3):
        for call in unknown:
            with pytest.raises(SystemNotFound) as caught:
                call()
            assert caught.value.reason == "SYSTEM_NOT_FOUND"
    assert loads == []
    system(there, "coins")
    assert systems.get_system(here, "coins").key == "coins"
    assert levels.list_levels(here, "coins") == []
    assert award(here, "alice", 4, system_key="coins").balance.balance == 4
    assert loads == [1]
