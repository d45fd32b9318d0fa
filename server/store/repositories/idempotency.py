"""Idempotency keys: what a batch's keys remember (read with its accounts:
SqlAccountRepository.standing)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from server.services.ports import KeyScope, StoredResponse
from server.store.repositories.base import Repository


class SqlIdempotencyRepository(Repository):
    def add(self, keys: Mapping[KeyScope, StoredResponse], now: datetime) -> None:
        if not keys:
            return
        self._write_user_rows(
            self.sql.idempotency.key_add,
            [
                {
                    "user_id": user_id,
                    "scope": scope,
                    "key": key,
                    "request_hash": stored.request_hash,
                    "response": stored.response,
                    "create_time": now,
                }
                for (user_id, scope, key), stored in keys.items()
            ],
        )
