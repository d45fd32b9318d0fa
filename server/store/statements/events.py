"""Events: running totals per user and event type, and the events recorded."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Executable, bindparam, select

from server.store.statements.tables import (
    Dialect,
    RowsInsert,
    events,
    fixed_plan,
    from_json,
    metric_totals,
    users,
)


class EventStatements:
    def __init__(self, d: Dialect) -> None:
        insert, one_of = d.insert, d.one_of
        self.totals_of = select(metric_totals).where(
            one_of(metric_totals.c.user_id, "user_ids"),
            one_of(metric_totals.c.event_type, "event_types"),
        )
        total_insert = insert(metric_totals)
        event_insert = insert(events)
        if d.json_writes:
            names = [c.name for c in metric_totals.c]
            total_insert = insert(metric_totals).from_select(names, from_json(metric_totals, names))
            names = [c.name for c in events.c]
            event_insert = insert(events).from_select(names, from_json(events, names))

        def total_upsert(insert: Any) -> Any:
            return insert.on_conflict_do_update(
                index_elements=["user_id", "event_type", "reach"],
                set_={"total": insert.excluded.total, "update_time": insert.excluded.update_time},
            )

        self.total_save: Executable | RowsInsert = total_upsert(total_insert)
        self.event_add: Executable | RowsInsert = event_insert
        if d.json_writes:
            self.total_save = fixed_plan(self.total_save)
            self.event_add = fixed_plan(self.event_add)
        if d.citus:  # a statement a shard (see RowsInsert)
            names = [c.name for c in metric_totals.c]
            self.total_save = RowsInsert(metric_totals, names, total_upsert)
            self.event_add = RowsInsert(events, [c.name for c in events.c], lambda i: i)
        in_window = (
            one_of(events.c.event_type, "event_types"),
            events.c.create_time >= bindparam("start_time"),
            events.c.create_time < bindparam("end_time"),
        )
        self.events_window = (
            select(events, users.c.attributes.label("user_attributes"))
            .select_from(events.join(users, users.c.id == events.c.user_id))
            .where(*in_window)
            .order_by(events.c.create_time, events.c.id)
            .limit(bindparam("limit"))
        )
        after = (events.c.create_time > bindparam("after_time")) | (
            (events.c.create_time == bindparam("after_time"))
            & (events.c.id > bindparam("after_id"))
        )
        self.events_window_after = self.events_window.where(after)
