"""The Python client in clients/: typed errors, automatic keys, safe retries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import grpc
import pytest

from clients.tally_client import (
    AlreadyExists,
    InsufficientPoints,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    TallyClient,
    Unauthenticated,
    Unavailable,
)
from server.app import App
from server.domain import validation
from tally.v1 import common_pb2, points_pb2


@pytest.fixture
def tally(server: App, admin_key: str) -> Iterator[TallyClient]:
    with TallyClient(f"127.0.0.1:{server.port}", api_key=admin_key, attempts=2) as client:
        yield client


def test_award_deduct_and_balance(tally: TallyClient) -> None:
    tally.create_system("xp", "Experience")
    awarded = tally.award("xp", "alice", 50, reason="signup", metadata={"plan": "pro"})
    assert awarded.entry.idempotency_key.startswith("tc-")
    tally.deduct("xp", "alice", 20)
    balance = tally.get_balance("xp", "alice", recent_entries=0)
    assert (balance.balance.balance, list(balance.recent)) == (30, [])


def test_typed_errors_carry_reason_and_metadata(tally: TallyClient) -> None:
    tally.create_system("xp")
    with pytest.raises(AlreadyExists) as exists:
        tally.create_system("xp")
    assert exists.value.reason == "SYSTEM_EXISTS"
    tally.award("xp", "alice", 5)
    with pytest.raises(InsufficientPoints) as short:
        tally.deduct("xp", "alice", 8)
    assert (short.value.available, short.value.requested) == (5, 8)
    assert short.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(InvalidArgument) as bad:
        tally.award("xp", "", 0)
    assert set(bad.value.field_violations) == {"user.id", "amount"}
    with pytest.raises(NotFound) as missing:
        tally.get_balance("xp", "ghost")
    assert missing.value.reason == "USER_NOT_FOUND"


def test_a_repeated_key_replays(tally: TallyClient) -> None:
    tally.create_system("xp")
    first = tally.award("xp", "alice", 5, idempotency_key="order-7")
    again = tally.award("xp", "alice", 5, idempotency_key="order-7")
    assert again.replayed
    assert again.entry.id == first.entry.id


def test_pages_and_history(tally: TallyClient) -> None:
    tally.create_system("xp")
    ids = [tally.award("xp", "alice", i + 1).entry.id for i in range(7)]
    tally.deduct("xp", "alice", 1)
    listed = [e.id for e in tally.transactions("xp", "alice", page_size=3)]
    assert listed[1:] == ids[::-1]
    awards = tally.transactions("xp", "alice", types=(common_pb2.ENTRY_TYPE_AWARD,))
    assert [e.id for e in awards] == ids[::-1]
    assert [e.id for e in tally.history("xp", "alice")][:-1] == ids
    with pytest.raises(NotFound):
        list(tally.history("xp", "ghost"))


def test_triggers_and_levels_are_read_through_every_page(
    tally: TallyClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    tally.create_system("xp")
    made = [
        tally.create_trigger(
            "xp",
            points_pb2.Trigger(type=points_pb2.TRIGGER_TYPE_EVENT, points=1, event_type="e"),
        ).id
        for _ in range(5)
    ]
    for key, threshold in (("gold", 300), ("bronze", 10), ("silver", 100)):
        tally.create_level("xp", key, threshold)
    assert [t.id for t in tally.list_triggers("xp", page_size=2)] == made
    assert [lv.key for lv in tally.list_levels("xp", page_size=2)] == ["bronze", "silver", "gold"]
    # A server whose default page is smaller than the list: the client still reads it all.
    monkeypatch.setattr(validation, "CONFIGURATION_PAGE_SIZE", 2)
    assert [t.id for t in tally.list_triggers("xp")] == made
    assert [lv.key for lv in tally.list_levels("xp")] == ["bronze", "silver", "gold"]


def test_unreachable_server_is_unavailable() -> None:
    with TallyClient("127.0.0.1:1", timeout=0.5, attempts=2) as client, pytest.raises(Unavailable):
        client.get_system("xp")


def test_a_user_token_reads_one_users_points(tally: TallyClient, server: App) -> None:
    tally.create_system("xp")
    tally.award("xp", "alice", 5)
    made = tally.create_user_token("alice", timedelta(minutes=5))
    assert made.token
    with TallyClient(f"127.0.0.1:{server.port}", user_token=made.token) as front_end:
        assert front_end.get_balance("xp", "alice").balance.balance == 5
        with pytest.raises(PermissionDenied) as denied:
            front_end.get_balance("xp", "bob")
        assert denied.value.reason == "SCOPE_INSUFFICIENT"
        with pytest.raises(PermissionDenied):
            front_end.award("xp", "alice", 1)


def test_no_key_is_unauthenticated(server: App) -> None:
    with TallyClient(f"127.0.0.1:{server.port}") as anonymous, pytest.raises(Unauthenticated):
        anonymous.get_system("xp")
