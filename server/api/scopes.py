"""Who may call what: the scope each RPC needs, and what a user token may call.

Keyed by full method name and covering every RPC of every Tally service, implemented or
not (tests/api/test_guard.py fails when an RPC of the protos has no entry). Checks that
depend on the request beyond this (which system, a global boost) are the use cases'
(services/held/callers.py).
"""

from __future__ import annotations

from server.domain.access import Scope

READ, WRITE, ADMIN = Scope.READ, Scope.WRITE, Scope.ADMIN

POINTS = "/tally.v1.PointsService/"
LEVELS = "/tally.v1.LevelsService/"
BOOSTS = "/tally.v1.BoostsService/"
AUTH = "/tally.v1.AuthService/"

REQUIRED_SCOPE: dict[str, Scope] = {
    # points systems and triggers: configuration
    POINTS + "CreateSystem": ADMIN,
    POINTS + "GetSystem": READ,
    POINTS + "ListSystems": READ,
    POINTS + "UpdateSystem": ADMIN,
    POINTS + "CreateTrigger": ADMIN,
    POINTS + "UpdateTrigger": ADMIN,
    POINTS + "ListTriggers": READ,
    # points changes
    POINTS + "Award": WRITE,
    POINTS + "Deduct": WRITE,
    POINTS + "AwardBatch": WRITE,
    POINTS + "RecordEvent": WRITE,
    POINTS + "Reverse": WRITE,
    # reads and streams
    POINTS + "GetBalance": READ,
    POINTS + "ListTransactions": READ,
    POINTS + "StreamHistory": READ,
    POINTS + "WatchLedger": READ,
    POINTS + "GetPointsSummary": READ,
    POINTS + "GetUserPointsSummary": READ,
    POINTS + "GetPointsAnalytics": READ,
    POINTS + "PreviewTriggers": READ,  # replays recorded events; writes nothing
    # levels: configuration, then reads
    LEVELS + "CreateLevel": ADMIN,
    LEVELS + "UpdateLevel": ADMIN,
    LEVELS + "DeleteLevel": ADMIN,
    LEVELS + "ListLevels": READ,
    LEVELS + "GetUserLevel": READ,
    LEVELS + "GetLevelSummary": READ,
    LEVELS + "WatchLevelChanges": READ,
    # boosts: a write key may boost single users; the use cases ask for admin when a
    # boost is global (CreateBoosts with no user_id, ArchiveBoost of a global boost)
    BOOSTS + "CreateBoosts": WRITE,
    BOOSTS + "ListBoosts": READ,
    BOOSTS + "ArchiveBoost": WRITE,
    BOOSTS + "GetMultiplier": READ,
    # user tokens
    AUTH + "CreateUserToken": WRITE,
}

# What a user token may call, and the request field that must name the token's user
# (None: the RPC names no user; the token's systems still apply).
USER_TOKEN_RPCS: dict[str, str | None] = {
    POINTS + "GetBalance": "user_id",
    POINTS + "ListTransactions": "user_id",
    POINTS + "StreamHistory": "user_id",
    POINTS + "GetUserPointsSummary": "user_id",
    POINTS + "GetSystem": None,
    LEVELS + "GetUserLevel": "user_id",
    LEVELS + "ListLevels": None,
    BOOSTS + "GetMultiplier": "user_id",
}
