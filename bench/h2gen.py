"""A cheap gRPC load generator: prepared HTTP/2 frames, one process, one thread, no grpcio.

Why it exists: on 2 cores the generator competes with the server for CPU. A grpcio client
costs ~200 us of CPU per call here; h2load costs ~30 us but sends the same body on every
call, so it cannot spread awards over 100,000 users or give each one its own idempotency
key. This sends a different prepared request per call, decodes every response's trailers
(HPACK) for the real grpc-status, and records each call's latency, for a few tens of us per
call. It speaks just enough HTTP/2 for gRPC over cleartext (prior knowledge).

Closed loop: `connections` x `streams` calls in flight, each completion issues the next.
Open loop: calls go out on a fixed schedule (`rate` per second) whatever the server does,
and latency counts from the scheduled time, so a stalled server cannot hide its queue.

Run by the harness (bench/load.py): `python -m bench.h2gen SPEC.json`. It prints `start`
when the measured window opens, `end` when it closes, then one JSON line of results.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import struct
import sys
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME = struct.Struct(">IBI")  # (length << 8 | type), flags, stream id
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0,
    1,
    3,
    4,
    6,
    7,
    8,
    9,
)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
MAX_WINDOW = 2**31 - 1
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE, SETTINGS_ENABLE_PUSH = 4, 5, 2
DRAIN_SECONDS = 5.0


def frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return FRAME.pack((len(payload) << 8) | ftype, flags, stream) + payload


def hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 5.1 integer with an N-bit prefix; `first` holds the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(text: str) -> bytes:
    raw = text.encode()
    return hpack_int(len(raw), 7, 0) + raw


def request_header_block(path: str, authority: str, extra: Sequence[Sequence[str]] = ()) -> bytes:
    """The request headers, encoded once: static-table names, literals never indexed, so
    the block is the same for every call and our encoder keeps no dynamic table. `extra`
    headers (the API key) are literals with new names."""
    return b"".join(
        (
            b"\x83",  # :method POST
            b"\x86",  # :scheme http
            hpack_int(4, 4, 0) + hpack_str(path),  # :path
            hpack_int(1, 4, 0) + hpack_str(authority),  # :authority
            hpack_int(31, 4, 0) + hpack_str("application/grpc"),  # content-type
            b"\x00" + hpack_str("te") + hpack_str("trailers"),
            *(b"\x00" + hpack_str(name) + hpack_str(value) for name, value in extra),
        )
    )


@dataclass
class Call:
    scheduled: float  # when the call was due (open loop) or sent (closed loop)
    status: str = ""  # grpc-status from the trailers; "" until they arrive
    messages: int = 0
    pending: int = 0  # bytes still to skip of the current message, prefix included
    prefix: bytes = b""  # a message prefix split across DATA frames


@dataclass
class Stats:
    """What the run saw; `window_*` counts only the measured window."""

    window_start: float = 0.0
    window_end: float = 0.0
    window_ok: int = 0
    window_messages: int = 0
    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors: dict[str, int] = field(default_factory=dict)
    total_ok: int = 0
    total_errors: int = 0
    dropped: int = 0


class Connection:
    """One HTTP/2 connection with calls in flight on it."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        stats: Stats,
        headers: Sequence[Sequence[str]] = (),
    ) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stats = stats
        self.block = request_header_block(path, f"{host}:{port}", headers)
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 1 << 16
        self.calls: dict[int, Call] = {}
        self.status_cache: dict[bytes, tuple[Any, int, int, str | None]] = {}
        self.next_stream = 1
        self.inbuf = bytearray()
        self.out = bytearray()
        self.send_window = 65535  # connection-level; per-stream windows never bind here
        self.max_frame = 16384
        self.queued: list[tuple[bytes, float]] = []
        self.received_unacked = 0
        self.headers_stream = 0
        self.headers_flags = 0
        self.headers_block = bytearray()
        self.alive = True
        settings = struct.pack(
            ">HIHI", SETTINGS_ENABLE_PUSH, 0, SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW
        )
        self.out += PREFACE + frame(SETTINGS, 0, 0, settings)
        self.out += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - 65535))

    def issue(self, body: bytes, scheduled: float) -> None:
        if len(body) > self.send_window or self.queued:
            self.queued.append((body, scheduled))
            return
        self._send(body, scheduled)

    def _send(self, body: bytes, scheduled: float) -> None:
        sid = self.next_stream
        self.next_stream += 2
        self.calls[sid] = Call(scheduled)
        self.out += frame(HEADERS, END_HEADERS, sid, self.block)
        self.send_window -= len(body)
        for start in range(0, len(body), self.max_frame):
            chunk = body[start : start + self.max_frame]
            last = start + self.max_frame >= len(body)
            self.out += frame(DATA, END_STREAM if last else 0, sid, chunk)

    def flush(self) -> None:
        if self.out:
            self.sock.sendall(self.out)
            self.out.clear()

    def read(self, now: float) -> list[Call]:
        """Read what the socket has; return the calls that completed."""
        data = self.sock.recv(1 << 18)
        if not data:
            self.alive = False
            return []
        self.inbuf += data
        done: list[Call] = []
        buf, pos, end = self.inbuf, 0, len(self.inbuf)
        while end - pos >= 9:
            length_type, flags, sid = FRAME.unpack_from(buf, pos)
            length = length_type >> 8
            if end - pos - 9 < length:
                break
            payload = bytes(buf[pos + 9 : pos + 9 + length])
            pos += 9 + length
            self._frame(length_type & 0xFF, flags, sid & 0x7FFFFFFF, payload, now, done)
        del buf[:pos]
        if self.received_unacked > 1 << 24:
            self.out += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.received_unacked))
            self.received_unacked = 0
        return done

    def _frame(
        self, ftype: int, flags: int, sid: int, payload: bytes, now: float, done: list[Call]
    ) -> None:
        if ftype == DATA:
            self.received_unacked += len(payload)
            call = self.calls.get(sid)
            if call is not None:
                if flags & PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                self._count_messages(call, payload, now)
                if flags & END_STREAM:
                    done.append(self._finish(sid, call))
        elif ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                if flags & PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                if flags & PRIORITY:
                    payload = payload[5:]
                self.headers_stream, self.headers_flags = sid, flags
                self.headers_block = bytearray(payload)
            else:
                self.headers_block += payload
            if flags & END_HEADERS:
                status = self._grpc_status(bytes(self.headers_block))
                call = self.calls.get(self.headers_stream)
                if call is not None:
                    if status is not None:
                        call.status = status
                    if self.headers_flags & END_STREAM:
                        done.append(self._finish(self.headers_stream, call))
        elif ftype == SETTINGS and not flags & ACK:
            for offset in range(0, len(payload) - 5, 6):
                ident, value = struct.unpack_from(">HI", payload, offset)
                if ident == SETTINGS_MAX_FRAME_SIZE:
                    self.max_frame = value
            self.out += frame(SETTINGS, ACK, 0, b"")
        elif ftype == PING and not flags & ACK:
            self.out += frame(PING, ACK, 0, payload)
        elif ftype == WINDOW_UPDATE and sid == 0:
            self.send_window += struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            while self.queued and len(self.queued[0][0]) <= self.send_window:
                self._send(*self.queued.pop(0))
        elif ftype == RST_STREAM:
            call = self.calls.get(sid)
            if call is not None:
                call.status = "RST_STREAM"
                done.append(self._finish(sid, call))
        elif ftype == GOAWAY:
            self.alive = False

    def _grpc_status(self, block: bytes) -> str | None:
        """The grpc-status in a header block, if any. Every block goes through the HPACK
        decoder (its dynamic table follows the server's), except that a block seen before
        is answered from a cache while the table is unchanged: decoding such a block does
        not change the table, and in steady state the server repeats the same few blocks."""
        table = self.decoder.header_table
        state = (
            table.dynamic_entries[0] if table.dynamic_entries else None,
            len(table.dynamic_entries),
            table.maxsize,
        )
        hit = self.status_cache.get(block)
        if hit is not None and hit[0] is state[0] and hit[1:3] == state[1:]:
            return hit[3]
        status = None
        for name, value in self.decoder.decode(block, raw=True):
            if name == b"grpc-status":
                status = bytes(value).decode()
        after = (
            table.dynamic_entries[0] if table.dynamic_entries else None,
            len(table.dynamic_entries),
            table.maxsize,
        )
        if after[0] is state[0] and after[1:] == state[1:]:
            self.status_cache[block] = (*state, status)
        return status

    def _count_messages(self, call: Call, payload: bytes, now: float) -> None:
        """Count gRPC messages (5-byte prefix + body) across DATA frame boundaries."""
        pos, end, before = 0, len(payload), call.messages
        while pos < end:
            if call.pending:
                step = min(call.pending, end - pos)
                call.pending -= step
                pos += step
                continue
            need = 5 - len(call.prefix)
            call.prefix += payload[pos : pos + need]
            pos += need
            if len(call.prefix) == 5:
                call.pending = int.from_bytes(call.prefix[1:], "big")
                call.prefix = b""
                call.messages += 1
        if self.stats.window_start <= now < self.stats.window_end:
            self.stats.window_messages += call.messages - before

    def _finish(self, sid: int, call: Call) -> Call:
        del self.calls[sid]
        if not call.status:
            call.status = "NO_TRAILERS"
        return call


