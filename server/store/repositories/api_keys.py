"""API keys."""

from __future__ import annotations

from datetime import datetime

from server.domain.access import ApiKey, Scope
from server.store.execution import Row
from server.store.repositories.base import Repository


class SqlApiKeyRepository(Repository):
    def all(self) -> list[ApiKey]:
        return [_api_key(r) for r in self.db.rows(self.sql.api_keys.api_keys_all)]

    def find(self, *, key_hash: str | None = None, key_id: str | None = None) -> ApiKey | None:
        if (key_hash is None) == (key_id is None):
            raise ValueError("find one key by key_hash or by key_id")
        if key_hash is not None:
            row = self.db.first(self.sql.api_keys.api_key_by_hash, {"key_hash": key_hash})
        else:
            row = self.db.first(self.sql.api_keys.api_key_by_id, {"id": key_id})
        return None if row is None else _api_key(row)

    def add(self, key: ApiKey) -> None:
        self.db.run(
            self.sql.api_keys.api_key_add,
            {
                "id": key.id,
                "key_hash": key.key_hash,
                "name": key.name,
                "scope": key.scope.value,
                "systems": ",".join(sorted(key.systems)),
                "token_secret": key.token_secret.hex(),
                "create_time": key.create_time,
                "revoke_time": key.revoke_time,
            },
        )

    def revoke(self, key_id: str, now: datetime) -> bool:
        """Revoke a live key; False when there is no such key or it was revoked already."""
        found = self.db.first(
            self.sql.api_keys.api_key_revoke, {"match_id": key_id, "revoke_time": now}
        )
        return found is not None


def _api_key(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        scope=Scope(row["scope"]),
        systems=frozenset(s for s in row["systems"].split(",") if s),
        key_hash=row["key_hash"],
        token_secret=bytes.fromhex(row["token_secret"]),
        create_time=row["create_time"],
        revoke_time=row["revoke_time"],
    )
