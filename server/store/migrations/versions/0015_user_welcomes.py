"""Users: the points systems each has been welcomed in (USER_IDENTIFIED).

Users are shared by every system, and a key limited to some systems welcomes a user in
those alone; the others still owe the user their welcome, paid by the first call that may
use them. So each user keeps where they have been welcomed (model.Welcomed.name): the
systems sorted and comma-separated ('' for none yet), or '*' and a UTC time (ISO 8601),
then optionally ';' and systems: welcomed in every system created at or before that time
too. A system created after it still owes the user its welcome.

Existing users were welcomed when they were created, by the rule then in force: they are
welcomed through the time of this upgrade, so in every system that exists now, and owed
the welcome of any system created later.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The default fills existing rows (and any a server from before this writes): welcomed
    # through now, the upgrade's time, in every system that exists.
    through = "*" + datetime.now(UTC).isoformat()
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("welcomed", sa.Text(), nullable=False, server_default=through))


def downgrade() -> None:
    # Without the column a user is welcomed once, when created: users welcomed in some
    # systems only lose the rest of their welcome.
    with op.batch_alter_table("users") as batch:
        batch.drop_column("welcomed")
