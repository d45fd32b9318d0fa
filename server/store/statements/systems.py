"""Points systems, the configuration's version and triggers: configuration, read whole
and written one at a time."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update

from server.store.statements.tables import (
    Dialect,
    config,
    config_version,
    from_json,
    json_rows,
    systems,
    triggers,
)

# What UpdateSystem writes (statements with explicit values compile to one text).
SYSTEM_FIELDS = ("name", "description", "badge_url", "max_points", "level_basis", "update_time")


class SystemStatements:
    def __init__(self, d: Dialect) -> None:
        insert = d.insert
        self.system_get = select(systems).where(systems.c.key == bindparam("key"))
        self.system_lock = self.system_get.with_for_update()
        self.system_add = (
            insert(systems).on_conflict_do_nothing(index_elements=["key"]).returning(systems.c.key)
        )
        self.system_update = (
            update(systems)
            .where(systems.c.key == bindparam("match_key"))
            .values({n: bindparam(n) for n in SYSTEM_FIELDS})
        )
        self.systems_all = select(systems).order_by(systems.c.key)
        self.config_version = config_version
        self.config_bump = (
            update(config)
            .where(config.c.id == 1)
            .values(version=config.c.version + 1)
            .returning(config.c.version)
        )
        self.systems_after = (
            select(systems)
            .where(systems.c.key > bindparam("after"))
            .order_by(systems.c.key)
            .limit(bindparam("limit"))
        )

        # triggers
        self.triggers_all = select(triggers).order_by(triggers.c.create_time, triggers.c.id)
        self.trigger_lock = (
            select(triggers).where(triggers.c.id == bindparam("id")).with_for_update()
        )
        # (written as one-row JSON sets on PostgreSQL: how its statements bind JSON)
        self.trigger_add = insert(triggers)
        self.trigger_update = (
            update(triggers)
            .where(triggers.c.id == bindparam("match_id"))
            .values({c.name: bindparam(c.name) for c in triggers.c if c.name != "id"})
        )
        if d.set_based:
            names = [c.name for c in triggers.c]
            self.trigger_add = insert(triggers).from_select(names, from_json(triggers, names))
            changed = json_rows(triggers, names)
            self.trigger_update = (
                update(triggers)
                .where(triggers.c.id == changed.c.id)
                .values({n: changed.c[n] for n in names if n != "id"})
            )
