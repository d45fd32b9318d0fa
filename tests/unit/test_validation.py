"""Input rules: what every call accepts and refuses, and how refusals are reported.

A caller fixes a request in one round only when every bad field is named, and an error
fits in the response trailers only when it quotes at most 100 characters of the input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.domain import commands, reports, validation
from server.domain.errors import (
    AlreadyReversed,
    EntryNotFound,
    IdempotencyKeyInvalid,
    IdempotencyKeyMismatch,
    IdempotencyKeyReused,
    SystemExists,
    SystemNotFound,
    UserNotFound,
    ValidationFailed,
)
from server.domain.model import UserProfile
from tests.conftest import T0

ENTRY_ID = "6f1c2a7e-0000-4000-8000-000000000000"


def award(**fields: Any) -> commands.Award:
    values: dict[str, Any] = {"system_key": "xp", "user": UserProfile("alice"), "amount": 10}
    values.update(fields)
    return commands.Award(**values)


def deduct(**fields: Any) -> commands.Deduct:
    values: dict[str, Any] = {"system_key": "xp", "user_id": "alice", "amount": 10}
    values.update(fields)
    return commands.Deduct(**values)


def refusal(check: Callable[[], None]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        check()
    return caught.value


def bad_fields(check: Callable[[], None]) -> list[str]:
    """The fields a check names, in order; [] when it accepts."""
    try:
        check()
    except ValidationFailed as error:
        return [v.field for v in error.violations]
    return []


def check_award(cmd: commands.Award) -> Callable[[], None]:
    return lambda: validation.award(cmd, T0)


def longest_run(text: str, char: str) -> int:
    return max((len(m) for m in re.findall(f"{re.escape(char)}+", text)), default=0)


class TestSystemKey:
    @pytest.mark.parametrize("key", ["a", "xp", "0", "coins_v2", "a-b_c-9", "k" * 64])
    def test_accepted(self, key: str) -> None:
        assert bad_fields(lambda: validation.create_system(commands.CreateSystem(key))) == []

    @pytest.mark.parametrize(
        "key", ["", "XP", "_xp", "-xp", "k" * 65, "x p", "xp\n", "clé", "xp.v2", "xp/1"]
    )
    def test_refused(self, key: str) -> None:
        error = refusal(lambda: validation.create_system(commands.CreateSystem(key)))
        assert [v.field for v in error.violations] == ["system.key"]
        assert error.reason == "VALIDATION_FAILED"

    def test_every_call_naming_a_system_checks_its_key(self) -> None:
        assert bad_fields(check_award(award(system_key="XP"))) == ["system_key"]
        assert bad_fields(lambda: validation.deduct(deduct(system_key=""))) == ["system_key"]
        assert bad_fields(lambda: validation.account_key("a" * 65, "alice")) == ["system_key"]


class TestUserId:
    @pytest.mark.parametrize("user_id", ["a", "alice", "u" * 255, "a b", "ünïcødé", "a@b.c"])
    def test_accepted(self, user_id: str) -> None:
        assert bad_fields(lambda: validation.deduct(deduct(user_id=user_id))) == []

    @pytest.mark.parametrize(
        ("user_id", "why"),
        [
            ("", "is required"),
            ("u" * 256, "at most 255 characters, got 256"),
            (" alice", "whitespace"),
            ("alice ", "whitespace"),
            ("\talice", "whitespace"),
            ("   ", "whitespace"),
            ("al\x00ice", "control characters"),
            ("al\nice", "control characters"),
            ("al\x7fice", "control characters"),
            ("al\x9bice", "control characters"),
        ],
    )
    def test_refused(self, user_id: str, why: str) -> None:
        error = refusal(lambda: validation.deduct(deduct(user_id=user_id)))
        (violation,) = error.violations
        assert violation.field == "user_id"
        assert why in violation.description

    def test_award_names_the_nested_field(self) -> None:
        assert bad_fields(check_award(award(user=UserProfile("")))) == ["user.id"]


class TestAmount:
    @pytest.mark.parametrize("amount", [1, 2, validation.MAX_AMOUNT])
    def test_accepted(self, amount: int) -> None:
        assert bad_fields(check_award(award(amount=amount))) == []
        assert bad_fields(lambda: validation.deduct(deduct(amount=amount))) == []

    @pytest.mark.parametrize("amount", [0, -1, -(2**63), validation.MAX_AMOUNT + 1, 2**63 - 1])
    def test_refused(self, amount: int) -> None:
        assert bad_fields(check_award(award(amount=amount))) == ["amount"]
        assert bad_fields(lambda: validation.deduct(deduct(amount=amount))) == ["amount"]


class TestReasonAndMetadata:
    def test_reason_up_to_500_characters(self) -> None:
        assert bad_fields(check_award(award(reason="r" * 500))) == []
        assert bad_fields(check_award(award(reason="r" * 501))) == ["reason"]
        assert bad_fields(lambda: validation.deduct(deduct(reason="r" * 501))) == ["reason"]
        reverse = commands.Reverse(ENTRY_ID, reason="r" * 501)
        assert bad_fields(lambda: validation.reverse(reverse)) == ["reason"]

    @staticmethod
    def metadata_of_size(size: int, fill: str = "x") -> dict[str, Any]:
        """A metadata object whose compact JSON is exactly `size` bytes of UTF-8."""
        overhead = len(json.dumps({"k": ""}, separators=(",", ":")))
        width = len(fill.encode())
        assert (size - overhead) % width == 0
        value = {"k": fill * ((size - overhead) // width)}
        assert len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) == size
        return value

    def test_metadata_up_to_16_kib_of_json(self) -> None:
        limit = 16 * 1024
        assert bad_fields(check_award(award(metadata=self.metadata_of_size(limit)))) == []
        assert bad_fields(check_award(award(metadata=self.metadata_of_size(limit + 1)))) == [
            "metadata"
        ]
        too_big = deduct(metadata=self.metadata_of_size(limit + 1))
        assert bad_fields(lambda: validation.deduct(too_big)) == ["metadata"]

    def test_metadata_size_counts_bytes_not_characters(self) -> None:
        """16 KiB is what the store and the trailers hold, whatever the script."""
        wide = self.metadata_of_size(16 * 1024 + 2, fill="é")
        assert len(json.dumps(wide, ensure_ascii=False)) < 16 * 1024
        error = refusal(check_award(award(metadata=wide)))
        assert error.violations[0].field == "metadata"
        assert "got 16386" in error.violations[0].description


class TestIdempotencyKey:
    @pytest.mark.parametrize(
        "key", ["", "k", "order:42", "A-z_0.9:x", "k" * 255, "2026-01-01T00:00:00.000"]
    )
    def test_accepted(self, key: str) -> None:
        assert bad_fields(check_award(award(idempotency_key=key))) == []

    @pytest.mark.parametrize(
        "key", ["k" * 256, "a b", "a/b", "a+b", "ключ", "a\n", "a\x00b", "k=1", " k"]
    )
    def test_alone_it_is_idempotency_key_invalid(self, key: str) -> None:
        error = refusal(check_award(award(idempotency_key=key)))
        assert type(error) is IdempotencyKeyInvalid
        assert error.reason == "IDEMPOTENCY_KEY_INVALID"
        assert [v.field for v in error.violations] == ["idempotency_key"]

    def test_alone_in_a_batch_item_it_is_still_idempotency_key_invalid(self) -> None:
        bad = award(idempotency_key="a b")
        error = refusal(lambda: validation.award(bad, T0, prefix="items[3]."))
        assert type(error) is IdempotencyKeyInvalid
        assert [v.field for v in error.violations] == ["items[3].idempotency_key"]

    def test_with_other_bad_fields_it_is_one_validation_failed_naming_all(self) -> None:
        bad = award(
            system_key="XP",
            user=UserProfile(" alice"),
            amount=0,
            reason="r" * 501,
            idempotency_key="a b",
            expire_time=T0,
        )
        error = refusal(check_award(bad))
        assert type(error) is ValidationFailed
        assert error.reason == "VALIDATION_FAILED"
        assert [v.field for v in error.violations] == [
            "system_key",
            "user.id",
            "amount",
            "reason",
            "idempotency_key",
            "expire_time",
        ]
        # The message names the first three (so it stays short); the details carry all.
        for violation in error.violations[:3]:
            assert f"{violation.field}: {violation.description}" in error.message
        assert error.message.endswith("(and 3 more in the BadRequest details)")

    def test_deduct_and_reverse_check_it_too(self) -> None:
        with pytest.raises(IdempotencyKeyInvalid):
            validation.deduct(deduct(idempotency_key="a b"))
        with pytest.raises(IdempotencyKeyInvalid):
            validation.reverse(commands.Reverse(ENTRY_ID, idempotency_key="a b"))


class TestResolveIdempotencyKey:
    @pytest.mark.parametrize(
        ("field", "header", "resolved"),
        [
            ("", None, ""),
            ("k1", None, "k1"),
            ("", "k1", "k1"),
            ("k1", "k1", "k1"),
        ],
    )
    def test_field_or_metadata(self, field: str, header: str | None, resolved: str) -> None:
        assert validation.resolve_idempotency_key(field, header) == resolved

    def test_both_given_and_different_is_a_mismatch(self) -> None:
        with pytest.raises(IdempotencyKeyMismatch) as caught:
            validation.resolve_idempotency_key("k1", "k2")
        error = caught.value
        assert error.reason == "IDEMPOTENCY_KEY_MISMATCH"
        assert isinstance(error, ValidationFailed)
        (violation,) = error.violations
        assert violation.field == "idempotency_key"
        assert "'k1'" in violation.description
        assert "'k2'" in violation.description


class TestOtherRules:
    @pytest.mark.parametrize("size", [0, 1, 50, 100])
    def test_page_size_accepted(self, size: int) -> None:
        assert bad_fields(lambda: validation.page_size("page_size", size)) == []
        cmd = commands.ListTransactions("xp", "alice", page_size=size)
        assert bad_fields(lambda: validation.list_transactions(cmd)) == []

    @pytest.mark.parametrize("size", [-1, 101, 2**31 - 1])
    def test_page_size_refused(self, size: int) -> None:
        assert bad_fields(lambda: validation.page_size("page_size", size)) == ["page_size"]
        cmd = commands.ListTransactions("xp", "alice", page_size=size)
        assert bad_fields(lambda: validation.list_transactions(cmd)) == ["page_size"]

    @pytest.mark.parametrize(("count", "ok"), [(0, True), (100, True), (-1, False), (101, False)])
    def test_recent_entries_bounds(self, count: int, ok: bool) -> None:
        cmd = commands.GetBalance("xp", "alice", count)
        assert bad_fields(lambda: validation.get_balance(cmd)) == ([] if ok else ["recent_entries"])

    def test_expire_time_must_be_in_the_future(self) -> None:
        assert bad_fields(check_award(award(expire_time=T0 + timedelta(microseconds=1)))) == []
        assert bad_fields(check_award(award(expire_time=T0))) == ["expire_time"]
        assert bad_fields(check_award(award(expire_time=T0 - timedelta(days=1)))) == ["expire_time"]

    @pytest.mark.parametrize("entry_id", ["", "not-a-uuid", "6f1c2a7e"])
    def test_reverse_needs_an_entry_id(self, entry_id: str) -> None:
        assert bad_fields(lambda: validation.reverse(commands.Reverse(entry_id))) == ["entry_id"]

    def test_stream_window_must_not_run_backwards(self) -> None:
        cmd = commands.StreamHistory("xp", "alice", start_time=T0, end_time=T0 - timedelta(1))
        assert bad_fields(lambda: validation.stream_history(cmd)) == ["end_time"]
        same = commands.StreamHistory("xp", "alice", start_time=T0, end_time=T0)
        assert bad_fields(lambda: validation.stream_history(same)) == []


LONG = 5_000


@pytest.mark.parametrize(
    ("check", "char"),
    [
        (lambda: validation.create_system(commands.CreateSystem("K" * LONG)), "K"),
        (lambda: validation.deduct(deduct(user_id=" " + "u" * LONG)), "u"),
        (lambda: validation.deduct(deduct(user_id="\x01" + "u" * 200)), "u"),
        (lambda: validation.deduct(deduct(idempotency_key="!" * LONG)), "!"),
        (lambda: validation.reverse(commands.Reverse("z" * LONG)), "z"),
        (
            lambda: validation.award(
                award(user=UserProfile("alice", attributes={"a" * LONG: "v"})), T0
            ),
            "a",
        ),
        (lambda: validation.resolve_idempotency_key("f" * LONG, "g"), "f"),
        (lambda: validation.resolve_idempotency_key("f", "g" * LONG), "g"),
    ],
)
def test_validation_messages_quote_at_most_100_characters(
    check: Callable[[], None], char: str
) -> None:
    error = refusal(check)
    assert 1 <= longest_run(error.message, char) <= 100
    for violation in error.violations:
        assert longest_run(violation.description, char) <= 100
    assert len(error.message) < 500


@pytest.mark.parametrize(
    "error",
    [
        SystemNotFound("K" * LONG),
        UserNotFound("K" * LONG, "xp"),
        EntryNotFound("K" * LONG),
        SystemExists("K" * LONG),
        IdempotencyKeyReused("K" * LONG),
        AlreadyReversed("K" * LONG, ENTRY_ID),
    ],
    ids=lambda e: type(e).__name__,
)
def test_domain_error_messages_quote_at_most_100_characters(error: Exception) -> None:
    message = str(error)
    assert 1 <= longest_run(message, "K") <= 100
    assert len(message) < 300


def test_a_flood_of_bad_fields_is_cut_to_twenty() -> None:
    """An error must fit in the response trailers, however many fields are bad."""
    v = validation.Violations()
    v.attributes("user.attributes", {f"k{i}": "x" * 300 for i in range(500)})
    error = refusal(v.raise_if_any)
    assert isinstance(error, ValidationFailed)
    assert len(error.violations) == 20
    assert len(error.message) < 1000


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_metadata_nesting_is_bounded_so_responses_stay_decodable() -> None:
    """Found by the hostile-input suite: metadata 40 objects deep was accepted, and every
    response carrying it (the award's entry, ListTransactions, WatchLedger) then nested past
    protobuf's 100 levels, so no client could decode it."""
    validation.award(award(metadata=nested(validation.MAX_METADATA_DEPTH)), T0)
    with pytest.raises(ValidationFailed) as caught:
        validation.award(award(metadata=nested(validation.MAX_METADATA_DEPTH + 1)), T0)
    assert [v.field for v in caught.value.violations] == ["metadata"]
    assert "20 levels" in caught.value.violations[0].description
    with pytest.raises(ValidationFailed):
        validation.award(award(metadata={"a": [[[[[[nested(15)]]]]]]}), T0)


def test_a_preview_ending_in_the_first_month_of_year_one_is_invalid() -> None:
    """Found by the hostile-input suite: end_time 0001-01-01 with no start_time put the
    default start 30 days before year 1 (OverflowError: INTERNAL)."""
    early = datetime(1, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC)
    cmd = commands.PreviewTriggers(system_key="xp", trigger_ids=(ENTRY_ID,), end_time=early)
    with pytest.raises(ValidationFailed) as caught:
        validation.preview_triggers(cmd)
    assert [v.field for v in caught.value.violations] == ["end_time"]
    validation.preview_triggers(
        commands.PreviewTriggers(
            system_key="xp", trigger_ids=(ENTRY_ID,), end_time=early + timedelta(days=30)
        )
    )


def test_points_summary_filters_are_bounded() -> None:
    """Found by the hostile-input suite: 1,000 user_attributes filters made a query SQLite
    refused (expression tree too large), answered INTERNAL."""
    many = tuple(("tier", "gold") for _ in range(validation.MAX_TRIGGER_FILTERS))
    reports.points_summary(reports.GetPointsSummary("xp", user_attributes=many))
    with pytest.raises(ValidationFailed) as caught:
        reports.points_summary(reports.GetPointsSummary("xp", user_attributes=(*many, ("a", "b"))))
    assert [v.field for v in caught.value.violations] == ["user_attributes"]
