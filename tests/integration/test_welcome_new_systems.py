"""A system created after a user was welcomed by a call of every system still owes them
its welcome (model.Welcomed: such a call welcomes through the newest system it read,
not in systems created later). From a review's probes: a user welcomed '*' was counted
welcomed in every system made later too, so (1) a later system's USER_IDENTIFIED never
fired for them, although points.proto says it fires in the first Award or RecordEvent of
a key that may use the system, and (2) a key limited to the new system told a user seen
elsewhere from a fresh one by its own answers (API.md, Auth: a limited key's answers "do
not reveal whether a user ... exists elsewhere"). Both stores."""

from __future__ import annotations

from server.domain.access import Caller, Scope
from server.domain.model import TriggerType, Welcomed
from server.services.tally import Tally
from tests.conftest import T0
from tests.integration.helpers import award, later, system
from tests.integration.test_isolation import EVERY, as_caller, points, record, welcomed, welcomes
from tests.integration.test_triggers import trigger

WRITE_C = Caller("key-c", Scope.WRITE, frozenset({"c"}))
LATER = later(60)  # c is created then, after u was welcomed


def welcomed_everywhere_then_c(tally: Tally, user: str) -> None:
    """`user` welcomed by a call of every system while a is the only system; then c,
    with a welcome of its own and a trigger of its event "visit"."""
    system(tally, "a")
    as_caller(EVERY, lambda: award(tally, user, 10, system_key="a"))
    assert welcomed(tally, user) == Welcomed(through=T0)
    system(tally, "c", at=LATER)
    trigger(tally, TriggerType.USER_IDENTIFIED, 50, system_key="c", at=LATER)
    trigger(tally, TriggerType.EVENT, 1, system_key="c", event_type="visit", at=LATER)


def test_a_limited_keys_event_does_not_tell_a_user_seen_elsewhere_from_a_fresh_one(
    tally: Tally,
) -> None:
    welcomed_everywhere_then_c(tally, "seen")
    seen = record(tally, WRITE_C, "seen", "visit", at=LATER)
    fresh = record(tally, WRITE_C, "fresh", "visit", at=LATER)
    # c's key has never seen either user in c: its answers must not differ
    assert seen.results["c"].added == fresh.results["c"].added == 51
    assert welcomed(tally, "seen") == Welcomed(frozenset({"c"}), T0)
    again = record(tally, WRITE_C, "seen", "visit", at=LATER)
    assert again.results["c"].added == 1  # welcomed once
    assert welcomes(tally, "seen", "c") == 1


def test_a_system_created_later_welcomes_a_user_welcomed_everywhere_before(
    tally: Tally,
) -> None:
    welcomed_everywhere_then_c(tally, "u")
    for _ in range(2):
        as_caller(EVERY, lambda: award(tally, "u", 1, system_key="c", at=LATER))
    assert points(tally, "u", "c") == 50 + 1 + 1  # proto: fires in the first Award that may
    assert points(tally, "u", "a") == 10  # not welcomed in a again
    assert welcomed(tally, "u") == Welcomed(through=LATER)  # c's create_time, not a clock
    assert welcomes(tally, "u", "c") == 1
