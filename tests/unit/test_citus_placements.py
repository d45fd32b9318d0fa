"""Citus placements: every table is declared, and what is declared is what Citus accepts.

These run everywhere (no Citus needed): a new table that nobody placed, or a unique key
without the distribution column, fails here before it fails on a cluster.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Index, Sequence, Table, UniqueConstraint, create_engine

from server.store import citus, migrate
from server.store.models import Base


def test_every_table_of_the_models_is_placed_and_no_other() -> None:
    assert set(citus.PLACEMENTS) == set(Base.metadata.tables)


def test_per_user_tables_are_colocated_with_users_by_user_id() -> None:
    per_user = {
        name
        for name, table in Base.metadata.tables.items()
        if "user_id" in table.c and not isinstance(citus.PLACEMENTS[name], citus.Reference)
    }
    # boosts carry a user_id ('' = global) but are configuration.
    assert per_user == {name for name, p in citus.PLACEMENTS.items() if p == citus.BY_USER_ID}
    assert citus.PLACEMENTS["users"] == citus.Distributed("id", colocate_with="none")


def test_a_colocated_table_is_placed_after_the_table_it_joins() -> None:
    order = list(citus.PLACEMENTS)
    for name, placement in citus.PLACEMENTS.items():
        if isinstance(placement, citus.Distributed) and placement.colocate_with != "none":
            assert order.index(placement.colocate_with) < order.index(name), name


def _unique_keys(table: Table) -> list[tuple[str, list[str]]]:
    keys = [("primary key", [c.name for c in table.primary_key.columns])]
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            keys.append((str(constraint.name), [c.name for c in constraint.columns]))
    for index in table.indexes:
        if isinstance(index, Index) and index.unique:
            keys.append((str(index.name), [c.name for c in index.columns]))
    return keys


@pytest.mark.parametrize(
    "name",
    sorted(n for n, p in citus.PLACEMENTS.items() if isinstance(p, citus.Distributed)),
)
def test_every_unique_key_of_a_distributed_table_holds_its_column(name: str) -> None:
    """Citus refuses a unique key that leaves out the distribution column."""
    placement = citus.PLACEMENTS[name]
    assert isinstance(placement, citus.Distributed)
    table = Base.metadata.tables[name]
    for key, columns in _unique_keys(table):
        assert placement.column in columns, (name, key, columns)


@pytest.mark.parametrize(
    "name",
    sorted(n for n, p in citus.PLACEMENTS.items() if isinstance(p, citus.Distributed)),
)
def test_no_distributed_column_numbers_itself_from_a_sequence(name: str) -> None:
    """A sequence default on a distributed table would be evaluated on the workers, each
    from its own range: the ledger's numbers come from the coordinator, explicitly."""
    for column in Base.metadata.tables[name].c:
        assert not isinstance(column.default, Sequence), (name, column.name)
        assert column.server_default is None or "nextval" not in str(
            getattr(column.server_default, "arg", "")
        ), (name, column.name)


def test_a_table_nobody_placed_stops_the_migration(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/t.db")
    placements = dict(citus.PLACEMENTS)
    del placements["level_changes"]
    monkeypatch.setattr(citus, "PLACEMENTS", placements)
    with pytest.raises(citus.PlacementError, match="level_changes"):
        migrate.upgrade(engine)
    engine.dispose()


def test_without_citus_distribute_does_nothing(tmp_path: pytest.TempPathFactory) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/t.db")
    migrate.upgrade(engine)
    assert citus.distribute(engine) == []
    engine.dispose()
