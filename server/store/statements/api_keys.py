"""API keys: read whole into each process's key ring (never on the hot path), and one key
by its hash (unique) or id (primary key), for a key the ring lacks."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update

from server.store.statements.tables import Dialect, api_keys


class ApiKeyStatements:
    def __init__(self, d: Dialect) -> None:
        self.api_keys_all = select(api_keys).order_by(api_keys.c.create_time, api_keys.c.id)
        self.api_key_by_hash = select(api_keys).where(api_keys.c.key_hash == bindparam("key_hash"))
        self.api_key_by_id = select(api_keys).where(api_keys.c.id == bindparam("id"))
        self.api_key_add = d.insert(api_keys)
        self.api_key_revoke = (
            update(api_keys)
            .where(api_keys.c.id == bindparam("match_id"), api_keys.c.revoke_time.is_(None))
            .values(revoke_time=bindparam("revoke_time"))
            .returning(api_keys.c.id)
        )
