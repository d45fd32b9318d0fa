"""A user's book: their accounts in every points system, and their running event totals,
as the changes of one batch decide on them.

Users are the unit of locking, so a change may touch any of its user's accounts (an event
awards in every system whose triggers match; a welcome fires the USER_IDENTIFIED triggers
of every system the user is owed one in). Each change is decided on a fork of the book;
the batch keeps the fork when the decision succeeds, so a failed change leaves nothing
behind.

Opening an account for a change first settles it at the change's time: credit that lapsed
is written off and TIME_INTERVAL firings that fell due are written, in the order of their
times, each entry dated when it happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from server.domain import boosts as boosting
from server.domain import triggers
from server.domain.access import Reach
from server.domain.ids import UNSEEDED, IdSource
from server.domain.ledger import Account, Posting
from server.domain.model import Boost, Event, LedgerEntry, PointsSystem, Trigger, User
from server.domain.rules import Rules

BEFORE = timedelta(microseconds=1)  # an instant earlier (times keep microseconds)


@dataclass
class Book:
    user: User
    accounts: dict[str, Account]  # by system key: the accounts the user has
    # Running event totals by (event type, reach name): an event counts in its caller's
    # reach, and a system's triggers see the sum over the reaches that include it.
    metrics: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    # What the decision at hand adds (a fork starts with none of it).
    entries: list[LedgerEntry] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)  # systems whose account changed
    changed_metrics: set[tuple[str, str]] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    # Where the ids of what the decision makes come from (the batch's source, shared by
    # every book of the batch, so that ids follow the order of the decisions).
    ids: IdSource = field(default=UNSEEDED, compare=False, repr=False)

    def fork(self, user: User) -> Book:
        """A copy to decide one change on (with the user as that change names it)."""
        return Book(
            user,
            {key: account.copy() for key, account in self.accounts.items()},
            dict(self.metrics),
            ids=self.ids,
        )

    def account(self, system: PointsSystem, rules: Rules, now: datetime) -> Account:
        """The user's account in `system` (a new one if they have none), settled at `now`."""
        account = self.accounts.get(system.key)
        if account is None:
            account = Account(system.key, self.user.id, create_time=now)
            self.accounts[system.key] = account
        account.ids = self.ids
        self._settle(account, system, rules, now)
        return account

    def boosts(self, rules: Rules, system_key: str, when: datetime) -> list[Boost]:
        """The boosts that apply to the user's positive awards in a system at `when`."""
        return boosting.applying(rules.boosts_for(system_key, self.user.id), self.user, when)

    def post(self, entry: LedgerEntry) -> LedgerEntry:
        self.entries.append(entry)
        self.changed.add(entry.system_key)
        return entry

    def count(self, event: Event) -> None:
        self.metrics[(event.event_type, event.reach)] = event.total_after
        self.changed_metrics.add((event.event_type, event.reach))
        self.events.append(event)

    def total(self, event_type: str, system_key: str) -> Decimal:
        """The running total of `event_type` that a system's METRIC triggers see: the
        user's events recorded by callers who could use that system."""
        return sum(
            (
                total
                for (kind, reach), total in self.metrics.items()
                if kind == event_type and Reach.named(reach).allows(system_key)
            ),
            Decimal(0),
        )

    def seen_total(self, event_type: str, reach: Reach) -> Decimal:
        """The running total of `event_type` as a caller of `reach` may learn it: the
        user's events that counted toward one of its systems or more."""
        return sum(
            (
                total
                for (kind, recorded), total in self.metrics.items()
                if kind == event_type and reach.meets(Reach.named(recorded))
            ),
            Decimal(0),
        )

    def _settle(self, account: Account, system: PointsSystem, rules: Rules, now: datetime) -> None:
        """Write off lapsed credit and write due TIME_INTERVAL firings, in time order."""
        intervals = rules.intervals.get(system.key, ())
        version = rules.interval_epochs.get(system.key, 0)
        if intervals or account.next_accrual_time is not None or account.accrual_version < version:
            self._accrue(account, system, rules, intervals, now)
            if account.accrual_version != version:
                account.accrual_version = version
                self.changed.add(system.key)
        for entry in account.expire_lapsed(now):
            self.post(entry)

    def _accrue(
        self,
        account: Account,
        system: PointsSystem,
        rules: Rules,
        intervals: tuple[Trigger, ...],
        now: datetime,
    ) -> None:
        before = account.next_accrual_time
        while True:
            due = {t.id: triggers.next_due(t, account) for t in intervals}
            pending = [(when, t) for t in intervals if (when := due[t.id]) is not None]
            pending = [(when, t) for when, t in pending if when <= now]
            if not pending:
                break
            when, trigger = min(pending, key=lambda p: (p[0], p[1].create_time, p[1].id))
            lapse = account.next_expire_time
            if lapse is not None and lapse <= when:
                for entry in account.expire_lapsed(lapse):  # credit that lapsed first
                    self.post(entry)
                continue
            if _no_effect(account, trigger, system.max_points):
                # Full (or, deducting, empty): every firing until something else can
                # change the balance (an expiry, another trigger's firing, or `now`) does
                # nothing; skip them at once.
                limit = now if lapse is None else min(now, lapse - BEFORE)
                others = [w for w, t in pending if t.id != trigger.id]
                if others:
                    limit = min(limit, min(others) - BEFORE)
                skipped = triggers.skip_to(when, trigger.interval, limit)
                account.interval_marks[trigger.id] = max(when, skipped)
                continue
            posting = Posting(trigger_id=trigger.id)
            boosts = self.boosts(rules, system.key, when)
            self.post(
                triggers.fire(
                    account,
                    trigger,
                    1,
                    posting,
                    when=when,
                    max_points=system.max_points,
                    boosts=boosts,
                )
            )
            account.interval_marks[trigger.id] = when
        live = {t.id for t in intervals}
        for stale in [k for k in account.interval_marks if k not in live]:
            del account.interval_marks[stale]
            self.changed.add(system.key)
        account.next_accrual_time = min(
            (when for t in intervals if (when := triggers.next_due(t, account)) is not None),
            default=None,
        )
        if account.next_accrual_time != before:
            self.changed.add(system.key)


def _no_effect(account: Account, trigger: Trigger, max_points: int) -> bool:
    if trigger.points > 0:
        return max_points > 0 and account.balance >= max_points
    return account.balance == 0


def settles(account: Account, rules: Rules, now: datetime) -> bool:
    """Whether opening the account at `now` would write something (or could: its accrual
    was worked out before a trigger of its system changed)."""
    epoch = rules.interval_epochs.get(account.system_key, 0)
    return (
        account.has_lapsed_credit(now)
        or (account.next_accrual_time is not None and account.next_accrual_time <= now)
        or account.accrual_version < epoch
    )
