"""Events: running totals and the events recorded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from server.domain.model import Event
from server.store.execution import Row
from server.store.repositories.base import Repository


class SqlEventRepository(Repository):
    def totals(
        self, user_ids: Sequence[str], event_types: Sequence[str]
    ) -> dict[tuple[str, str, str], Decimal]:
        return totals_of(
            self.db.rows(self.sql.events.totals_of, totals_params(user_ids, event_types))
        )

    def save_totals(self, totals: Mapping[tuple[str, str, str], Decimal], now: datetime) -> None:
        if totals:
            rows = [
                {
                    "user_id": u,
                    "event_type": t,
                    "reach": reach,
                    "total": str(total),
                    "update_time": now,
                }
                for (u, t, reach), total in totals.items()
            ]
            self._write_user_rows(self.sql.events.total_save, rows)

    def add(self, events: Sequence[Event]) -> None:
        if events:
            rows = [
                {
                    "user_id": e.user_id,
                    "id": e.id,
                    "event_type": e.event_type,
                    "value": str(e.value),
                    "total_after": str(e.total_after),
                    "attributes": e.attributes,
                    "create_time": e.create_time,
                    "reach": e.reach,
                }
                for e in events
            ]
            self._write_user_rows(self.sql.events.event_add, rows)

    def window(
        self,
        event_types: Sequence[str],
        start_time: datetime,
        end_time: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[tuple[Event, dict[str, str]]]:
        params: dict[str, Any] = {
            "event_types": list(event_types),
            "start_time": start_time,
            "end_time": end_time,
            "limit": limit,
        }
        statement = self.sql.events.events_window
        if after is not None:
            statement = self.sql.events.events_window_after
            params.update(after_time=after[0], after_id=after[1])
        return [
            (
                Event(
                    id=r["id"],
                    user_id=r["user_id"],
                    event_type=r["event_type"],
                    value=Decimal(r["value"]),
                    total_after=Decimal(r["total_after"]),
                    attributes=dict(r["attributes"] or {}),
                    create_time=r["create_time"],
                    reach=r["reach"],
                ),
                dict(r["user_attributes"] or {}),
            )
            for r in self.db.rows(statement, params)
        ]


def totals_params(user_ids: Sequence[str], event_types: Sequence[str]) -> dict[str, Any]:
    """The parameters of the running totals' read (statements.events: totals_of)."""
    return {"user_ids": sorted(set(user_ids)), "event_types": sorted(set(event_types))}


def totals_of(rows: Sequence[Row]) -> dict[tuple[str, str, str], Decimal]:
    """Running totals by (user, event type, reach), from their read's rows."""
    return {(r["user_id"], r["event_type"], r["reach"]): Decimal(r["total"]) for r in rows}
