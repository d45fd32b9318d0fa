"""Hostile input, as a user who means harm would send it: the values, the call metadata,
what each answer may be, and the ledger's invariants checked in SQL.

Requests come from tests/strategies.py (every RPC, built from its descriptor) with the
values here: sizes at and past every limit (16 KiB metadata, gRPC's 4 MiB message),
NaN and infinities, control and non-printable characters, deep Structs, unknown enum
numbers, timestamps out of range, forged page tokens, bad idempotency keys, and
credentials that are missing, forged, oversized or of the wrong kind.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import struct_pb2, text_format, timestamp_pb2
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2, status_pb2
from hypothesis import strategies as st
from sqlalchemy import case, func, select

from server.store.database import SqlStore
from server.store.models import AccountRow, LedgerEntryRow
from tests.strategies import (
    DOUBLES,
    FORBIDDEN,
    IDS,
    INT32S,
    INT64S,
    METHODS,
    Requests,
    Values,
    struct_of,
    structs,
    texts,
)

# -- what an answer may be -------------------------------------------------------------

# API.md, "Errors": each code and the ErrorInfo reasons it comes with.
DOCUMENTED: dict[grpc.StatusCode, frozenset[str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: frozenset(
        {"VALIDATION_FAILED", "IDEMPOTENCY_KEY_INVALID", "IDEMPOTENCY_KEY_MISMATCH"}
    ),
    grpc.StatusCode.NOT_FOUND: frozenset(
        {
            "SYSTEM_NOT_FOUND",
            "USER_NOT_FOUND",
            "TRIGGER_NOT_FOUND",
            "LEVEL_NOT_FOUND",
            "BOOST_NOT_FOUND",
            "ENTRY_NOT_FOUND",
            "NO_MATCHING_TRIGGER",
        }
    ),
    grpc.StatusCode.ALREADY_EXISTS: frozenset(
        {"SYSTEM_EXISTS", "LEVEL_EXISTS", "IDEMPOTENCY_KEY_REUSED"}
    ),
    grpc.StatusCode.FAILED_PRECONDITION: frozenset(
        {"INSUFFICIENT_POINTS", "ALREADY_REVERSED", "NOT_REVERSIBLE"}
    ),
    grpc.StatusCode.RESOURCE_EXHAUSTED: frozenset({"RATE_LIMITED"}),
    grpc.StatusCode.UNAUTHENTICATED: frozenset(
        {"API_KEY_MISSING", "API_KEY_INVALID", "API_KEY_REVOKED", "TOKEN_INVALID", "TOKEN_EXPIRED"}
    ),
    grpc.StatusCode.PERMISSION_DENIED: frozenset({"SCOPE_INSUFFICIENT"}),
    grpc.StatusCode.UNAVAILABLE: frozenset({"STORE_UNAVAILABLE"}),
}
VALIDATION_REASONS = DOCUMENTED[grpc.StatusCode.INVALID_ARGUMENT]
# gRPC's own limits, answered before Tally sees the call: RESOURCE_EXHAUSTED with no
# details, for a request message past 4 MiB or call metadata past 8 KiB (the soft limit,
# some refused) or 16 KiB (all refused).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
SOFT_METADATA_BYTES = 8 * 1024
# What gRPC adds to the caller's metadata (:path, user-agent, grpc-timeout, ...), at most.
GRPC_HEADERS_BYTES = 1024
# Trailers past gRPC's default soft limit (8 KiB) are refused by some clients: every
# status must fit under it (and so under the hard 16 KiB limit the issue names).
STATUS_LIMIT = 8 * 1024
DETAILS_KEY = "grpc-status-details-bin"


def header_bytes(pairs: Iterable[tuple[str, str | bytes]]) -> int:
    """HTTP/2's measure of metadata (RFC 7540 6.5.2): name + value + 32 per entry, values
    of -bin keys in base64 as they go on the wire."""
    total = 0
    for key, value in pairs:
        size = len(value)
        if key.endswith("-bin"):
            size = 4 * -(-size // 3)
        total += len(key) + size + 32
    return total


def status_bytes(code: grpc.StatusCode, details: str, trailers: Sequence[Any]) -> int:
    """The trailers of an answer: grpc-status, grpc-message (percent-encoded) and the rest."""
    message = sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in details.encode())
    own = len("grpc-status") + len(str(code.value[0])) + 32 + len("grpc-message") + message + 32
    return own + header_bytes(trailers)


@dataclass
class Outcome:
    path: str
    request: Message
    metadata: tuple[tuple[str, str], ...]
    code: grpc.StatusCode
    details: str = ""
    trailers: tuple[Any, ...] = ()
    seconds: float = 0.0

    @property
    def size(self) -> int:
        return status_bytes(self.code, self.details, self.trailers)

    def problems(self) -> list[str]:
        """What is wrong with this answer (nothing, when it is a documented one)."""
        if self.code == grpc.StatusCode.OK:
            return []
        if self.code in FORBIDDEN:
            return [f"{self.code.name}: {self.details[:300]}"]
        found = [f"status of {self.size} bytes"] if self.size > STATUS_LIMIT else []
        packed = dict(self.trailers).get(DETAILS_KEY)
        if packed is None:
            if self.code == grpc.StatusCode.RESOURCE_EXHAUSTED and self.past_grpc_limits():
                return found
            return [*found, f"{self.code.name} without status details: {self.details[:300]}"]
        status = status_pb2.Status.FromString(packed)
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        has_bad = False
        for detail in status.details:
            if detail.Is(info.DESCRIPTOR):
                detail.Unpack(info)
            elif detail.Is(bad.DESCRIPTOR):
                detail.Unpack(bad)
                has_bad = True
        if info.domain != "tally" or info.reason not in DOCUMENTED.get(self.code, ()):
            found.append(f"{self.code.name} with undocumented reason {info.reason!r}")
        if info.reason in VALIDATION_REASONS and not (
            has_bad and bad.field_violations and all(v.field for v in bad.field_violations)
        ):
            found.append(f"{info.reason} naming no field")
        return found

    def past_grpc_limits(self) -> bool:
        return (
            self.request.ByteSize() > MAX_MESSAGE_BYTES
            or header_bytes(self.metadata) + GRPC_HEADERS_BYTES > SOFT_METADATA_BYTES
        )

    def describe(self) -> str:
        shown = text_format.MessageToString(self.request, as_one_line=True)
        headers = [(k, v[:40] + f"...({len(v)})" if len(v) > 40 else v) for k, v in self.metadata]
        return (
            f"{self.path} {self.code.name} {self.details[:200]!r} headers={headers} {shown[:600]}"
        )


@dataclass
class Report:
    """What a run sent and saw, for the suite's closing lines."""

    sent: int = 0
    drawn: int = 0  # of which drawn whole by hypothesis; the rest are Splicer's
    codes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    max_status: int = 0
    max_status_call: str = ""
    largest_request: int = 0
    problems: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: Outcome) -> list[str]:
        found = outcome.problems()
        size = outcome.size if outcome.code != grpc.StatusCode.OK else 0
        with self.lock:
            self.sent += 1
            self.codes[outcome.code.name] += 1
            self.methods[outcome.path.rsplit("/", 1)[-1]] += 1
            self.seconds[outcome.path.rsplit("/", 1)[-1]] += outcome.seconds
            self.largest_request = max(self.largest_request, outcome.request.ByteSize())
            if size > self.max_status:
                self.max_status, self.max_status_call = size, outcome.path.rsplit("/", 1)[-1]
            if found:
                self.problems.append(f"{'; '.join(found)} <- {outcome.describe()}")
        return found

    def lines(self) -> list[str]:
        seconds = time.monotonic() - self.started
        return [
            f"requests sent: {self.sent:,} ({self.drawn:,} drawn whole, "
            f"{self.sent - self.drawn:,} good ones with one drawn field) "
            f"over {len(self.methods)} RPCs in {seconds:.0f} s "
            f"({self.sent / max(seconds, 1e-9):.0f}/s); largest request {self.largest_request:,} B",
            "codes: " + ", ".join(f"{c} {n:,}" for c, n in self.codes.most_common()),
            f"max status size: {self.max_status:,} B ({self.max_status_call}); "
            f"limit {STATUS_LIMIT:,} B",
            "slowest RPCs (seconds in calls): "
            + ", ".join(
                f"{m} {s:.1f}"
                for m, s in sorted(self.seconds.items(), key=lambda item: -item[1])[:5]
            ),
            f"problems: {len(self.problems)}",
        ]


