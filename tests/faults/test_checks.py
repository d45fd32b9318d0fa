"""The fault suite's checks catch what they are there to catch: a ledger made wrong on
purpose fails the check that names the fault, and only that one."""

from __future__ import annotations

from dataclasses import replace

from tests.faults.checks import Account, Entry, Ledger, against_clients, invariants
from tests.faults.load import SYSTEM, Write


def entry(sequence: int, key: str, amount: int, after: int, kind: str = "AWARD") -> Entry:
    return Entry("u1", SYSTEM, f"e{sequence}", sequence, kind, amount, after, key)


def account(balance: int, earned: int, spent: int, awards: int, deducts: int) -> Account:
    return Account("u1", SYSTEM, balance, earned, spent, 0, awards, deducts, 0, 0)


# u1: award 10 (k1), award 5 (k2), deduct 3 (k3); a deduction of 50 (k4) refused.
ENTRIES = [entry(1, "k1", 10, 10), entry(2, "k2", 5, 15), entry(3, "k3", -3, 12, "DEDUCT")]
GOOD = Ledger(
    ENTRIES,
    [account(12, 15, 3, 2, 1)],
    [],
    [("u1", SYSTEM, "k1"), ("u1", SYSTEM, "k2"), ("u1", SYSTEM, "k3")],
)


def told() -> list[Write]:
    return [
        Write("award", "u1", "k1", 10, "acked", (("e1", 10),)),
        Write("award", "u1", "k2", 5, "acked", (("e2", 5),)),
        Write("deduct", "u1", "k3", 3, "acked", (("e3", -3),)),
        Write("deduct", "u1", "k4", 50, "refused", reason="INSUFFICIENT_POINTS"),
    ]


def failing(ledger: Ledger, writes: list[Write]) -> set[str]:
    _, found = against_clients(ledger, writes)
    return {c.name for c in [*invariants(ledger), *found] if c.passed is False}


def test_a_consistent_ledger_passes_every_check() -> None:
    assert failing(GOOD, told()) == set()
    figures, _ = against_clients(GOOD, told())
    assert (figures.attempted, figures.acknowledged, figures.refused, figures.found) == (4, 3, 1, 3)
    assert (figures.duplicates, figures.lost, figures.unexplained) == (0, 0, 0)


def test_an_acknowledged_write_missing_is_lost() -> None:
    ledger = replace(GOOD, entries=ENTRIES[:2], accounts=[account(15, 15, 0, 2, 0)])
    figures, _ = against_clients(ledger, told())
    assert figures.lost == 1
    assert failing(ledger, told()) == {
        "every acknowledged entry is in the ledger exactly once",
        "each balance == what its callers were told",
    }


def test_a_write_applied_twice_is_a_duplicate() -> None:
    twice = entry(4, "k2", 5, 17)
    ledger = replace(GOOD, entries=[*ENTRIES, twice], accounts=[account(17, 20, 3, 3, 1)])
    figures, _ = against_clients(ledger, told())
    assert figures.duplicates == 1
    assert failing(ledger, told()) == {
        "no key has more entries than its caller was told of",
        "each balance == what its callers were told",
    }


def test_a_refused_write_in_the_ledger_is_caught() -> None:
    ledger = replace(
        GOOD,
        entries=[*ENTRIES, entry(4, "k4", -12, 0, "DEDUCT")],
        accounts=[account(0, 15, 15, 2, 2)],
    )
    assert "nothing refused is in the ledger" in failing(ledger, told())


def test_an_entry_nobody_was_told_of_is_unexplained() -> None:
    ledger = replace(
        GOOD, entries=[*ENTRIES, entry(4, "k9", 1, 13)], accounts=[account(13, 16, 3, 3, 1)]
    )
    figures, _ = against_clients(ledger, told())
    assert figures.unexplained == 1
    assert "no entry that no caller was told of" in failing(ledger, told())


def test_an_unanswered_write_is_reported() -> None:
    writes = [*told(), Write("award", "u1", "k5", 1, "unresolved")]
    assert failing(GOOD, writes) == {"every write got a definite answer"}


def test_an_account_out_of_step_with_its_entries_fails_the_invariants() -> None:
    ledger = replace(GOOD, accounts=[account(13, 15, 3, 2, 2)])
    assert failing(ledger, told()) >= {
        "balance == sum(ledger) per account",
        "entry counts agree with the entries",
    }
    broken_chain = [ENTRIES[0], replace(ENTRIES[1], balance_after=16), ENTRIES[2]]
    assert "balance_after runs through each account in sequence order" in failing(
        replace(GOOD, entries=broken_chain), told()
    )
    negative = replace(GOOD, accounts=[account(-1, 15, 3, 2, 1)])
    assert "no negative balance" in failing(negative, told())