def load_bodies(path: Path) -> list[bytes]:
    """Split a file of gRPC frames (flag byte, 4-byte length, message) into frames."""
    raw = path.read_bytes()
    bodies, pos = [], 0
    while pos < len(raw):
        size = 5 + int.from_bytes(raw[pos + 1 : pos + 5], "big")
        bodies.append(raw[pos : pos + size])
        pos += size
    return bodies


def percentiles(values: array[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": round(ordered[-1] * 1000, 3),
        "mean_ms": round(sum(ordered) / len(ordered) * 1000, 3),
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(spec: dict[str, Any]) -> dict[str, Any]:
    bodies = load_bodies(Path(spec["bodies"]))
    rate = float(spec.get("rate") or 0)
    per_conn = int(spec.get("streams", 1))
    max_outstanding = int(spec.get("max_outstanding", 2000))
    stats = Stats()
    conns = [
        Connection(spec["host"], spec["port"], spec["path"], stats, spec.get("headers", ()))
        for _ in range(int(spec["connections"]))
    ]
    selector = selectors.DefaultSelector()
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        conn.flush()
    issued = 0
    start = time.perf_counter()
    stats.window_start = start + float(spec.get("warmup", 0))
    stats.window_end = stats.window_start + float(spec["duration"])
    marks = {"start": False, "end": False}
    cpu = {"start": 0.0, "end": 0.0}

    def next_body() -> bytes:
        nonlocal issued
        body = bodies[issued % len(bodies)]
        issued += 1
        return body

    def outstanding() -> int:
        return sum(len(c.calls) + len(c.queued) for c in conns)

    if not rate:
        for conn in conns:
            for _ in range(per_conn):
                conn.issue(next_body(), start)
    slot = 0
    while True:
        now = time.perf_counter()
        for mark, at in (("start", stats.window_start), ("end", stats.window_end)):
            if not marks[mark] and now >= at:
                marks[mark] = True
                cpu[mark] = cpu_seconds()
                print(mark, flush=True)
        issuing = now < stats.window_end
        if rate and issuing:
            while True:
                due = start + slot / rate
                if due > now:
                    break
                if outstanding() < max_outstanding:
                    conns[slot % len(conns)].issue(next_body(), due)
                else:
                    stats.dropped += 1
                slot += 1
        for conn in conns:
            conn.flush()
        waiting = outstanding()
        if not issuing and (not waiting or now > stats.window_end + DRAIN_SECONDS):
            break
        if rate and issuing:
            timeout = max(0.0, min(start + slot / rate, stats.window_end) - now)
        else:
            timeout = max(0.0, min(stats.window_end - now, 0.05)) if issuing else 0.05
        for key, _events in selector.select(timeout):
            conn = key.data
            now = time.perf_counter()
            for call in conn.read(now):
                ok = call.status == "0"
                if ok:
                    stats.total_ok += 1
                else:
                    stats.total_errors += 1
                    stats.errors[call.status] = stats.errors.get(call.status, 0) + 1
                if stats.window_start <= call.scheduled < stats.window_end and ok:
                    stats.latencies.append(now - call.scheduled)
                if ok and stats.window_start <= now < stats.window_end:
                    stats.window_ok += 1
                if not rate and now < stats.window_end and conn.alive:
                    conn.issue(next_body(), time.perf_counter())
        if not all(c.alive for c in conns):
            stats.errors["CONNECTION_CLOSED"] = 1
            break
    if not marks["end"]:
        cpu["end"] = cpu_seconds()
        print("end", flush=True)
    duration = float(spec["duration"])
    generator_cpu = cpu["end"] - cpu["start"]
    return {
        "mode": "open" if rate else "closed",
        "offered_rate": rate,
        "duration_s": duration,
        "calls_ok": stats.window_ok,
        "throughput": round(stats.window_ok / duration, 1),
        "messages": stats.window_messages,
        "messages_per_s": round(stats.window_messages / duration, 1),
        "latency": percentiles(stats.latencies),
        "errors": stats.errors,
        "total_ok": stats.total_ok,
        "total_errors": stats.total_errors,
        "unfinished": outstanding(),
        "dropped": stats.dropped,
        "issued": issued,
        "wrapped": issued > len(bodies),
        "generator_cpu_s": round(generator_cpu, 3),
        "generator_cores": round(generator_cpu / duration, 3),
    }


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    print(json.dumps(run(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
