"""Boosts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from server.domain.model import Boost, BoostStatus, Rounding
from server.store.execution import Row
from server.store.repositories.base import Repository
from server.store.statements import boosts_page


class SqlBoostRepository(Repository):
    def live(self, now: datetime) -> list[Boost]:
        return [_boost(r) for r in self.db.rows(self.sql.boosts.boosts_live, {"now": now})]

    def live_counts(
        self, system_key: str, user_ids: Sequence[str], now: datetime
    ) -> dict[str, int]:
        if not user_ids:
            return {}
        params = {"system_key": system_key, "user_ids": list(user_ids), "now": now}
        rows = self.db.rows(self.sql.boosts.boosts_live_counts, params)
        return {r["user_id"]: int(r["live"]) for r in rows}

    def get(self, boost_id: str) -> Boost | None:
        row = self.db.first(self.sql.boosts.boost_get, {"id": boost_id})
        return _boost(row) if row else None

    def lock(self, boost_id: str) -> Boost | None:
        row = self.db.first(self.sql.boosts.boost_lock, {"id": boost_id})
        return _boost(row) if row else None

    def add(self, added: Sequence[Boost]) -> None:
        if added:
            self._write_rows(self.sql.boosts.boost_add, [_boost_values(b) for b in added])

    def archive(self, boost_id: str, when: datetime) -> None:
        self.db.run(self.sql.boosts.boost_archive, {"match_id": boost_id, "archive_time": when})

    def page(
        self,
        system_key: str,
        user_id: str,
        statuses: frozenset[BoostStatus],
        before: tuple[datetime, str] | None,
        limit: int,
        now: datetime,
    ) -> list[Boost]:
        statement = boosts_page(
            user=bool(user_id),
            cursor=before is not None,
            statuses=frozenset(s.value for s in statuses),
        )
        params: dict[str, Any] = {"system_key": system_key, "limit": limit, "now": now}
        if user_id:
            params["user_id"] = user_id
        if before is not None:
            params.update(before_time=before[0], before_id=before[1])
        return [_boost(r) for r in self.db.rows(statement, params)]


def _boost_values(b: Boost) -> dict[str, Any]:
    return {
        "id": b.id,
        "system_key": b.system_key,
        "user_id": b.user_id,
        "name": b.name,
        "multiplier": str(b.multiplier),
        "rounding": b.rounding.value,
        "start_time": b.start_time,
        "end_time": b.end_time,
        "user_attributes": [list(a) for a in b.user_attributes],
        "archive_time": b.archive_time,
        "create_time": b.create_time,
    }


def _boost(r: Row) -> Boost:
    return Boost(
        id=r["id"],
        system_key=r["system_key"],
        user_id=r["user_id"],
        name=r["name"],
        multiplier=Decimal(r["multiplier"]),
        rounding=Rounding(r["rounding"]),
        start_time=r["start_time"],
        end_time=r["end_time"],
        user_attributes=tuple((k, v) for k, v in r["user_attributes"]),
        archive_time=r["archive_time"],
        create_time=r["create_time"],
    )
