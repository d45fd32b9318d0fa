"""Boosts: the live ones (for the configuration), pages of a system's or a user's."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, func, or_, select, update

from server.store.statements.tables import Dialect, boosts, from_json


class BoostStatements:
    def __init__(self, d: Dialect) -> None:
        insert, one_of = d.insert, d.one_of
        self.boosts_live = (
            select(boosts)
            .where(
                boosts.c.archive_time.is_(None),
                boosts.c.end_time.is_(None) | (boosts.c.end_time > bindparam("now")),
            )
            .order_by(boosts.c.create_time, boosts.c.id)
        )
        # How many live boosts some users have in a system (CreateBoosts' bound).
        self.boosts_live_counts = (
            select(boosts.c.user_id, func.count().label("live"))
            .where(
                boosts.c.system_key == bindparam("system_key"),
                one_of(boosts.c.user_id, "user_ids"),
                boosts.c.archive_time.is_(None),
                boosts.c.end_time.is_(None) | (boosts.c.end_time > bindparam("now")),
            )
            .group_by(boosts.c.user_id)
        )
        self.boost_get = select(boosts).where(boosts.c.id == bindparam("id"))
        self.boost_lock = self.boost_get.with_for_update()
        self.boost_add = insert(boosts)
        if d.set_based:
            names = [c.name for c in boosts.c]
            self.boost_add = insert(boosts).from_select(names, from_json(boosts, names))
        self.boost_archive = (
            update(boosts)
            .where(boosts.c.id == bindparam("match_id"))
            .values(archive_time=bindparam("archive_time"))
        )


BOOST_STATUS_WHERE = {
    "ARCHIVED": boosts.c.archive_time.is_not(None),
    "SCHEDULED": boosts.c.archive_time.is_(None) & (boosts.c.start_time > bindparam("now")),
    "ENDED": boosts.c.archive_time.is_(None) & (boosts.c.end_time <= bindparam("now")),
    "ACTIVE": boosts.c.archive_time.is_(None)
    & (boosts.c.start_time <= bindparam("now"))
    & (boosts.c.end_time.is_(None) | (boosts.c.end_time > bindparam("now"))),
}


@functools.cache
def boosts_page(*, user: bool, cursor: bool, statuses: frozenset[str]) -> Select[Any]:
    """A page of a system's boosts (or one user's), newest first, of these derived
    statuses (all when empty): one prebuilt statement per shape, made on first use."""
    filters: list[ColumnElement[bool]] = [boosts.c.system_key == bindparam("system_key")]
    if user:
        filters.append(boosts.c.user_id == bindparam("user_id"))
    if cursor:
        filters.append(
            (boosts.c.create_time < bindparam("before_time"))
            | (
                (boosts.c.create_time == bindparam("before_time"))
                & (boosts.c.id < bindparam("before_id"))
            )
        )
    if statuses:
        filters.append(or_(*(BOOST_STATUS_WHERE[status] for status in sorted(statuses))))
    return (
        select(boosts)
        .where(*filters)
        .order_by(boosts.c.create_time.desc(), boosts.c.id.desc())
        .limit(bindparam("limit"))
    )
