"""What the auth check and the write limit cost per call, in process (no gRPC, no load):
`python -m bench.auth_cost`. Times the guard's check of an API key (key ring look-up,
scope table, the call's caller context), of a user token (HMAC check), the write limit's
bucket, and the access log line, each over many calls on an SQLite store in a temporary
folder. Compare with an Award's server CPU in bench/README.md (about 1.3 ms at 16 in
flight, 0.66 ms at 64).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from server import app
from server.api import access_log
from server.api.guard import Guard
from server.domain.access import Scope
from server.services.held import callers
from server.services.held.key_ring import KeyRing
from server.services.held.limits import RateLimiter
from server.services.operations import api_keys
from server.store import migrate
from server.store.database import SqlStore
from tally.v1 import common_pb2, points_pb2

AWARD = "/tally.v1.PointsService/Award"
BALANCE = "/tally.v1.PointsService/GetBalance"


def per_call_us(work: Callable[[], object], calls: int = 50_000) -> float:
    for _ in range(1000):
        work()
    started = time.perf_counter()
    for _ in range(calls):
        work()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        store = SqlStore.from_url(f"sqlite:///{Path(folder) / 'tally.db'}")
        migrate.upgrade(store.engine)
        now = app.utc_now()
        made = api_keys.create_key(store, "bench", Scope.WRITE, ("xp",), now)
        ring = KeyRing(store)
        guard = Guard(ring, app.utc_now)
        token, _ = ring.issue_token(ring.authenticate_key(made.text), "alice", None, now)
        award = points_pb2.AwardRequest(system_key="xp", user=common_pb2.User(id="a"), amount=1)
        balance = points_pb2.GetBalanceRequest(system_key="xp", user_id="alice")
        key_md = [("x-api-key", made.text), ("user-agent", "grpc-python/1.76")]
        token_md = [("authorization", f"Bearer {token}"), ("user-agent", "grpc-python/1.76")]
        limits = RateLimiter(rate=1e9, burst=10**9)
        users = [f"user-{i}" for i in range(100_000)]
        spread = iter(range(10**9))
        log = logging.getLogger("tally.access")
        log.addHandler(logging.NullHandler())
        log.propagate = False
        log.setLevel(logging.INFO)

        def key_check() -> object:
            caller = guard.caller_of(AWARD, key_md, award)
            return callers.context_of(caller).run(callers.current)

        figures = {
            "API key check (guard + caller context)": per_call_us(key_check),
            "user token check (HMAC)": per_call_us(
                lambda: guard.caller_of(BALANCE, token_md, balance)
            ),
            "write limit, users spread over 100,000": per_call_us(
                lambda: limits.take("xp", users[next(spread) % 100_000])
            ),
            "write limit, one user": per_call_us(lambda: limits.take("xp", "hot")),
            "access log line (JSON, to a null handler)": per_call_us(
                lambda: access_log._writer(AWARD, access_log._Note("k"))("OK", 0.0031)
            ),
        }
        store.dispose()
    for name, us in figures.items():
        print(f"{us:8.1f} us  {name}")
    print(f"key ring loads: {ring.loads} (one for all the calls above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