# -- sending --------------------------------------------------------------------------------


def send(
    channel: grpc.Channel,
    service: Any,
    method: Any,
    request: Message,
    metadata: tuple[tuple[str, str], ...],
    timeout: float = 120,
) -> Outcome:
    path = f"/{service.full_name}/{method.name}"
    started = time.monotonic()
    response_class = GetMessageClass(method.output_type)
    try:
        if method.server_streaming:
            stream: grpc.UnaryStreamMultiCallable[Message, Message] = channel.unary_stream(
                path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_class.FromString,
            )
            for _ in stream(request, timeout=timeout, metadata=metadata):
                pass
        else:
            unary: grpc.UnaryUnaryMultiCallable[Message, Message] = channel.unary_unary(
                path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_class.FromString,
            )
            unary(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as error:
        return Outcome(
            path,
            request,
            metadata,
            error.code(),
            error.details() or "",
            tuple(error.trailing_metadata() or ()),
            time.monotonic() - started,
        )
    return Outcome(path, request, metadata, grpc.StatusCode.OK, seconds=time.monotonic() - started)


# -- the store a run starts from --------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    """What a run's requests may name so that they reach the rules: keys of each kind,
    a user token, and the ids and page tokens the seeded store gave."""

    admin: str
    others: tuple[str, ...]  # write, read, limited to one system, revoked
    tokens: tuple[str, ...]  # alice's user token
    systems: tuple[str, ...]
    users: tuple[str, ...]
    ids: tuple[str, ...]  # entries, triggers, levels, boosts
    page_tokens: tuple[str, ...]
    entries: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    boosts: tuple[str, ...] = ()


# -- values -----------------------------------------------------------------------------------

# Characters that are refused (NUL, controls), that grow when escaped or encoded (four
# bytes of UTF-8, repr() escapes of ten characters), or that look like nothing at all.
CHARS = ["a", "Z", "0", "-", " ", "\x00", "\x01", "\x1f", "\x7f", "\n", "\t", "é", "\u200b"]
CHARS += ["\ufeff", "\u202e", "\U000e0001", "\U0001f600", "\ud7ff", "%", "'", '"', "\\"]
# Lengths at and past every limit of API.md (ids 255, keys 64, names 200, emails 320,
# reasons 500, descriptions 2000, urls 2048, metadata 16 KiB), and one past gRPC's 4 MiB
# message limit, rarely: it is costly to send.
SIZES = [0, 1, 2, 63, 64, 65, 99, 100, 101, 199, 200, 201, 254, 255, 256, 319, 320, 321]
SIZES += [499, 500, 501, 1999, 2000, 2001, 2047, 2048, 2049, 16_383, 16_384, 16_385, 100_000]
HUGE = MAX_MESSAGE_BYTES + 1024
SIZES_WITH_HUGE = [*SIZES * 20, HUGE]

sized_texts = st.builds(
    lambda char, n, tail: (char * n)[: max(n - len(tail), 0)] + tail if n else "",
    st.sampled_from(CHARS),
    st.sampled_from(SIZES_WITH_HUGE),
    st.sampled_from(["", "x", "\x00", "\U000e0001"]),
)
any_texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
hostile_texts = st.one_of(texts, sized_texts, any_texts)

HOSTILE_DOUBLES = DOUBLES | st.sampled_from(
    [
        -0.0,
        5e-324,
        1e-300,
        0.5,
        1e9 + 1,
        1e12,
        1e12 + 1,
        1e15,
        2.0**53,
        1.7976931348623157e308,
        float("-inf"),
        float("nan"),
        999_999_999.9999999,
    ]
)
HOSTILE_INT64 = INT64S | st.sampled_from(
    [
        2**63 - 1,
        -(2**63),
        10**9,
        10**9 + 1,
        10**12,
        10**12 + 1,
        10**15,
        10**15 + 1,
        2**31,
        2**53 + 1,
        1000,
        1001,
        101,
        86_400,
        86_401,
    ]
)
HOSTILE_INT32 = INT32S | st.sampled_from(
    [2**31 - 1, -(2**31), 100, 101, 1000, 1001, 64, 65, 20, 21, -1, 1_000_000, 1_000_001]
)

SECONDS = [-(2**63), -62_135_596_801, -62_135_596_800, -1, 0, 253_402_300_799]
SECONDS += [253_402_300_800, 2**63 - 1, 2**40]
NANOS = [0, 0, 1, 999_999_999, 1_000_000_000, -1, 2**31 - 1, -(2**31)]


def hostile_timestamps() -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    """Out of range both ways, and near now (past and future) so that checks of time run."""
    now = int(time.time())
    near = [now - 86_400 * 365, now - 3600, now - 1, now + 1, now + 3600, now + 86_400 * 30]
    return st.builds(
        timestamp_pb2.Timestamp,
        seconds=st.sampled_from(SECONDS + near * 2),
        nanos=st.sampled_from(NANOS),
    )


def nested(depth: int, leaf: Any) -> dict[str, Any]:
    value: Any = leaf
    for _ in range(depth):
        value = {"a": value}
    return value  # type: ignore[no-any-return]


def _kindless() -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.fields["unset"].Clear()  # a Value with no kind: not JSON
    return struct


def hostile_structs() -> st.SearchStrategy[struct_pb2.Struct]:
    """Deep (around the 20 levels allowed, and up to 28: three message levels each, and a
    client cannot build a request past protobuf's 100), at and past 16 KiB as JSON, wide,
    NaN, NUL."""
    leaves = st.none() | st.integers() | st.text(max_size=5)
    deep = st.builds(nested, st.sampled_from([5, 19, 20, 21, 25, 28]), leaves)
    # {"k":"xxx"} is 8 bytes of JSON around the string.
    big = st.builds(
        lambda n, char: {"k": char * n},
        st.sampled_from([16_376, 16_377, 16_384 - 9, 100_000, 16_000]),
        st.sampled_from(["x", "é", "\x00", "\U000e0001"]),
    )
    huge = st.just({"k": "x" * HUGE})
    wide = st.builds(lambda n: {f"k{i}": i for i in range(n)}, st.sampled_from([1000, 3000]))
    odd = st.sampled_from(
        [{"x": float("nan")}, {"x": float("inf")}, {"\x00": 1}, {"": None}, {"a": [[[[]]]]}]
    )
    dicts = st.one_of(deep, big, wide, odd, huge | big | big | big | big)
    return st.one_of(
        structs().map(lambda s: s or struct_pb2.Struct()),
        dicts.map(struct_of),
        st.builds(_kindless),
    )


# Repeating an item never makes a request much past gRPC's 4 MiB limit: one past it is
# enough to show the limit, and a gigabyte would only be slow.
MAX_REPEATED_BYTES = MAX_MESSAGE_BYTES + 64 * 1024


def _size(value: Any) -> int:
    if isinstance(value, Message):
        return int(value.ByteSize())
    return len(value) if isinstance(value, str | bytes) else 8


def _repeat(item: Any, n: int) -> list[Any]:
    return [item] * min(n, max(MAX_REPEATED_BYTES // max(_size(item), 1), 1))


def lists_of(one: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """Mostly short lists; now and then one item repeated up to and past each count limit
    (100 batch items, 1000 boosts, 20 preview triggers, 32 filters)."""
    repeated = st.builds(_repeat, one, st.sampled_from([20, 21, 32, 33, 100, 101, 1000, 1001]))
    return st.one_of(st.lists(one, max_size=3), st.lists(one, max_size=3), repeated)


def _many(key: Any, value: Any, n: int) -> dict[Any, Any]:
    n = min(n, max(MAX_REPEATED_BYTES // max(_size(key) + _size(value), 1), 1))
    return {f"{key}{i}": value for i in range(n)}


def maps_of(
    keys: st.SearchStrategy[Any], values: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[Any, Any]]:
    many = st.builds(_many, keys, values, st.sampled_from([32, 33, 64, 65, 200]))
    return st.one_of(st.dictionaries(keys, values, max_size=3), many)


def forged_tokens() -> st.SearchStrategy[str]:
    """Page tokens rebuilt by hand: the format is opaque, not secret."""

    def encode(position: object, query: str) -> str:
        raw = json.dumps({"p": position, "q": query}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    positions = st.one_of(
        st.integers(), texts, st.none(), st.floats(), st.sampled_from([2**63, -1, "x" * 300])
    )
    queries = st.sampled_from(["systems", "", "0" * 16]) | st.text(max_size=16)
    return st.one_of(
        st.builds(encode, positions, queries),
        st.sampled_from(["=", "====", "!!", "eyJ9", base64.b64encode(b"\xff" * 40).decode()]),
    )


MASK_FIELDS = ["*", "key", "name", "description", "badge_url", "max_points", "level_basis"]
MASK_FIELDS += ["create_time", "update_time", "triggers", "points", "status", "type", "id"]
MASK_FIELDS += ["event_type", "metric_threshold", "interval_unit", "interval_count", "x", ""]
MASK_FIELDS += ["event_attributes", "user_attributes", "system_key", "name.x", "*.*"]


def mask_paths() -> st.SearchStrategy[list[str]]:
    one = st.sampled_from(MASK_FIELDS) | sized_texts
    many = st.builds(
        lambda p, n: [f"{p}{i}" for i in range(len(_repeat(p, n)))],
        one,
        st.sampled_from([30, 300]),
    )
    return st.one_of(st.lists(one, max_size=4), many)


def hostile_values(seeded: Seeded) -> Values:
    def known(values: Sequence[str], *more: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(st.sampled_from(list(values)), *more, hostile_texts)

    system_keys = known([*seeded.systems, "nope", "XP", "x" * 64, "x" * 65])
    users = known([*seeded.users, "nobody", " alice", "alice\n", "\u202ealice"])
    ids = known([*seeded.ids, *seeded.users], IDS)
    dates = known(
        [
            "2026-01-01",
            "2026-12-31",
            "2026-02-30",
            "0001-01-01",
            "9999-12-31",
            "2026-1-1",
            "20260101",
            "2026-01-01T00:00:00Z",
            "yesterday",
            "1969-12-31",
            "2100-01-01",
        ]
    )
    zones = known(
        [
            "UTC",
            "Europe/Paris",
            "America/St_Johns",
            "Mars/Olympus",
            "../../etc/passwd",
            "utc",
            "+05:00",
            "Etc/GMT+12",
            "Pacific/Kiritimati",
            "posixrules",
            "Factory",
            "localtime",
        ]
    )
    keys = known(
        ["k1", "ok:key.1", "a" * 255, "a" * 256, "k 2", "é", "-", ".", ":", "a\x00", "A_z-9:."]
    )
    events = known(["lesson", "steps", "xp", "nope", "LESSON", "lesson "])
    return Values(
        int64=HOSTILE_INT64,
        int32=HOSTILE_INT32,
        doubles=HOSTILE_DOUBLES,
        texts=known([*seeded.systems, *seeded.users, "bronze", "silver"]),
        ids=ids,
        unknown_enums=st.sampled_from([99, -5, 2**31 - 1, -(2**31), 4, 5]),
        timestamps=hostile_timestamps(),
        structs=hostile_structs(),
        mask_paths=mask_paths(),
        by_name={
            "system_key": system_keys,
            "key": known(["bronze", "silver", "gold"], system_keys),
            "user_id": users,
            "id": ids,
            "page_token": known(seeded.page_tokens, forged_tokens()),
            "idempotency_key": keys,
            "event_type": events,
            "start_date": dates,
            "end_date": dates,
            "time_zone": zones,
        },
        lists=lists_of,
        maps=maps_of,
        max_depth=3,
    )


# -- call metadata ------------------------------------------------------------------------

# Header values gRPC lets a client send: printable ASCII (anything else it refuses itself).
header_texts = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
HEADER_SIZES = [0, 1, 100, 1000, 4000, 8000, 8200, 12_000, 16_000, 16_400, 20_000]


def headers(seeded: Seeded) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    """Mostly the admin key (so that requests reach the rules), else every other kind of
    credential: none, other scopes, revoked, forged, oversized, malformed, a user token
    altered or sent as a key, both at once; and an idempotency-key header now and then."""
    admin = ("x-api-key", seeded.admin)
    oversized = st.builds(lambda n: "tally_" + "A" * n, st.sampled_from(HEADER_SIZES))
    token = st.sampled_from(seeded.tokens)
    altered = token.flatmap(
        lambda t: st.sampled_from(
            [t[:-1] + ("A" if t[-1] != "A" else "B"), t + "x", t[:20], t.replace(".", "..", 1)]
        )
    )
    api_keys = st.one_of(
        st.sampled_from(seeded.others),
        header_texts,
        oversized,
        token,
        st.just(seeded.admin + " "),
        st.just(seeded.admin[:-1]),
    ).map(lambda k: (("x-api-key", k),))
    bearers = st.one_of(
        token.map(lambda t: f"Bearer {t}"),
        altered.map(lambda t: f"Bearer {t}"),
        st.sampled_from(["Bearer", "Bearer ", "Basic YWxhZGRpbjpvcGVu", "bearer x", "Bearer  a b"]),
        header_texts.map(lambda t: f"Bearer {t}"),
        oversized.map(lambda t: f"Bearer {t}"),
        st.just(f"Bearer {seeded.admin}"),
    ).map(lambda v: (("authorization", v),))
    both = st.tuples(api_keys, bearers).map(lambda pair: pair[0] + pair[1])
    credentials = st.one_of(
        st.just((admin,)),
        st.just((admin,)),
        st.just((admin,)),
        st.just((admin,)),
        st.just((admin,)),
        st.just(()),
        api_keys,
        bearers,
        both,
        st.just((admin, ("x-api-key", "tally_other"))),
    )
    idempotency = st.one_of(
        st.just(()),
        st.just(()),
        st.one_of(header_texts, oversized, st.sampled_from(["k1", "ok:key.1", "a" * 256])).map(
            lambda k: (("idempotency-key", k),)
        ),
    )
    return st.builds(lambda c, i: (*c, *i), credentials, idempotency)


# -- one call, drawn ------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    service: Any
    method: Any
    request: Message
    metadata: tuple[tuple[str, str], ...]


def calls(seeded: Seeded) -> st.SearchStrategy[tuple[Call, ...]]:
    """One call of every RPC, with hostile values and metadata."""
    requests = Requests(hostile_values(seeded))
    metadata = headers(seeded)
    return st.tuples(
        *(
            st.builds(
                Call, st.just(service), st.just(method), requests.request_of(method), metadata
            )
            for service, method in METHODS
        )
    )


# -- the ledger afterwards ----------------------------------------------------------------------


def ledger_problems(store: SqlStore) -> tuple[int, list[str]]:
    """Every account checked against its entries: balance == sum(ledger) ==
    earned - spent - expired, never negative, entry counts per type, the last entry's
    balance_after; and no entry without its account. Returns (accounts, problems)."""
    e = LedgerEntryRow
    by_type = {
        kind: func.sum(case((e.type == kind, 1), else_=0))
        for kind in ("AWARD", "DEDUCT", "EXPIRE", "REVERSAL")
    }
    with store.engine.connect() as connection:
        kinds = {str(row[0]) for row in connection.execute(select(e.type).distinct()).all()}
        sums = {
            (row.system_key, row.user_id): row
            for row in connection.execute(
                select(
                    e.system_key,
                    e.user_id,
                    func.sum(e.amount).label("total"),
                    func.max(e.sequence).label("last"),
                    *(v.label(k.lower()) for k, v in by_type.items()),
                ).group_by(e.system_key, e.user_id)
            ).all()
        }
        last = {
            (row.system_key, row.user_id): row.balance_after
            for row in connection.execute(
                select(e.system_key, e.user_id, e.balance_after).where(
                    e.sequence.in_(select(func.max(e.sequence)).group_by(e.system_key, e.user_id))
                )
            ).all()
        }
        accounts = connection.execute(select(AccountRow.__table__)).all()
    problems = [f"unknown entry type {k!r}" for k in kinds - set(by_type)]
    seen = set()
    for a in accounts:
        where = (a.system_key, a.user_id)
        seen.add(where)
        row = sums.get(where)
        total = int(row.total) if row is not None else 0
        counts = (
            tuple(int(getattr(row, k.lower())) for k in by_type) if row is not None else (0,) * 4
        )
        stored = (a.award_entries, a.deduct_entries, a.expire_entries, a.reversal_entries)
        if a.balance != total:
            problems.append(f"{where}: balance {a.balance} != sum(ledger) {total}")
        if a.balance != a.total_earned - a.total_spent - a.total_expired:
            problems.append(f"{where}: balance {a.balance} != earned - spent - expired")
        if min(a.balance, a.total_earned, a.total_spent, a.total_expired) < 0:
            problems.append(f"{where}: a negative total")
        if stored != counts:
            problems.append(f"{where}: entry counts {stored} != {counts} in the ledger")
        if row is not None and last.get(where) != a.balance:
            problems.append(f"{where}: last balance_after {last.get(where)} != {a.balance}")
    problems += [f"{where}: entries without an account" for where in set(sums) - seen]
    return len(accounts), problems


# -- one bad field in a good request ----------------------------------------------------------

# A request of each RPC that the seeded store answers OK (text format; `{entry}`,
# `{trigger}`, `{boost}`, `{level}` are seeded ids). A generated request is also sent as
# each of these with one of its fields put in: a good request with one bad field reaches
# far deeper than one that is bad all over, and costs no generation.
BASES: dict[str, list[str]] = {
    "CreateSystem": ['system { key: "s{n}" name: "S" }'],
    "GetSystem": ['key: "xp"'],
    "ListSystems": ["page_size: 1", ""],
    "UpdateSystem": ['system { key: "xp" name: "Experience" } update_mask { paths: "name" }'],
    "CreateTrigger": [
        'system_key: "xp" trigger { type: TRIGGER_TYPE_EVENT points: 2 event_type: "lesson" }'
    ],
    "UpdateTrigger": [
        'trigger { id: "{trigger}" status: TRIGGER_STATUS_ACTIVE } update_mask { paths: "status" }'
    ],
    "ListTriggers": ['system_key: "xp"'],
    "Award": ['system_key: "xp" user { id: "alice" } amount: 5 reason: "r"'],
    "Deduct": ['system_key: "xp" user_id: "alice" amount: 1'],
    "AwardBatch": ['items { system_key: "xp" user { id: "bob" } amount: 2 }'],
    "RecordEvent": [
        'user { id: "alice" } event_type: "lesson"',
        'user { id: "bob" } event_type: "steps" value: 0.7',
    ],
    "Reverse": ['entry_id: "{entry}"'],
    "GetBalance": ['system_key: "xp" user_id: "alice"'],
    "ListTransactions": ['system_key: "xp" user_id: "alice" page_size: 2'],
    "StreamHistory": ['system_key: "xp" user_id: "alice"'],
    "WatchLedger": ['system_key: "xp"', ""],
    "GetPointsSummary": ['system_key: "xp"'],
    "GetUserPointsSummary": [
        'system_key: "xp" user_id: "alice" aggregation: AGGREGATION_DAILY '
        'start_date: "2026-01-01" end_date: "2026-01-31"'
    ],
    "GetPointsAnalytics": [
        'system_key: "xp" aggregation: AGGREGATION_WEEKLY '
        'start_date: "2026-01-01" end_date: "2026-03-01"'
    ],
    "PreviewTriggers": ['system_key: "xp" trigger_ids: "{trigger}"'],
    "CreateLevel": ['system_key: "xp" level { key: "l{n}" points: {n} }'],
    "UpdateLevel": [
        'level { system_key: "xp" key: "silver" name: "Silver" } update_mask { paths: "name" }'
    ],
    "DeleteLevel": ['system_key: "xp" key: "l{n}"'],
    "ListLevels": ['system_key: "xp"'],
    "GetUserLevel": ['system_key: "xp" user_id: "alice"'],
    "GetLevelSummary": ['system_key: "xp"'],
    "WatchLevelChanges": ['system_key: "xp"'],
    "CreateBoosts": ['system_key: "xp" boosts { name: "b" multiplier: 1.5 user_id: "bob" }'],
    "ListBoosts": ['system_key: "xp"'],
    "ArchiveBoost": ['id: "{boost}"'],
    "GetMultiplier": ['system_key: "xp" user_id: "alice"'],
    "CreateUserToken": ['user_id: "alice"'],
}
WRITES = {"Award", "Deduct", "RecordEvent", "Reverse"}


@dataclass
class Splicer:
    """Good requests of each RPC (BASES, then every request answered OK), and the calls
    that put one field of a generated request into one of them."""

    seeded: Seeded
    admin: tuple[tuple[str, str], ...]
    names: dict[str, str] = field(default_factory=dict)
    bases: dict[str, list[Message]] = field(default_factory=dict)
    counter: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def base(self, method: Any, rng: Any) -> Message:
        known = self.bases.get(method.full_name)
        if known is None:
            cls = GetMessageClass(method.input_type)
            known = [cls()]
            for text in BASES.get(method.name, []):
                self.counter += 1
                filled = (
                    text.replace("{n}", str(self.counter))
                    .replace("{entry}", self.seeded.entries[0])
                    .replace("{trigger}", self.seeded.triggers[0])
                    .replace("{boost}", self.seeded.boosts[0])
                )
                known.append(text_format.Parse(filled, cls()))
            self.bases[method.full_name] = known
        # random(), not randrange(): the draw must not depend on how many bases there are.
        chosen: Message = known[int(rng.random() * len(known)) % len(known)]
        return chosen

    def learn(self, outcome: Outcome, method: Any) -> None:
        """An answered-OK request becomes a base (a few per RPC, small ones)."""
        if outcome.code != grpc.StatusCode.OK or outcome.request.ByteSize() > 4096:
            return
        with self.lock:
            known = self.bases.setdefault(method.full_name, [])
            if len(known) < 24:
                known.append(outcome.request)

    def spliced(self, call: Call, rng: Any) -> list[Call]:
        calls = []
        for one, _ in call.request.ListFields():
            variant = type(call.request)()
            variant.CopyFrom(self.base(call.method, rng))
            if call.method.name in WRITES and one.name != "idempotency_key":
                with self.lock:
                    self.counter += 1
                    variant.idempotency_key = f"splice-{self.counter}"  # type: ignore[attr-defined]
            variant.ClearField(one.name)
            if one.message_type is not None and one.message_type.GetOptions().map_entry:
                getattr(variant, one.name).update(getattr(call.request, one.name))
            elif one.is_repeated:
                getattr(variant, one.name).extend(getattr(call.request, one.name))
            elif one.message_type is not None:
                getattr(variant, one.name).CopyFrom(getattr(call.request, one.name))
            else:
                setattr(variant, one.name, getattr(call.request, one.name))
            calls.append(Call(call.service, call.method, variant, self.admin))
        return calls
