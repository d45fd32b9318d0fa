"""Schema migrations: Alembic, driven from code so `tally-server migrate` needs no ini file."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from server.store import citus

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (the newest by default), then, under Citus, place
    the tables not placed yet (store/citus.py); safe to run concurrently with nothing
    else and idempotent when already there."""
    command.upgrade(alembic_config(engine), revision)
    citus.distribute(engine)


def ensure_newest(engine: Engine) -> None:
    """`upgrade`, unless the schema is at the newest revision already: one small read, and
    quiet (Alembic's INFO banner is no news to a command that only needs the schema)."""
    quiet = logging.getLogger("alembic")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        behind = current(engine) != head()
    finally:
        quiet.setLevel(level)
    if behind:
        upgrade(engine)


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str | None:
    """The newest revision the migrations know."""
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()
