"""`tally-server verify` on both stores: a ledger written by every kind of change checks
clean, and each kind of damage done to it behind the server's back is reported by the
check that names it (and only a clean ledger exits 0)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from server.__main__ import main
from server.domain import audit, commands
from server.domain.errors import SystemNotFound, TransientStoreError
from server.domain.model import (
    IntervalUnit,
    LevelBasis,
    TriggerStatus,
    TriggerType,
    UserProfile,
)
from server.services.operations import verify
from server.services.tally import Tally
from server.services.use_cases import boosts, events, levels, points_changes, systems, triggers
from server.store.database import SqlStore
from tests.conftest import T0
from tests.integration.helpers import award, deduct, later, system

HOUR = timedelta(hours=1)


def ladder(tally: Tally, system_key: str, **thresholds: int) -> None:
    for key, points in thresholds.items():
        cmd = commands.CreateLevel(system_key, commands.LevelFields(key=key, points=points))
        levels.create_level(tally, cmd, T0)


def trigger(tally: Tally, system_key: str, type_: TriggerType, points: int, **fields: Any) -> None:
    cmd = commands.CreateTrigger(
        system_key,
        commands.TriggerFields(type=type_, points=points, status=TriggerStatus.ACTIVE, **fields),
    )
    triggers.create_trigger(tally, cmd, T0)


def event(
    tally: Tally, user: str, event_type: str, value: str = "1", *, at: datetime = T0, **fields: Any
) -> None:
    cmd = commands.RecordEvent(UserProfile(user), event_type, Decimal(value), **fields)
    events.record_event(tally, cmd, at)


@pytest.fixture
def busy(tally: Tally) -> Tally:
    """A ledger written by awards, deductions, expiry, reversals, levels, boosts, batches
    and events, in two systems (one with levels by balance, one by lifetime earnings)."""
    system(tally, "xp")
    systems.create_system(
        tally, commands.CreateSystem("coins", level_basis=LevelBasis.LIFETIME_EARNED), T0
    )
    ladder(tally, "xp", bronze=0, silver=50, gold=200)
    ladder(tally, "coins", rich=100)
    trigger(tally, "xp", TriggerType.EVENT, 5, event_type="lesson")
    trigger(tally, "coins", TriggerType.METRIC, 10, event_type="steps", metric_threshold=Decimal(3))
    boosts.create_boosts(
        tally, "xp", [commands.BoostFields("bob", "double", Decimal(2), None, T0, later(5))], T0
    )

    award(tally, "ann", 40, idempotency_key="a-1")
    award(tally, "ann", 30, expire_time=later(100), idempotency_key="a-2")  # silver
    award(tally, "ann", 25, expire_time=later(50))
    deduct(tally, "ann", 20, at=later(10), idempotency_key="d-1")  # from the lot due first
    award(tally, "ann", 1, at=later(200))  # settles: both lots lapse, silver -> bronze
    spent = deduct(tally, "ann", 5, at=later(201))
    points_changes.reverse(tally, commands.Reverse(spent.entry.id, "refund"), later(202))
    mistake = award(tally, "ann", 160, at=later(203))  # gold
    points_changes.reverse(tally, commands.Reverse(mistake.entry.id, "mistake", "r-1"), later(204))

    award(tally, "bob", 10)  # boosted to 20
    lot = award(tally, "bob", 30, expire_time=later(100))  # boosted to 60: silver
    points_changes.reverse(tally, commands.Reverse(lot.entry.id), later(6))  # its lot goes back
    items = [
        commands.Award("xp", UserProfile(u), 7, idempotency_key=f"batch-{u}")
        for u in ("bob", "cy", "dee")
    ]
    points_changes.award_batch(tally, items, later(7))

    award(tally, "ann", 150, system_key="coins")  # rich
    deduct(tally, "ann", 100, system_key="coins")  # still rich (lifetime)
    event(tally, "ann", "lesson", idempotency_key="e-1")
    event(tally, "cy", "steps", "7.5", idempotency_key="e-2")  # twice: 20 coins
    event(tally, "cy", "steps", "0.25")
    return tally


def stored(tally: Tally) -> SqlStore:
    assert isinstance(tally.store, SqlStore)
    return tally.store


def run(tally: Tally, system_key: str = "", **options: Any) -> verify.Report:
    return verify.verify(stored(tally), system_key, **options)


def checks(report: verify.Report) -> set[str]:
    return {d.check for d in report.differences}


def the(report: verify.Report, check: str) -> audit.Difference:
    found = [d for d in report.differences if d.check == check]
    assert len(found) == 1, report.differences
    return found[0]


def ints(found: audit.Difference) -> tuple[int, int]:
    assert isinstance(found.stored, int)
    assert isinstance(found.expected, int)
    return found.stored, found.expected


def sql(tally: Tally, statement: str, **params: Any) -> Any:
    with stored(tally).engine.begin() as connection:
        return connection.execute(text(statement), params)


def one(tally: Tally, statement: str, **params: Any) -> Any:
    with stored(tally).engine.connect() as connection:
        return connection.execute(text(statement), params).mappings().one()


def entry_of(tally: Tally, user: str, type_: str, nth: int = 0) -> Any:
    with stored(tally).engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT * FROM ledger_entries WHERE user_id = :u AND system_key = 'xp' "
                "AND type = :t ORDER BY sequence"
            ),
            {"u": user, "t": type_},
        )
        return rows.mappings().all()[nth]


class TestClean:
    def test_every_kind_of_change_verifies_clean(self, busy: Tally) -> None:
        report = run(busy)
        assert report.differences == []
        assert report.ok
        (entries,) = one(busy, "SELECT count(*) AS n FROM ledger_entries").values()
        assert report.entries == entries > 20
        # ann and bob, cy, dee in xp; ann and cy in coins
        assert report.accounts == 6
        # the fixture did reach the states the checks are about
        lots = one(busy, "SELECT count(*) AS n FROM credit_lots")["n"]
        assert lots == 0  # ann's lapsed, bob's reversed
        assert one(busy, "SELECT count(*) AS n FROM level_changes")["n"] >= 5
        assert one(busy, "SELECT count(*) AS n FROM ledger_entries WHERE type='EXPIRE'")["n"] == 2

    def test_live_lots_verify_clean(self, tally: Tally) -> None:
        system(tally)
        award(tally, "ann", 30, expire_time=later(100))
        award(tally, "ann", 20, expire_time=later(50))
        award(tally, "ann", 10)
        deduct(tally, "ann", 25)  # all of the lot due first, 5 of the other
        assert one(tally, "SELECT count(*) AS n FROM credit_lots")["n"] == 1
        assert run(tally).differences == []

    def test_accrual_caps_and_deducting_triggers_verify_clean(self, tally: Tally) -> None:
        system(tally, "energy", max_points=5)
        trigger(
            tally,
            "energy",
            TriggerType.TIME_INTERVAL,
            1,
            interval_unit=IntervalUnit.HOURS,
            interval_count=1,
        )
        trigger(tally, "energy", TriggerType.EVENT, -3, event_type="play")
        trigger(tally, "energy", TriggerType.USER_IDENTIFIED, 2)
        award(tally, "ann", 2, system_key="energy")  # 2 on arrival, then 2: 4
        award(tally, "ann", 9, system_key="energy", at=later(1))  # capped at 5
        for hour in (1, 2, 3):
            event(tally, "ann", "play", at=T0 + hour * HOUR + timedelta(minutes=1))
        award(tally, "ann", 1, system_key="energy", at=T0 + 30 * HOUR)  # refilled to the cap
        kinds = one(
            tally,
            "SELECT count(DISTINCT trigger_id) AS n FROM ledger_entries WHERE trigger_id <> ''",
        )
        assert kinds["n"] == 3
        assert one(tally, "SELECT count(*) AS n FROM ledger_entries WHERE capped")["n"] >= 2
        assert run(tally).differences == []

    def test_an_empty_store_verifies_clean(self, tally: Tally) -> None:
        report = run(tally)
        assert (report.ok, report.accounts, report.entries) == (True, 0, 0)

    def test_chunks_of_users_cover_every_account(self, busy: Tally) -> None:
        seen: list[tuple[int, int]] = []
        report = run(busy, chunk_accounts=1, progress=lambda a, e: seen.append((a, e)))
        assert report.ok
        assert report.accounts == 6
        assert len(seen) >= 3  # after each full chunk but the last
        assert seen == sorted(seen)
        # damage in the last chunk is found, and entries whose account is gone, in the
        # middle of the users and after the last account
        sql(busy, "UPDATE accounts SET balance = balance + 1 WHERE user_id = 'dee'")
        sql(busy, "DELETE FROM accounts WHERE user_id IN ('bob', 'cy') AND system_key = 'xp'")
        sql(busy, "DELETE FROM accounts WHERE user_id = 'cy'")
        report = run(busy, chunk_accounts=1)
        assert {(d.user_id, d.check) for d in report.differences} == {
            ("bob", "account_missing"),
            ("cy", "account_missing"),
            ("dee", "balance"),
        }
        sql(busy, "DELETE FROM accounts WHERE user_id = 'dee'")
        found = run(busy, chunk_accounts=1).differences
        assert {(d.user_id, d.check) for d in found} == {
            ("bob", "account_missing"),
            ("cy", "account_missing"),
            ("dee", "account_missing"),
        }


class TestDamage:
    def test_a_tampered_balance(self, busy: Tally) -> None:
        before = one(busy, "SELECT balance FROM accounts WHERE user_id='dee'")["balance"]
        sql(busy, "UPDATE accounts SET balance = 60 WHERE user_id = 'dee'")
        report = run(busy)
        found = the(report, "balance")
        assert (found.system_key, found.user_id, found.stored, found.expected) == (
            "xp",
            "dee",
            60,
            before,
        )
        # bronze by the ledger, silver as the account would be served
        assert the(report, "level").stored == "silver"
        assert the(report, "level").expected == "bronze"
        assert checks(report) == {"balance", "level"}

    def test_a_tampered_total_earned(self, busy: Tally) -> None:
        sql(busy, "UPDATE accounts SET total_earned = total_earned + 3 WHERE user_id='bob'")
        found = the(run(busy), "total_earned")
        stored_, expected = ints(found)
        assert (found.user_id, stored_ - expected) == ("bob", 3)

    def test_tampered_totals_spent_and_expired_and_counts(self, busy: Tally) -> None:
        sql(
            busy,
            "UPDATE accounts SET total_spent = total_spent + 1, total_expired = 0, "
            "award_entries = award_entries + 1 WHERE user_id = 'ann' AND system_key = 'xp'",
        )
        report = run(busy)
        assert checks(report) == {"total_spent", "total_expired", "award_entries"}
        assert the(report, "total_expired").expected == 5 + 30  # what was left of both lots

    def test_a_tampered_lot(self, tally: Tally) -> None:
        system(tally)
        lot = award(tally, "ann", 30, expire_time=later(100))
        award(tally, "ann", 10)
        deduct(tally, "ann", 5)
        sql(tally, "UPDATE credit_lots SET remaining = 30")
        found = the(run(tally), "lot_remaining")
        assert (found.entry_id, found.stored, found.expected) == (lot.entry.id, 30, 25)

    def test_a_lot_gone_missing(self, tally: Tally) -> None:
        system(tally)
        lot = award(tally, "ann", 30, expire_time=later(100))
        sql(tally, "DELETE FROM credit_lots")
        report = run(tally)
        found = the(report, "lot_remaining")
        assert (found.entry_id, found.stored, found.expected) == (lot.entry.id, 0, 30)
        assert checks(report) == {"lot_remaining"}

    def test_a_tampered_next_expiry(self, tally: Tally) -> None:
        system(tally)
        award(tally, "ann", 30, expire_time=later(100))
        sql(tally, "UPDATE accounts SET next_expire_time = NULL")
        found = the(run(tally), "next_expire_time")
        assert found.stored is None
        assert found.expected == later(100).isoformat()

    def test_a_tampered_level_change(self, busy: Tally) -> None:
        # ann's first move (to silver at 70) recorded as a move to gold (200)
        row = one(
            busy,
            "SELECT sequence, new_level FROM level_changes WHERE user_id = 'ann' "
            "AND system_key = 'xp' ORDER BY sequence LIMIT 1",
        )
        gold = one(busy, "SELECT * FROM levels WHERE key = 'gold'")
        forged = json.dumps({**dict(gold), "points": int(gold["points"])})
        sql(
            busy,
            "UPDATE level_changes SET new_level = :level WHERE user_id = 'ann' "
            "AND sequence = :sequence",
            level=forged,
            sequence=row["sequence"],
        )
        found = the(run(busy), "level_change")
        assert (found.user_id, found.stored, found.expected) == ("ann", "gold", 70)

    def test_a_level_change_of_an_entry_not_there(self, busy: Tally) -> None:
        sql(busy, "UPDATE level_changes SET entry_id = 'nope' WHERE user_id = 'bob'")
        moves = one(busy, "SELECT count(*) AS n FROM level_changes WHERE user_id = 'bob'")
        found = [d for d in run(busy).differences if d.check == "level_change"]
        assert len(found) == moves["n"] == 2  # up to silver, and down again
        assert {(d.user_id, d.stored, d.expected) for d in found} == {("bob", "nope", None)}

    def test_a_deleted_entry(self, busy: Tally) -> None:
        spent = entry_of(busy, "ann", "DEDUCT")  # the first, under key d-1
        sql(
            busy,
            "DELETE FROM ledger_entries WHERE user_id = 'ann' AND id = :id",
            id=spent["id"],
        )
        report = run(busy)
        assert {"balance", "total_spent", "deduct_entries", "balance_after"} <= checks(report)
        balance, summed = ints(the(report, "balance"))
        assert summed == balance + 20
        counted, summed = ints(the(report, "deduct_entries"))
        assert counted - summed == 1
        key = the(report, "idempotency_key")
        assert (key.user_id, key.entry_id) == ("ann", spent["id"])
        assert "'d-1'" in key.detail

    def test_a_doubled_entry(self, busy: Tally) -> None:
        first = entry_of(busy, "cy", "AWARD")
        copy = {**dict(first), "id": "00000000-0000-4000-8000-000000000001"}
        copy["sequence"] = int(first["sequence"]) + 1_000_000
        names = ", ".join(f'"{name}"' for name in copy)
        values = ", ".join(f":{name}" for name in copy)
        for json_column in ("metadata", "boost_ids"):
            copy[json_column] = json.dumps(copy[json_column])
        sql(busy, f"INSERT INTO ledger_entries ({names}) VALUES ({values})", **copy)
        report = run(busy)
        assert {"balance", "total_earned", "award_entries", "balance_after"} <= checks(report)
        chain = the(report, "balance_after")
        assert (chain.user_id, chain.entry_id) == ("cy", copy["id"])
        assert chain.expected == chain.stored + first["amount"]

    def test_entries_of_an_account_that_is_gone(self, busy: Tally) -> None:
        sql(busy, "DELETE FROM accounts WHERE user_id = 'dee'")
        found = the(run(busy), "account_missing")
        assert (found.system_key, found.user_id, found.stored, found.expected) == (
            "xp",
            "dee",
            None,
            7,
        )

    def test_a_negative_balance(self, tally: Tally) -> None:
        system(tally)
        award(tally, "ann", 5)
        sql(tally, "UPDATE ledger_entries SET amount = -5, balance_after = -5")
        sql(tally, "UPDATE accounts SET balance = -5, total_earned = -5")
        report = run(tally)
        assert checks(report) == {"negative_balance", "negative_balance_after"}

    def test_a_reversal_of_a_different_amount(self, busy: Tally) -> None:
        sql(
            busy,
            "UPDATE ledger_entries SET amount = amount - 1 WHERE user_id = 'bob' "
            "AND type = 'REVERSAL'",
        )
        report = run(busy)
        found = the(report, "reversal_target")
        assert (found.user_id, found.stored, found.expected) == ("bob", -61, -60)

    def test_an_entry_reversed_twice(self, busy: Tally) -> None:
        reversal = entry_of(busy, "ann", "REVERSAL")
        copy = {**dict(reversal), "id": "00000000-0000-4000-8000-000000000002"}
        copy["sequence"] = int(reversal["sequence"]) + 1_000_000
        for json_column in ("metadata", "boost_ids"):
            copy[json_column] = json.dumps(copy[json_column])
        names = ", ".join(f'"{name}"' for name in copy)
        values = ", ".join(f":{name}" for name in copy)
        index = "ix_ledger_entries_user_id_reverses_entry_id"
        sql(busy, f"DROP INDEX {index}")  # the store itself refuses a second reversal
        try:
            sql(busy, f"INSERT INTO ledger_entries ({names}) VALUES ({values})", **copy)
            found = the(run(busy), "reversed_twice")
            assert (found.user_id, found.entry_id, found.stored) == (
                "ann",
                reversal["reverses_entry_id"],
                2,
            )
        finally:  # the store as the other tests expect it, whatever happened above
            sql(busy, "DELETE FROM ledger_entries WHERE id = :id", id=copy["id"])
            sql(busy, f"DROP INDEX IF EXISTS {index}")
            sql(
                busy,
                f"CREATE UNIQUE INDEX {index} ON ledger_entries (user_id, reverses_entry_id) "
                "WHERE reverses_entry_id IS NOT NULL",
            )

    def test_a_tampered_metric_total(self, busy: Tally) -> None:
        sql(busy, "UPDATE metric_totals SET total = '8' WHERE user_id = 'cy'")
        found = the(run(busy), "metric_total")
        assert (found.user_id, found.stored, found.expected) == ("cy", "8", "7.75")

    def test_an_event_a_key_remembers_is_gone(self, busy: Tally) -> None:
        sql(busy, "DELETE FROM events WHERE user_id = 'ann'")
        report = run(busy)
        assert checks(report) == {"idempotency_key", "metric_total"}
        assert "'e-1'" in the(report, "idempotency_key").detail


class TestScope:
    def test_system_limits_the_check(self, busy: Tally) -> None:
        sql(busy, "UPDATE accounts SET balance = balance + 1 WHERE system_key = 'coins'")
        coins, xp = run(busy, "coins"), run(busy, "xp")
        assert (coins.accounts, xp.accounts) == (2, 4)
        assert checks(coins) == {"balance"}
        assert {d.system_key for d in coins.differences} == {"coins"}
        assert xp.ok
        assert not run(busy).ok

    def test_an_unknown_system(self, busy: Tally) -> None:
        with pytest.raises(SystemNotFound):
            run(busy, "nope")


def cli(tally: Tally, *args: str) -> list[str]:
    return [
        "verify",
        "--database-url",
        stored(tally).engine.url.render_as_string(hide_password=False),
        *args,
    ]


class TestCommand:
    def test_clean_exits_0_with_a_summary(
        self, busy: Tally, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(cli(busy)) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[-1].startswith("verified 6 accounts, ")
        assert out[-1].endswith(": no differences")

    def test_differences_exit_1_one_line_each(
        self, busy: Tally, capsys: pytest.CaptureFixture[str]
    ) -> None:
        sql(busy, "UPDATE accounts SET total_earned = total_earned + 3 WHERE user_id='bob'")
        sql(
            busy,
            "UPDATE accounts SET total_spent = total_spent + 1 "
            "WHERE user_id = 'cy' AND system_key = 'xp'",
        )
        assert main(cli(busy)) == 1
        out = capsys.readouterr().out.splitlines()
        assert len(out) == 3
        assert out[0].startswith("xp/bob: total_earned: stored ")
        assert out[1].startswith("xp/cy: total_spent: stored 1, expected 0")
        assert out[2].endswith(": 2 differences")
        sql(busy, "DELETE FROM accounts WHERE user_id = 'dee'")
        assert main(cli(busy, "--system", "xp")) == 1
        lines = capsys.readouterr().out.splitlines()
        assert (
            "xp/dee: account_missing: stored (none), expected 7; 1 entry, but no account" in lines
        )

    def test_json_is_one_object(self, busy: Tally, capsys: pytest.CaptureFixture[str]) -> None:
        assert main([*cli(busy), "--json"]) == 0
        captured = capsys.readouterr()
        clean = json.loads(captured.out)
        assert clean["ok"] is True
        assert clean["accounts"] == 6
        assert clean["differences"] == []
        assert clean["entries"] > 20
        sql(busy, "UPDATE accounts SET balance = 61 WHERE user_id = 'dee'")
        assert main([*cli(busy), "--json", "--system", "xp"]) == 1
        damaged = json.loads(capsys.readouterr().out)
        assert damaged["ok"] is False
        assert damaged["accounts"] == 4
        by_check = {d["check"]: d for d in damaged["differences"]}
        assert set(by_check) == {"balance", "level"}
        assert {
            k: by_check["balance"][k] for k in ("system_key", "user_id", "stored", "expected")
        } == {
            "system_key": "xp",
            "user_id": "dee",
            "stored": 61,
            "expected": 7,
        }
        assert by_check["balance"]["entry_id"] is None

    def test_json_names_the_entry(self, busy: Tally, capsys: pytest.CaptureFixture[str]) -> None:
        spent = entry_of(busy, "ann", "DEDUCT")
        sql(busy, "UPDATE ledger_entries SET balance_after = 0 WHERE id = :id", id=spent["id"])
        assert main([*cli(busy), "--json"]) == 1
        damaged = json.loads(capsys.readouterr().out)
        chains = [d for d in damaged["differences"] if d["check"] == "balance_after"]
        # the tampered entry, and the one after it, which no longer follows
        assert chains[0]["entry_id"] == spent["id"]
        assert (chains[0]["stored"], chains[0]["expected"]) == (0, 75)
        assert len(chains) == 2

    def test_an_unknown_system_exits_2(
        self, busy: Tally, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main([*cli(busy), "--system", "nope"]) == 2
        assert (
            capsys.readouterr().err.splitlines()[-1]
            == "tally-server verify: no points system 'nope'"
        )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (
            "sqlite:////nonexistent/tally.db",
            "tally-server verify: no SQLite database at /nonexistent/tally.db",
        ),
        (
            "postgresql+psycopg://root@127.0.0.1:1/tally",
            "tally-server verify: cannot open the database postgresql+psycopg://root@127.0.0.1:1/"
            "tally: Connection refused",
        ),
        # Settings are checked before any command runs (server/settings.py).
        ("not a url", "tally-server: --database-url is not a database URL"),
        ("mysql://x@localhost/db", "tally-server: --database-url must be a PostgreSQL or SQLite"),
    ],
)
def test_a_store_that_cannot_be_read_exits_2_in_one_line(
    url: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--database-url", url]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = [line for line in captured.err.splitlines() if line.startswith("tally-server")]
    assert len(lines) == 1
    assert lines[0].startswith(says)
    assert "Traceback" not in captured.err


def test_a_store_without_the_schema_exits_2(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.db").write_bytes(b"")
    assert main(["verify", "--database-url", f"sqlite:///{tmp_path / 'empty.db'}"]) == 2
    assert "run `tally-server migrate` first" in capsys.readouterr().err


class TestSnapshot:
    def test_writes_committed_during_a_verification_are_not_seen(self, tally: Tally) -> None:
        """Every read of a verification sees one state: an award committed between
        reading the accounts and reading the entries would otherwise be a difference."""
        system(tally)
        award(tally, "ann", 5)
        everyone = ("", "\U0010ffff")
        with stored(tally).snapshot() as uow:
            (before,) = uow.audit.accounts(everyone, "")
            award(tally, "ann", 7)  # commits in a transaction of its own
            (again,) = uow.audit.accounts(everyone, "")
            assert uow.audit.entry_problems(everyone, "") == []
        assert before == again
        assert before.ledger is not None
        assert before.ledger.balance == 5
        assert run(tally).ok


def test_a_store_lost_while_verifying_exits_2_in_one_line(
    tally: Tally, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost(*_args: Any, **_kwargs: Any) -> verify.Report:
        raise TransientStoreError("server closed the connection unexpectedly\nmore")

    monkeypatch.setattr(verify, "verify", lost)
    assert main(cli(tally)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1] == (
        "tally-server verify: cannot read the store: server closed the connection unexpectedly"
    )
