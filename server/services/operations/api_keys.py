"""API keys, as the operator manages them from the command line: create, list, revoke,
and the first admin key of a new store. Keys are checked on calls by each process's key
ring (held/key_ring.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from server.domain.access import ApiKey, Scope
from server.domain.errors import (
    FieldViolation,
    ValidationFailed,
    quote,
)
from server.domain.validation import MAX_NAME_CHARS, SYSTEM_KEY
from server.services.held.key_ring import KEY_PREFIX, hash_key
from server.services.ports import Store, UnitOfWork
from server.services.transactions import in_transaction

KEY_BYTES = 32
FIRST_KEY_NAME = "first-run admin"


@dataclass(frozen=True)
class CreatedKey:
    """A new key and, this once, its text."""

    key: ApiKey
    text: str


def create_key(
    store: Store, name: str, scope: Scope, systems: Iterable[str], now: datetime
) -> CreatedKey:
    limited = frozenset(systems)
    problems = [
        FieldViolation("systems", f"{quote(s)} is not a points system key")
        for s in sorted(limited)
        if not SYSTEM_KEY.fullmatch(s)
    ]
    if not name.strip() or len(name) > MAX_NAME_CHARS:
        problems.insert(0, FieldViolation("name", f"must be 1-{MAX_NAME_CHARS} characters"))
    if problems:
        raise ValidationFailed(problems)
    text = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    key = ApiKey(
        id=secrets.token_hex(6),
        name=name,
        scope=scope,
        systems=limited,
        key_hash=hash_key(text),
        token_secret=secrets.token_bytes(32),
        create_time=now,
    )

    def work(uow: UnitOfWork) -> None:
        uow.api_keys.add(key)
        uow.commit()

    in_transaction(store, work, write=True)
    return CreatedKey(key, text)


def missing_systems(store: Store, system_keys: Iterable[str]) -> list[str]:
    """Of these points systems, those the store has none by (sorted): a key may name a
    system before it is made, but a misspelt one is worth a warning."""
    wanted = sorted(set(system_keys))
    return in_transaction(
        store, lambda uow: [k for k in wanted if uow.systems.get(k) is None], write=False
    )


def list_keys(store: Store) -> list[ApiKey]:
    return in_transaction(store, lambda uow: uow.api_keys.all(), write=False)


def revoke_key(store: Store, key_id: str, now: datetime) -> bool:
    """Revoke a live key; False when there is none by that id (or it was revoked)."""

    def work(uow: UnitOfWork) -> bool:
        done = uow.api_keys.revoke(key_id, now)
        uow.commit()
        return done

    return in_transaction(store, work, write=True)


def create_first_key(store: Store, now: datetime) -> CreatedKey | None:
    """An admin key when the store has none at all (not even revoked ones): the first
    run of `serve` on a new store, so that its first call can be made."""
    if list_keys(store):
        return None
    return create_key(store, FIRST_KEY_NAME, Scope.ADMIN, (), now)
