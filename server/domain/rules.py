"""The configuration as the domain decides by it: points systems and their triggers,
indexed once per configuration version for the lookups every change makes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.domain.levels import Ladder
from server.domain.model import Boost, Level, PointsSystem, Trigger, TriggerType


@dataclass(frozen=True)
class Rules:
    systems: dict[str, PointsSystem] = field(default_factory=dict)
    triggers: dict[str, Trigger] = field(default_factory=dict)  # by id, of every status
    # ACTIVE EVENT and METRIC triggers by the event type they listen to.
    by_event_type: dict[str, tuple[Trigger, ...]] = field(default_factory=dict)
    # Event types named by a trigger of any status (others are NO_MATCHING_TRIGGER), each
    # with the systems whose triggers name it.
    naming_systems: dict[str, frozenset[str]] = field(default_factory=dict)
    identified: tuple[Trigger, ...] = ()  # ACTIVE USER_IDENTIFIED triggers
    intervals: dict[str, tuple[Trigger, ...]] = field(default_factory=dict)  # ACTIVE, by system
    # By system: the configuration version that last changed one of its TIME_INTERVAL
    # triggers; an account accrued at an older version may have firings nobody scheduled.
    interval_epochs: dict[str, int] = field(default_factory=dict)
    levels: dict[str, Ladder] = field(default_factory=dict)  # by system
    # Boosts not archived nor ended when loaded: by system the global ones (cohorts
    # included), by (system, user) each user's own.
    global_boosts: dict[str, tuple[Boost, ...]] = field(default_factory=dict)
    user_boosts: dict[tuple[str, str], tuple[Boost, ...]] = field(default_factory=dict)
    # The newest system's create_time (None without systems): a user welcomed through it
    # is owed no welcome, which a change checks with this one comparison (Welcomed.owed).
    newest_system: datetime | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        times = [system.create_time for system in self.systems.values()]
        object.__setattr__(self, "newest_system", max(times, default=None))

    @classmethod
    def of(
        cls,
        systems: Iterable[PointsSystem],
        triggers: Iterable[Trigger],
        levels: Iterable[Level] = (),
        boosts: Iterable[Boost] = (),
    ) -> Rules:
        by_id = {t.id: t for t in sorted(triggers, key=lambda t: (t.create_time, t.id))}
        by_event: defaultdict[str, list[Trigger]] = defaultdict(list)
        intervals: defaultdict[str, list[Trigger]] = defaultdict(list)
        epochs: dict[str, int] = {}
        for t in by_id.values():
            if t.type is TriggerType.TIME_INTERVAL:
                epochs[t.system_key] = max(epochs.get(t.system_key, 0), t.version)
            if not t.active:
                continue
            if t.type in (TriggerType.EVENT, TriggerType.METRIC):
                by_event[t.event_type].append(t)
            elif t.type is TriggerType.TIME_INTERVAL:
                intervals[t.system_key].append(t)
        return cls(
            systems={s.key: s for s in systems},
            triggers=by_id,
            by_event_type={k: tuple(v) for k, v in by_event.items()},
            naming_systems=_naming_systems(by_id.values()),
            identified=tuple(
                t for t in by_id.values() if t.active and t.type is TriggerType.USER_IDENTIFIED
            ),
            intervals={k: tuple(v) for k, v in intervals.items()},
            interval_epochs=epochs,
            levels=_ladders(levels),
            **_boost_index(boosts),
        )

    def boosts_for(self, system_key: str, user_id: str) -> tuple[Boost, ...]:
        """The boosts that may apply to a user's awards in a system (their windows and
        cohort filters still to check): a user with none pays two dict lookups."""
        mine = self.user_boosts.get((system_key, user_id), ())
        return self.global_boosts.get(system_key, ()) + mine

    def triggers_of(self, system_key: str) -> list[Trigger]:
        """A system's triggers of every status, oldest first."""
        return [t for t in self.triggers.values() if t.system_key == system_key]


def _naming_systems(triggers: Iterable[Trigger]) -> dict[str, frozenset[str]]:
    naming: defaultdict[str, set[str]] = defaultdict(set)
    for t in triggers:
        if t.event_type:
            naming[t.event_type].add(t.system_key)
    return {k: frozenset(v) for k, v in naming.items()}


def _ladders(levels: Iterable[Level]) -> dict[str, Ladder]:
    by_system: defaultdict[str, list[Level]] = defaultdict(list)
    for level in levels:
        by_system[level.system_key].append(level)
    return {k: Ladder.of(v) for k, v in by_system.items()}


def _boost_index(boosts: Iterable[Boost]) -> dict[str, Any]:
    global_boosts: defaultdict[str, list[Boost]] = defaultdict(list)
    user_boosts: defaultdict[tuple[str, str], list[Boost]] = defaultdict(list)
    for boost in boosts:
        if boost.user_id:
            user_boosts[(boost.system_key, boost.user_id)].append(boost)
        else:
            global_boosts[boost.system_key].append(boost)
    return {
        "global_boosts": {k: tuple(v) for k, v in global_boosts.items()},
        "user_boosts": {k: tuple(v) for k, v in user_boosts.items()},
    }
