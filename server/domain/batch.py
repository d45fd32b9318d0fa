"""One batch's decision: its commands and what was read in; what to write and what each
command answers out. Pure and deterministic: ids come from the seed it is given and times
from the commands, so the same input always gives the same decision.

The pipeline (services/pipeline/posting.py) prepares the input (it locks the batch's
users and reads their accounts, running totals, reversals and remembered responses),
calls `decide`, and writes what the decision says; it decides nothing itself.

Commands are decided in order, each on its user's book (domain/book.py) as the commands
before it left it, on a fork that is kept only when the command succeeds, so a command
that fails leaves nothing behind. A command fails alone: its error is its answer.

- A user must exist unless the command names a profile (it creates the user); a command
  before the one that creates its user finds no user, as it would alone.
- An idempotency key already used in the batch (in the same scope) answers what its first
  command did, when the request is the same, and IDEMPOTENCY_KEY_REUSED otherwise; a key
  remembered from an earlier batch replays its response the same way.
- A command that names its user's profile (an award, an event) welcomes the user in
  every system its caller may use that the user has not been welcomed in yet: those
  systems' USER_IDENTIFIED triggers fire first, once per user and system (a user a key
  limited to other systems created, or one welcomed before the system was created, is
  still owed its welcome here: model.Welcomed). Deductions and reversals never welcome:
  they give no points and name no one new.
- A command that changes an account across a system's level thresholds moves the level
  (one move per system, named by the last entry there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from server.domain import changes, commands, levels
from server.domain.access import EVERY_SYSTEM, LEGACY_USER_SCOPE, Reach
from server.domain.balances import balance_in
from server.domain.book import Book
from server.domain.changes import TriggerAward
from server.domain.errors import IdempotencyKeyReused, SystemNotFound, TallyError, UserNotFound
from server.domain.ids import IdSource, seeded
from server.domain.ledger import Account, CreditLot
from server.domain.model import (
    WELCOMED_NOWHERE,
    Event,
    LedgerEntry,
    LevelChange,
    PointsSystem,
    User,
    UserProfile,
)
from server.domain.results import EventResult, Result, SystemEventResult, WriteResult, Written
from server.domain.rules import Rules

AccountKey = tuple[str, str]  # (user_id, system_key)
KeyScope = tuple[str, str, str]  # (user_id, scope, key): where an idempotency key lives
TotalKey = tuple[str, str, str]  # (user_id, event_type, reach name): a running event total
# What a command comes to: its result, its error, or None for a command that found nothing
# to write (settling an account with nothing due).
Outcome = Result | TallyError | None


# -- the commands -------------------------------------------------------------------------


# Every command says, besides its own rule: `system_key`, the system it changes ('' for a
# change of the user's, an event); `user_id`; `now`; `profile` (given: create the user
# when new and apply these profile fields; None: the user must exist, USER_NOT_FOUND
# otherwise); `idempotency_key` and `request_hash`; `reach`, the systems its caller may
# use (what it may affect beyond its own system: a new user's welcome, an event's
# triggers and running totals); and what the batch must read for it: `reverses`, the
# entry a reversal undoes, and `reads_metrics`, the event types whose totals it uses.


@dataclass(frozen=True)
class AwardPoints:
    award: commands.Award
    now: datetime
    request_hash: str = ""
    reach: Reach = EVERY_SYSTEM  # the user is welcomed in the caller's systems alone
    reverses: str = field(default="", init=False)
    reads_metrics: tuple[str, ...] = field(default=(), init=False)

    @property
    def system_key(self) -> str:
        return self.award.system_key

    @property
    def user_id(self) -> str:
        return self.award.user.id

    @property
    def profile(self) -> UserProfile | None:
        return self.award.user

    @property
    def idempotency_key(self) -> str:
        return self.award.idempotency_key


@dataclass(frozen=True)
class DeductPoints:
    deduct: commands.Deduct
    now: datetime
    request_hash: str = ""
    reach: Reach = EVERY_SYSTEM
    profile: UserProfile | None = field(default=None, init=False)
    reverses: str = field(default="", init=False)
    reads_metrics: tuple[str, ...] = field(default=(), init=False)

    @property
    def system_key(self) -> str:
        return self.deduct.system_key

    @property
    def user_id(self) -> str:
        return self.deduct.user_id

    @property
    def idempotency_key(self) -> str:
        return self.deduct.idempotency_key


@dataclass(frozen=True)
class ReverseEntry:
    reverse: commands.Reverse
    original: LedgerEntry  # the entry it undoes, as read before the batch
    now: datetime
    request_hash: str = ""
    reach: Reach = EVERY_SYSTEM
    profile: UserProfile | None = field(default=None, init=False)
    reads_metrics: tuple[str, ...] = field(default=(), init=False)

    @property
    def system_key(self) -> str:
        return self.original.system_key

    @property
    def user_id(self) -> str:
        return self.original.user_id

    @property
    def idempotency_key(self) -> str:
        return self.reverse.idempotency_key

    @property
    def reverses(self) -> str:
        return self.original.id


@dataclass(frozen=True)
class CountEvent:
    """RecordEvent: the user's, not one system's (its key lives in the caller's reach)."""

    record: commands.RecordEvent
    now: datetime
    request_hash: str = ""
    reach: Reach = EVERY_SYSTEM
    system_key: str = field(default="", init=False)
    reverses: str = field(default="", init=False)

    @property
    def user_id(self) -> str:
        return self.record.user.id

    @property
    def profile(self) -> UserProfile | None:
        return self.record.user

    @property
    def idempotency_key(self) -> str:
        return self.record.idempotency_key

    @property
    def reads_metrics(self) -> tuple[str, ...]:
        return (self.record.event_type,)


@dataclass(frozen=True)
class SettleAccount:
    """Write what fell due in an account by `now` (nothing when nothing did)."""

    system_key: str
    user_id: str
    now: datetime
    profile: UserProfile | None = field(default=None, init=False)
    idempotency_key: str = field(default="", init=False)
    request_hash: str = field(default="", init=False)
    reach: Reach = field(default=EVERY_SYSTEM, init=False)
    reverses: str = field(default="", init=False)
    reads_metrics: tuple[str, ...] = field(default=(), init=False)


@dataclass(frozen=True)
class Circumstances:
    """What a rule may consult besides the user's book."""

    rules: Rules
    # Entries of this user already reversed (entry id -> the reversal's id).
    reversals: Mapping[str, str]
    # USER_IDENTIFIED awards the command's decision made first (the welcome it owed).
    welcome: Sequence[TriggerAward] = ()

    def system(self, key: str) -> PointsSystem:
        system = self.rules.systems.get(key)
        if system is None:
            raise SystemNotFound(key)
        return system


Rule = Callable[[Book, Circumstances], Result | None]


@dataclass(frozen=True)
class CustomChange:
    """A change decided by a rule given as a function: for tests that must stall or break
    a decision, and for changes no command above states. Deterministic when its rule is;
    no use case posts one."""

    system_key: str
    user_id: str
    rule: Rule
    now: datetime
    profile: UserProfile | None = None
    idempotency_key: str = ""
    request_hash: str = ""
    reach: Reach = EVERY_SYSTEM
    reverses: str = field(default="", init=False)
    reads_metrics: tuple[str, ...] = field(default=(), init=False)


Command = AwardPoints | DeductPoints | ReverseEntry | CountEvent | SettleAccount | CustomChange


def key_scope(command: Command) -> KeyScope:
    """Where a command's idempotency key lives: the user and system; a user-wide key (an
    event's) lives in its caller's reach, so that keys limited to other systems can
    neither replay nor block it."""
    return (command.user_id, command.system_key or command.reach.tag, command.idempotency_key)


def key_scopes_read(command: Command) -> list[KeyScope]:
    """Where a command's idempotency key may be remembered already, for the batch to read
    before it decides: where it lives (key_scope), and for a user-wide key also where it
    was kept before keys had reaches (LEGACY_USER_SCOPE, which the decision falls back to)."""
    scope = key_scope(command)
    if command.system_key:
        return [scope]
    return [scope, (command.user_id, LEGACY_USER_SCOPE, command.idempotency_key)]


def _ruled(command: Command, book: Book, given: Circumstances) -> Result | None:
    """What the command's own rule decides on the book (a fork, with the welcome made)."""
    rules, now = given.rules, command.now
    match command:
        case AwardPoints(award=cmd):
            system = given.system(cmd.system_key)
            entry = changes.award(book, rules, system, cmd, now)
            return WriteResult(entry, balance_in(book, system, rules))
        case DeductPoints(deduct=cmd):
            system = given.system(cmd.system_key)
            entry = changes.deduct(book, rules, system, cmd, now)
            return WriteResult(entry, balance_in(book, system, rules))
        case ReverseEntry(reverse=cmd, original=original):
            system = given.system(original.system_key)
            earlier = given.reversals.get(original.id)
            entry = changes.reverse(
                book, rules, system, original, cmd, now, earlier_reversal_id=earlier
            )
            return WriteResult(entry, balance_in(book, system, rules))
        case CountEvent(record=cmd, reach=reach):
            return _counted(book, given, cmd, now, reach)
        case SettleAccount(system_key=key):
            changes.settle(book, rules, given.system(key), now)
            return None
        case CustomChange(rule=rule):
            return rule(book, given)


def _counted(
    book: Book, given: Circumstances, cmd: commands.RecordEvent, now: datetime, reach: Reach
) -> EventResult:
    """An event's result: by system, what its triggers (and the user's welcome) wrote."""
    recorded = changes.record_event(book, given.rules, cmd, now, reach=reach)
    fired: dict[str, list[TriggerAward]] = {}
    for entry, trigger in given.welcome:  # the USER_IDENTIFIED awards it owed
        fired.setdefault(trigger.system_key, []).append((entry, trigger))
    for key, awards in recorded.awards.items():
        fired.setdefault(key, []).extend(awards)
    results = {}
    for key, awards in fired.items():
        system = given.system(key)
        if key not in book.accounts:  # matched, fired nothing, and no account yet
            book.account(system, given.rules, now)
        results[key] = SystemEventResult(
            added=sum(entry.amount for entry, _ in awards),
            balance=balance_in(book, system, given.rules),
            awards=tuple(awards),
        )
    return EventResult(recorded.event.id, recorded.metric_total, results)


# -- what goes in -------------------------------------------------------------------------


@dataclass(frozen=True)
class Remembered:
    """What an idempotency key remembers: its request's fingerprint, and its response
    (loaded only when replayed: decoding it is the store's format, not a rule)."""

    request_hash: str
    load: Callable[[], Result]


@dataclass(frozen=True)
class BatchInput:
    """A batch's commands, in arrival order, and everything their decision reads."""

    commands: Sequence[Command]
    # The batch's users as locked (or, for a dry run, read), and which of them (or of the
    # users its commands name with a profile) the batch creates: every user a command
    # names with a profile is in one or the other. A user the lock created carries the
    # welcome its first change would give (so that, in the usual case, it needs no second
    # write); the decision takes it as welcomed nowhere, and names it among the users to
    # write when it decides otherwise.
    users: Mapping[str, User]
    new: frozenset[str]
    rules: Rules
    accounts: Mapping[AccountKey, Account]  # every account of the users (with credit lots)
    totals: Mapping[TotalKey, Decimal] = field(default_factory=dict)
    remembered: Mapping[KeyScope, Remembered] = field(default_factory=dict)
    # Entries already reversed (entry id -> the reversal's id), of those commands reverse.
    reversals: Mapping[str, str] = field(default_factory=dict)
    id_seed: str = ""  # every id the decision gives is derived from it


# -- what comes out -----------------------------------------------------------------------


@dataclass(frozen=True)
class Decided:
    """A command decided: its result as decided (entries not yet stored), or None when it
    found nothing to write."""

    result: Result | None


@dataclass(frozen=True)
class Repeat:
    """A repeat, with the same request, of a key an earlier command of the batch used: it
    answers what that command (by its index) did."""

    index: int


# A command's answer: decided, a repeat, a remembered response replayed, or its error.
Answer = Decided | Repeat | Result | TallyError


@dataclass(frozen=True)
class BatchDecision:
    """What the batch writes, and what each command answers."""

    answers: tuple[Answer, ...]
    entries: tuple[LedgerEntry, ...]  # in the order decided
    level_changes: tuple[LevelChange, ...]
    accounts: tuple[Account, ...]  # the accounts changed, by (user, system)
    # Of those, the credit lots created or changed (emptied ones to delete).
    lots: Mapping[AccountKey, tuple[CreditLot, ...]]
    totals: Mapping[TotalKey, Decimal]  # running totals changed, by (user, type, reach)
    events: tuple[Event, ...]
    # Users whose profile fields or welcomed systems differ from those given, by id.
    users: tuple[User, ...]
    # The keys to remember: scope -> (the command whose result it keeps, request hash).
    remember: Mapping[KeyScope, tuple[int, str]]

    def outcomes(self, written: Written) -> list[Outcome]:
        """Each command's outcome, its entries as `written` stored them."""
        outcomes: list[Outcome] = []
        for answer in self.answers:
            outcome: Outcome
            if isinstance(answer, Repeat):
                first = outcomes[answer.index]
                outcome = (
                    first
                    if isinstance(first, TallyError) or first is None
                    else dataclasses.replace(first, replayed=True)
                )
            elif isinstance(answer, Decided):
                outcome = None if answer.result is None else answer.result.written(written)
            else:
                outcome = answer
            outcomes.append(outcome)
        return outcomes


# -- the decision -------------------------------------------------------------------------


def decide(given: BatchInput) -> BatchDecision:
    """Decide every command of the batch in order (see the module's docstring)."""
    return _Batch(given).run()


@dataclass
class _Fork:
    book: Book  # the fork a command was decided on: its entries, events, changed accounts
    moves: list[LevelChange]  # the level moves it made, one per system at most
    result: Result | None


@dataclass
class _Batch:
    given: BatchInput
    users: dict[str, User] = field(init=False)  # as given, then with decided profile fields
    # Users the batch may change: those that existed, then each new one from the first
    # command that creates it.
    present: set[str] = field(init=False)
    books: dict[str, Book] = field(init=False)
    reversals: dict[str, str] = field(init=False)
    ids: IdSource = field(init=False)  # shared by every book: ids in the order decided
    firsts: dict[KeyScope, int] = field(default_factory=dict)  # key -> its first command
    changed: set[str] = field(default_factory=set)  # users a kept decision changed

    def __post_init__(self) -> None:
        given = self.given
        self.users = dict(given.users)
        for user_id in given.new & set(given.users):  # as made by the lock: see BatchInput
            self.users[user_id] = dataclasses.replace(
                given.users[user_id], welcomed=WELCOMED_NOWHERE
            )
        self.present = set(given.users) - given.new
        self.reversals = dict(given.reversals)
        self.ids = seeded(given.id_seed)
        self.books = {}
        for (user_id, system_key), account in given.accounts.items():
            self._read_book(user_id).accounts[system_key] = account
        for (user_id, event_type, reach), total in given.totals.items():
            self._read_book(user_id).metrics[(event_type, reach)] = total

    def _read_book(self, user_id: str) -> Book:
        """The book of a user as read (each decision forks it: what was read is never
        changed)."""
        book = self.books.get(user_id)
        if book is None:
            book = self.books[user_id] = Book(self.users[user_id], {}, ids=self.ids)
        return book

    def run(self) -> BatchDecision:
        answers: list[Answer] = []
        forks: list[_Fork] = []
        remember: dict[KeyScope, tuple[int, str]] = {}
        for index, command in enumerate(self.given.commands):
            try:
                answer = self._decide(index, command)
            except TallyError as error:
                answers.append(error)
                continue
            if isinstance(answer, _Fork):
                forks.append(answer)
                answers.append(Decided(answer.result))
                if command.idempotency_key and answer.result is not None:
                    remember[key_scope(command)] = (index, command.request_hash)
            else:
                answers.append(answer)
        return self._decision(answers, forks, remember)

    def _seen_within(self, command: Command) -> bool:
        """Whether the command's caller may see its (present) user: every caller may,
        but one limited to some systems only through an account in one of them, or a
        user made by this batch."""
        reach = command.reach
        if not reach.systems or command.user_id in self.given.new:
            return True
        book = self.books.get(command.user_id)
        return book is not None and any(reach.allows(key) for key in book.accounts)

    def _decide(self, index: int, command: Command) -> _Fork | Repeat | Result:
        """The command's fork to keep, a repeat of an earlier command, or a replayed
        response; its error is raised."""
        if command.user_id not in self.present:
            if command.profile is None:
                raise UserNotFound(command.user_id, command.system_key)
            self.present.add(command.user_id)  # created (a dry run: would be) by this one
        elif command.profile is None and not self._seen_within(command):
            # A caller limited to some systems sees a user only through an account in one
            # of them (as its reads do): a deduction must not tell it the user exists.
            raise UserNotFound(command.user_id, command.system_key)
        scope = key_scope(command)
        if command.idempotency_key:
            earlier = self.firsts.get(scope)
            if earlier is not None:
                if self.given.commands[earlier].request_hash != command.request_hash:
                    raise IdempotencyKeyReused(command.idempotency_key)
                return Repeat(earlier)
            remembered = self.given.remembered.get(scope)
            legacy = remembered is None and not command.system_key
            if legacy:  # a user-wide key kept before keys had reaches (access.py)
                old = (command.user_id, LEGACY_USER_SCOPE, command.idempotency_key)
                remembered = self.given.remembered.get(old)
            if remembered is not None:
                if remembered.request_hash != command.request_hash:
                    raise IdempotencyKeyReused(command.idempotency_key)
                response = remembered.load()
                if legacy and isinstance(response, EventResult):
                    response = response.within(command.reach.allows)
                return dataclasses.replace(response, replayed=True)
        rules = self.given.rules
        if command.system_key and command.system_key not in rules.systems:
            raise SystemNotFound(command.system_key)
        user = self._user(command)
        book = self.books.get(user.id)
        if book is None:
            book = Book(user, {}, ids=self.ids)
        fork = book.fork(user)
        welcome = (
            changes.identify(fork, rules, command.now, command.reach)
            if command.profile is not None
            else []
        )
        result = _ruled(command, fork, Circumstances(rules, self.reversals, welcome))
        moves = self._moves(book, fork, command.now)
        if result is not None and moves:
            result = result.with_levels(moves)
        self.books[user.id] = fork
        for entry in fork.entries:
            if entry.reverses_entry_id:
                self.reversals[entry.reverses_entry_id] = entry.id
        if command.idempotency_key:
            self.firsts[scope] = index
        if fork.user != self.users.get(user.id):  # profile fields given, or a welcome
            self.users[user.id] = fork.user
            self.changed.add(user.id)
        return _Fork(fork, list(moves.values()), result)

    def _moves(self, before: Book, after: Book, now: datetime) -> dict[str, LevelChange]:
        """By system, the level moves of a decision: each changed account's level before
        and after it (the move is dated and named by its last entry there)."""
        rules = self.given.rules
        moves = {}
        last = {entry.system_key: entry.id for entry in after.entries}
        for key in sorted(after.changed & set(last)):
            ladder = rules.levels.get(key)
            if ladder:
                move = levels.crossed(
                    ladder,
                    rules.systems[key],
                    before.accounts.get(key),
                    after.accounts[key],
                    last[key],
                    now,
                )
                if move is not None:
                    moves[key] = move
        return moves

    def _user(self, command: Command) -> User:
        """The user as the command names it: as given, with the command's profile fields
        (a dry run's new user: as the command would create it)."""
        user = self.users.get(command.user_id)
        if user is None:
            assert command.profile is not None, "a command that creates its user names it"
            return User.new(command.profile, command.now)
        return user if command.profile is None else user.with_profile(command.profile)

    def _decision(
        self,
        answers: list[Answer],
        forks: list[_Fork],
        remember: dict[KeyScope, tuple[int, str]],
    ) -> BatchDecision:
        touched = sorted({(f.book.user.id, key) for f in forks for key in f.book.changed})
        accounts = tuple(self.books[user_id].accounts[key] for user_id, key in touched)
        metrics = sorted({(f.book.user.id, m) for f in forks for m in f.book.changed_metrics})
        return BatchDecision(
            answers=tuple(answers),
            entries=tuple(entry for f in forks for entry in f.book.entries),
            level_changes=tuple(move for f in forks for move in f.moves),
            accounts=accounts,
            lots={
                (a.user_id, a.system_key): tuple(
                    dataclasses.replace(lot) for lot in a.changed_lots.values()
                )
                for a in accounts
                if a.changed_lots
            },
            totals={(u, *m): self.books[u].metrics[m] for u, m in metrics},
            events=tuple(event for f in forks for event in f.book.events),
            users=tuple(
                self.users[user_id]
                for user_id in sorted(self.changed)
                if user_id in self.given.users and self.users[user_id] != self.given.users[user_id]
            ),
            remember=remember,
        )
