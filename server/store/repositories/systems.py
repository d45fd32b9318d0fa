"""Points systems, the configuration's version and triggers (configuration)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from server.domain.model import (
    IntervalUnit,
    LevelBasis,
    PointsSystem,
    Trigger,
    TriggerStatus,
    TriggerType,
)
from server.store.execution import Row
from server.store.repositories.base import Repository, config_version


class SqlSystemRepository(Repository):
    def get(self, key: str) -> PointsSystem | None:
        row = self.db.first(self.sql.systems.system_get, {"key": key})
        return _system(row) if row else None

    def all(self) -> list[PointsSystem]:
        return [_system(r) for r in self.db.rows(self.sql.systems.systems_all)]

    def lock(self, key: str) -> PointsSystem | None:
        """The stored system, locked, for changing it."""
        row = self.db.first(self.sql.systems.system_lock, {"key": key})
        return _system(row) if row else None

    def add(self, system: PointsSystem) -> bool:
        values = {"key": system.key, "create_time": system.create_time, **_system_values(system)}
        return self.db.first(self.sql.systems.system_add, values) is not None

    def update(self, system: PointsSystem) -> None:
        self.db.run(
            self.sql.systems.system_update, {"match_key": system.key, **_system_values(system)}
        )

    def list_after(self, after_key: str, limit: int) -> list[PointsSystem]:
        rows = self.db.rows(self.sql.systems.systems_after, {"after": after_key, "limit": limit})
        return [_system(r) for r in rows]

    def version(self) -> int:
        return config_version(self.db, self.sql)

    def bump_version(self) -> int:
        return int(self.db.scalar(self.sql.systems.config_bump))


def _system_values(system: PointsSystem) -> dict[str, Any]:
    return {
        "name": system.name,
        "description": system.description,
        "badge_url": system.badge_url,
        "max_points": system.max_points,
        "level_basis": system.level_basis.value,
        "update_time": system.update_time,
    }


def _system(row: Row) -> PointsSystem:
    return PointsSystem(
        key=row["key"],
        name=row["name"],
        description=row["description"],
        badge_url=row["badge_url"],
        max_points=row["max_points"],
        level_basis=LevelBasis(row["level_basis"]),
        create_time=row["create_time"],
        update_time=row["update_time"],
    )


class SqlTriggerRepository(Repository):
    def all(self) -> list[Trigger]:
        return [_trigger(r) for r in self.db.rows(self.sql.systems.triggers_all)]

    def lock(self, trigger_id: str) -> Trigger | None:
        row = self.db.first(self.sql.systems.trigger_lock, {"id": trigger_id})
        return _trigger(row) if row else None

    def add(self, trigger: Trigger) -> None:
        self._write_rows(
            self.sql.systems.trigger_add, [{"id": trigger.id, **_trigger_values(trigger)}]
        )

    def update(self, trigger: Trigger) -> None:
        values = {"id": trigger.id, **_trigger_values(trigger)}
        if not self.sql.set_based:
            values["match_id"] = values.pop("id")
        self._write_rows(self.sql.systems.trigger_update, [values])


def _trigger_values(t: Trigger) -> dict[str, Any]:
    return {
        "system_key": t.system_key,
        "type": t.type.value,
        "points": t.points,
        "status": t.status.value,
        "event_type": t.event_type,
        "metric_threshold": str(t.metric_threshold),
        "interval_unit": t.interval_unit.value if t.interval_unit else None,
        "interval_count": t.interval_count,
        "event_attributes": [list(a) for a in t.event_attributes],
        "user_attributes": [list(a) for a in t.user_attributes],
        "activate_time": t.activate_time,
        "version": t.version,
        "create_time": t.create_time,
        "update_time": t.update_time,
    }


def _trigger(r: Row) -> Trigger:
    unit = r["interval_unit"]
    return Trigger(
        id=r["id"],
        system_key=r["system_key"],
        type=TriggerType(r["type"]),
        points=r["points"],
        status=TriggerStatus(r["status"]),
        event_type=r["event_type"],
        metric_threshold=Decimal(r["metric_threshold"]),
        interval_unit=IntervalUnit(unit) if unit else None,
        interval_count=r["interval_count"],
        event_attributes=tuple((k, v) for k, v in r["event_attributes"]),
        user_attributes=tuple((k, v) for k, v in r["user_attributes"]),
        activate_time=r["activate_time"],
        version=r["version"],
        create_time=r["create_time"],
        update_time=r["update_time"],
    )
