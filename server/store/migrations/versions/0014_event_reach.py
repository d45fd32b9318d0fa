"""Running event totals and recorded events by reach: the systems the recording caller
could use.

A key limited to some points systems must move nothing outside them, so a user's running
total of an event type is kept per reach ('' for callers of every system, else the
systems sorted and comma-separated), and a system's METRIC triggers see the sum over the
reaches that include it. Existing totals and events were recorded with no such limit in
force and keep reach '' (every system): what every system saw before, it sees still.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PK = "pk_metric_totals"


def upgrade() -> None:
    reach = sa.Column("reach", sa.Text(), nullable=False, server_default="")
    with op.batch_alter_table("metric_totals") as batch:
        batch.add_column(reach)
        batch.drop_constraint(PK, type_="primary")
        batch.create_primary_key(PK, ["user_id", "event_type", "reach"])
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("reach", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("reach")
    # The old key has no place for the totals of limited reaches: they are dropped.
    op.execute("DELETE FROM metric_totals WHERE reach <> ''")
    with op.batch_alter_table("metric_totals") as batch:
        batch.drop_constraint(PK, type_="primary")
        batch.create_primary_key(PK, ["user_id", "event_type"])
        batch.drop_column("reach")
