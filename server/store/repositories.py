"""Repositories: the store's side of services/ports.py, one per table, in SQL.

Hot paths use Core statements (insert ... returning, upserts) rather than ORM flushes, so
that a write is a handful of round trips and no lazy loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from server.domain.ledger import Account, CreditLot
from server.domain.model import EntryType, LedgerEntry, LevelBasis, PointsSystem, User, UserProfile
from server.services.ports import StoredResponse
from server.store.models import (
    LEDGER_SEQUENCE,
    AccountRow,
    CreditLotRow,
    IdempotencyRow,
    LedgerEntryRow,
    SystemRow,
    UserRow,
)

Upsert = postgresql.Insert | sqlite.Insert


def _insert(session: Session, table: Any) -> Upsert:
    """An INSERT that speaks the dialect's ON CONFLICT."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class SqlSystemRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, key: str) -> PointsSystem | None:
        row = self.session.get(SystemRow, key)
        return _system(row) if row else None

    def add(self, system: PointsSystem) -> bool:
        stmt = (
            _insert(self.session, SystemRow)
            .values(
                key=system.key,
                name=system.name,
                description=system.description,
                badge_url=system.badge_url,
                max_points=system.max_points,
                level_basis=system.level_basis.value,
                create_time=system.create_time,
                update_time=system.update_time,
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(SystemRow.key)
        )
        return self.session.execute(stmt).first() is not None

    def update(self, system: PointsSystem) -> None:
        self.session.execute(
            update(SystemRow)
            .where(SystemRow.key == system.key)
            .values(
                name=system.name,
                description=system.description,
                badge_url=system.badge_url,
                max_points=system.max_points,
                level_basis=system.level_basis.value,
                update_time=system.update_time,
            )
        )

    def list_after(self, after_key: str, limit: int) -> list[PointsSystem]:
        rows = self.session.scalars(
            select(SystemRow).where(SystemRow.key > after_key).order_by(SystemRow.key).limit(limit)
        )
        return [_system(r) for r in rows]


def _system(row: SystemRow) -> PointsSystem:
    return PointsSystem(
        key=row.key,
        name=row.name,
        description=row.description,
        badge_url=row.badge_url,
        max_points=row.max_points,
        level_basis=LevelBasis(row.level_basis),
        create_time=row.create_time,
        update_time=row.update_time,
    )


class SqlUserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, user_id: str) -> User | None:
        row = self.session.execute(select(UserRow).where(UserRow.id == user_id)).scalar()
        return _user(row) if row else None

    def lock(self, user_id: str) -> User | None:
        row = self.session.execute(
            select(UserRow).where(UserRow.id == user_id).with_for_update()
        ).scalar()
        return _user(row) if row else None

    def lock_or_create(self, profile: UserProfile, now: datetime) -> tuple[User, bool]:
        values = {
            "id": profile.id,
            "display_name": profile.display_name or "",
            "email": profile.email or "",
            "attributes": profile.attributes or {},
            "create_time": now,
        }
        inserted = self.session.execute(
            _insert(self.session, UserRow)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(UserRow.id)
        ).first()
        if inserted is not None:  # the new row is ours (locked) until commit
            return User(
                id=profile.id,
                display_name=profile.display_name or "",
                email=profile.email or "",
                attributes=profile.attributes or {},
                create_time=now,
            ), True
        user = self.lock(profile.id)
        assert user is not None, "a user row is never deleted"
        changes: dict[str, Any] = {}
        if profile.display_name is not None and profile.display_name != user.display_name:
            changes["display_name"] = profile.display_name
        if profile.email is not None and profile.email != user.email:
            changes["email"] = profile.email
        if profile.attributes is not None and profile.attributes != user.attributes:
            changes["attributes"] = profile.attributes
        if changes:
            self.session.execute(update(UserRow).where(UserRow.id == user.id).values(**changes))
            user = replace(user, **changes)
        return user, False


def _user(row: UserRow) -> User:
    return User(
        id=row.id,
        display_name=row.display_name,
        email=row.email,
        attributes=dict(row.attributes or {}),
        create_time=row.create_time,
    )


class SqlAccountRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, system_key: str, user_id: str) -> Account | None:
        row = self.session.execute(
            select(AccountRow).where(
                AccountRow.user_id == user_id, AccountRow.system_key == system_key
            )
        ).scalar()
        if row is None:
            return None
        account = Account(
            system_key=row.system_key,
            user_id=row.user_id,
            balance=row.balance,
            total_earned=row.total_earned,
            total_spent=row.total_spent,
            total_expired=row.total_expired,
            last_earned_time=row.last_earned_time,
            next_expire_time=row.next_expire_time,
        )
        if account.needs_lots:
            lots = self.session.scalars(
                select(CreditLotRow).where(
                    CreditLotRow.user_id == user_id, CreditLotRow.system_key == system_key
                )
            )
            account.lots = [CreditLot(r.entry_id, r.expire_time, r.remaining) for r in lots]
        return account

    def save(self, account: Account, now: datetime) -> None:
        values = {
            "balance": account.balance,
            "total_earned": account.total_earned,
            "total_spent": account.total_spent,
            "total_expired": account.total_expired,
            "last_earned_time": account.last_earned_time,
            "next_expire_time": account.next_expire_time,
            "update_time": now,
        }
        stmt = _insert(self.session, AccountRow).values(
            user_id=account.user_id, system_key=account.system_key, create_time=now, **values
        )
        # The new values come through `excluded`, never as expressions such as now():
        # Citus refuses those in ON CONFLICT DO UPDATE.
        self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["user_id", "system_key"],
                set_={name: stmt.excluded[name] for name in values},
            )
        )
        self._save_lots(account)

    def _save_lots(self, account: Account) -> None:
        emptied = [lot.entry_id for lot in account.changed_lots.values() if lot.remaining <= 0]
        live = [lot for lot in account.changed_lots.values() if lot.remaining > 0]
        where = (CreditLotRow.user_id == account.user_id) & (
            CreditLotRow.system_key == account.system_key
        )
        if emptied:
            self.session.execute(
                delete(CreditLotRow).where(where, CreditLotRow.entry_id.in_(emptied))
            )
        for lot in live:
            stmt = _insert(self.session, CreditLotRow).values(
                user_id=account.user_id,
                system_key=account.system_key,
                entry_id=lot.entry_id,
                expire_time=lot.expire_time,
                remaining=lot.remaining,
            )
            self.session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["user_id", "system_key", "entry_id"],
                    set_={"remaining": stmt.excluded.remaining},
                )
            )
        account.changed_lots.clear()


class SqlLedgerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._sqlite_next: int | None = None

    def add(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
        if not entries:
            return []
        rows = [_entry_values(e) for e in entries]
        if self.session.get_bind().dialect.name == "postgresql":
            for row in rows:
                row["sequence"] = LEDGER_SEQUENCE.next_value()
        else:
            # SQLite runs one writer at a time (BEGIN IMMEDIATE), so max + 1 is safe.
            if self._sqlite_next is None:
                last = self.session.scalar(select(func.max(LedgerEntryRow.sequence)))
                self._sqlite_next = (last or 0) + 1
            for row in rows:
                row["sequence"] = self._sqlite_next
                self._sqlite_next += 1
        written = []
        for row, entry in zip(rows, entries, strict=True):
            sequence = self.session.execute(
                _insert(self.session, LedgerEntryRow)
                .values(**row)
                .returning(LedgerEntryRow.sequence)
            ).scalar_one()
            written.append(_with_sequence(entry, sequence))
        return written

    def get(self, entry_id: str) -> LedgerEntry | None:
        row = self.session.scalar(select(LedgerEntryRow).where(LedgerEntryRow.id == entry_id))
        return _entry(row) if row else None

    def find_reversal(self, user_id: str, entry_id: str) -> LedgerEntry | None:
        row = self.session.scalar(
            select(LedgerEntryRow).where(
                LedgerEntryRow.user_id == user_id, LedgerEntryRow.reverses_entry_id == entry_id
            )
        )
        return _entry(row) if row else None

    def page(
        self,
        system_key: str,
        user_id: str,
        types: frozenset[EntryType],
        before_sequence: int | None,
        limit: int,
    ) -> list[LedgerEntry]:
        stmt = self._of(system_key, user_id, types)
        if before_sequence is not None:
            stmt = stmt.where(LedgerEntryRow.sequence < before_sequence)
        rows = self.session.scalars(stmt.order_by(LedgerEntryRow.sequence.desc()).limit(limit))
        return [_entry(r) for r in rows]

    def count(self, system_key: str, user_id: str, types: frozenset[EntryType]) -> int:
        stmt = select(func.count()).where(
            LedgerEntryRow.user_id == user_id, LedgerEntryRow.system_key == system_key
        )
        if types:
            stmt = stmt.where(LedgerEntryRow.type.in_([t.value for t in types]))
        return self.session.scalar(stmt) or 0

    def last_sequence(self, system_key: str, user_id: str) -> int:
        return (
            self.session.scalar(
                select(func.max(LedgerEntryRow.sequence)).where(
                    LedgerEntryRow.user_id == user_id, LedgerEntryRow.system_key == system_key
                )
            )
            or 0
        )

    def chunk(
        self,
        system_key: str,
        user_id: str,
        after_sequence: int,
        through_sequence: int,
        start_time: datetime | None,
        end_time: datetime | None,
        limit: int,
    ) -> list[LedgerEntry]:
        stmt = self._of(system_key, user_id, frozenset()).where(
            LedgerEntryRow.sequence > after_sequence,
            LedgerEntryRow.sequence <= through_sequence,
        )
        if start_time is not None:
            stmt = stmt.where(LedgerEntryRow.create_time >= start_time)
        if end_time is not None:
            stmt = stmt.where(LedgerEntryRow.create_time < end_time)
        rows = self.session.scalars(stmt.order_by(LedgerEntryRow.sequence).limit(limit))
        return [_entry(r) for r in rows]

    @staticmethod
    def _of(system_key: str, user_id: str, types: frozenset[EntryType]) -> Select[LedgerEntryRow]:
        stmt = select(LedgerEntryRow).where(
            LedgerEntryRow.user_id == user_id, LedgerEntryRow.system_key == system_key
        )
        if types:
            stmt = stmt.where(LedgerEntryRow.type.in_(sorted(t.value for t in types)))
        return stmt


def _entry_values(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "user_id": entry.user_id,
        "id": entry.id,
        "system_key": entry.system_key,
        "type": entry.type.value,
        "amount": entry.amount,
        "base_amount": entry.base_amount,
        "multiplier": str(entry.multiplier),
        "boost_ids": list(entry.boost_ids),
        "capped": entry.capped,
        "balance_after": entry.balance_after,
        "reason": entry.reason,
        "entry_metadata": entry.metadata,
        "idempotency_key": entry.idempotency_key,
        "trigger_id": entry.trigger_id,
        "event_type": entry.event_type,
        "expire_time": entry.expire_time,
        "reverses_entry_id": entry.reverses_entry_id or None,
        "create_time": entry.create_time,
    }


def _with_sequence(entry: LedgerEntry, sequence: int) -> LedgerEntry:
    return replace(entry, sequence=sequence)


def _entry(row: LedgerEntryRow) -> LedgerEntry:
    return LedgerEntry(
        id=row.id,
        sequence=row.sequence,
        system_key=row.system_key,
        user_id=row.user_id,
        type=EntryType(row.type),
        amount=row.amount,
        base_amount=row.base_amount,
        multiplier=Decimal(row.multiplier),
        boost_ids=tuple(row.boost_ids or ()),
        capped=row.capped,
        balance_after=row.balance_after,
        reason=row.reason,
        metadata=dict(row.entry_metadata or {}),
        idempotency_key=row.idempotency_key,
        trigger_id=row.trigger_id,
        event_type=row.event_type,
        expire_time=row.expire_time,
        reverses_entry_id=row.reverses_entry_id or "",
        create_time=row.create_time,
    )


class SqlIdempotencyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, user_id: str, scope: str, key: str) -> StoredResponse | None:
        row = self.session.execute(
            select(IdempotencyRow.request_hash, IdempotencyRow.response).where(
                IdempotencyRow.user_id == user_id,
                IdempotencyRow.scope == scope,
                IdempotencyRow.key == key,
            )
        ).first()
        return StoredResponse(row.request_hash, row.response) if row else None

    def add(
        self, user_id: str, scope: str, key: str, stored: StoredResponse, now: datetime
    ) -> None:
        self.session.execute(
            _insert(self.session, IdempotencyRow).values(
                user_id=user_id,
                scope=scope,
                key=key,
                request_hash=stored.request_hash,
                response=stored.response,
                create_time=now,
            )
        )
