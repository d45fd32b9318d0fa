"""PreviewTriggers over 100,000 recorded events: how long one preview takes.

`python -m bench.preview_cost` makes a fresh PostgreSQL database, writes 10,000 users and
100,000 events straight into the tables (as RecordEvent would have kept them: each with
the user's running total after it), and times, in process, a preview of two draft
triggers over the last 30 days: an EVENT trigger, and a METRIC one with a cohort filter.
Prints one line; the database is dropped after.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import create_engine, text

from server.domain import commands
from server.domain.model import TriggerType
from server.services.tally import Tally
from server.services.use_cases import events, systems, triggers
from server.store import migrate
from server.store.database import SqlStore

USERS = 10_000
EVENTS = 100_000

SEED_USERS = """
INSERT INTO users (id, display_name, email, attributes, create_time)
SELECT 'u' || g, '', '',
       jsonb_build_object('plan', CASE WHEN g % 2 = 0 THEN 'pro' ELSE 'free' END), now()
FROM generate_series(0, :users - 1) g
"""
# Event g is user g % USERS's (g / USERS + 1)-th event of value 1.5, a millisecond apart.
SEED_EVENTS = """
INSERT INTO events (user_id, id, event_type, value, total_after, attributes, create_time)
SELECT 'u' || (g % :users), gen_random_uuid()::text, 'lesson', '1.5',
       ((g / :users + 1) * 1.5)::text, '{}'::jsonb,
       now() - interval '1 day' + g * interval '1 ms'
FROM generate_series(0, :events - 1) g
"""
DRAFTS = (
    commands.TriggerFields(type=TriggerType.EVENT, points=3, event_type="lesson"),
    commands.TriggerFields(
        type=TriggerType.METRIC,
        points=10,
        event_type="lesson",
        metric_threshold=Decimal(4),
        user_attributes=(("plan", "pro"),),
    ),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    name = f"tally_preview_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.admin_url.rsplit("/", 1)[0] + f"/{name}"
    store = SqlStore.from_url(url)
    try:
        migrate.upgrade(store.engine)
        now = datetime.now(UTC)
        tally = Tally(store)
        systems.create_system(tally, commands.CreateSystem("xp", max_points=500), now)
        # RecordEvent keeps only events some trigger names; a preview replays those alone.
        named = commands.TriggerFields(type=TriggerType.EVENT, points=1, event_type="lesson")
        triggers.create_trigger(tally, commands.CreateTrigger("xp", named), now)
        with store.engine.begin() as connection:
            connection.execute(text(SEED_USERS), {"users": USERS})
            connection.execute(text(SEED_EVENTS), {"users": USERS, "events": EVENTS})
            connection.execute(text("ANALYZE"))
        started = time.perf_counter()
        result, _ = events.preview_triggers(tally, commands.PreviewTriggers("xp", DRAFTS), now)
        took = time.perf_counter() - started
        print(
            f"preview of {result.events:,} events through {len(DRAFTS)} drafts: {took:.2f} s "
            f"({result.events / took:,.0f} events/s); users {result.users:,}, "
            f"awards {result.awards:,}, points {result.points:,}"
        )
    finally:
        store.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
