"""`python -m bench`: measure Tally against the transport's and the database's ceilings.

python -m bench [--quick] [--scenarios a,b] [--duration S] [--workers N] [--out DIR] [--citus]

Creates a fresh PostgreSQL database, seeds it, starts the real server, measures the
ceilings and every scenario with load from separate processes, writes
bench/results/<timestamp>.json and .md (and latest.md), prints the table on stdout and
progress on stderr, then stops the server and drops the database. With --citus it does
all of that twice, on plain PostgreSQL and then on a local Citus cluster, and reports the
two side by side with a scaling model (bench/citus.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from bench import ceilings, citus, report, seed
from bench.followers import Followers
from bench.load import Run, ensure_h2load, run_child, run_h2gen, run_h2load, write_bodies
from bench.measure import Meter
from bench.scenarios import BY_NAME, SCENARIOS, Context, Harness, Scenario
from bench.stack import ROOT, Database, Server, citus_workers, log
from tally.v1 import points_pb2

HEALTH = "/grpc.health.v1.Health/Check"
REQUIREMENTS = ROOT / "bench" / "requirements.txt"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: ~2 min, small data")
    parser.add_argument("--scenarios", help="comma-separated names (default: all)")
    parser.add_argument("--duration", type=float, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=2, help="server processes (default 2)")
    parser.add_argument("--threads", type=int, help="threads per server process")
    parser.add_argument("--connections", type=int, default=8, help="HTTP/2 connections")
    parser.add_argument("--streams", type=int, default=2, help="calls in flight per connection")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--db-host", default="127.0.0.1")
    parser.add_argument("--db-port", type=int, default=5432)
    parser.add_argument("--db-user", default="postgres")
    parser.add_argument("--no-install", action="store_true", help="never apt-get h2load")
    parser.add_argument(
        "--citus",
        action="store_true",
        help="run the scenarios on plain PostgreSQL, then on the Citus cluster whose"
        " coordinator is --citus-host:--citus-port, and compare",
    )
    parser.add_argument("--citus-host", default="127.0.0.1")
    parser.add_argument("--citus-port", type=int, default=9700)
    parser.add_argument(
        "--cores-per-node",
        type=float,
        default=2.0,
        help="cores of each node in the scaling model (default 2, this machine kind)",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="serve with --insecure-no-auth and no write limit (to measure what auth costs)",
    )
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 5.0 if args.quick else 15.0
    return args


def check_tools(args: argparse.Namespace) -> bool:
    """pgbench and hpack are required; h2load is a cross-check and may be missing."""
    try:
        import hpack  # noqa: F401
    except ImportError:
        raise SystemExit(
            f"missing Python packages: run `.venv/bin/pip install -r {REQUIREMENTS}`"
        ) from None
    if shutil.which("pgbench") is None:
        raise SystemExit("pgbench not found: `apt-get install -y postgresql-client` (or -contrib)")
    has_h2load = ensure_h2load(install=not args.no_install)
    if not has_h2load:
        log("h2load not found (apt-get install -y nghttp2-client); skipping its cross-check")
    return has_h2load


class Bench(Harness):
    """One benchmark run: the stack, the ceilings, the scenarios, the results."""

    def __init__(
        self, args: argparse.Namespace, has_h2load: bool, database: Database | None = None
    ) -> None:
        self.args = args
        self.has_h2load = has_h2load
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.database = database or Database(
            args.db_host, args.db_port, args.db_user, f"tally_bench_{self.stamp.replace('-', '_')}"
        )
        self.postmasters: dict[str, int] = {}  # each database node's, for the Meter
        self.quick = bool(args.quick)
        self.ctx = Context(
            run_id=self.stamp,
            users=100_000,
            history_entries=10_000 if self.quick else 100_000,
            big_ledger_entries=5_000_000,
            rng=random.Random(5),
        )
        self.tmp = Path(tempfile.mkdtemp(prefix="tally-bench-"))
        self.levels: dict[str, float] = {}  # units/s of every ceiling and scenario so far
        self.p50s: dict[str, float] = {}  # closed-loop p50 ms of latency scenarios so far
        self.p99s: dict[str, float] = {}  # open-loop p99 ms of scenarios so far
        self.followers: Followers | None = None
        self.ceilings: dict[str, dict[str, Any]] = {}
        self.results: list[dict[str, Any]] = []
        self.seeded = seed.Seeded(0, 0, 0)
        self.extra: dict[str, Any] = {}

    @property
    def in_flight(self) -> int:
        return int(self.args.connections * self.args.streams)

    # -- the run ---------------------------------------------------------------------

    def run(self, selected: list[Scenario]) -> dict[str, Any]:
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        where = ", ".join(f"{n} {h}:{p}" for n, (h, p) in self.database.nodes().items())
        log(f"database {self.database.name} ({where}): creating, migrating, seeding")
        self.database.create()
        self.extra["postgresql"] = self.database.version()
        self.extra["database"] = {
            "kind": "citus" if self.database.citus else "postgresql",
            "nodes": {n: f"{h}:{p}" for n, (h, p) in self.database.nodes().items()},
        }
        try:
            self.postmasters = self.database.postmasters()
            run_child(
                [
                    str(Path(sys.executable).parent / "tally-server"),
                    "migrate",
                    "--database-url",
                    self.database.url,
                ]
            )
            with self.database.connect() as conn:
                t0 = time.perf_counter()
                self.seeded = seed.base(conn, self.ctx.users, self.ctx.history_entries)
                ceilings.prepare_tables(conn, citus=self.database.citus)
                log(
                    f"seeded {self.ctx.users:,} users and a {self.ctx.history_entries:,}-entry"
                    f" history in {time.perf_counter() - t0:.1f} s"
                )
            with Server(
                self.database,
                workers=self.args.workers,
                threads=self.args.threads,
                auth=not self.args.no_auth,
            ) as s:
                self.server = s
                self.meter = Meter(s.pid, self.postmasters, self.database.name)
                log(f"server pid {s.pid} on {s.target} ({len(self.meter.tree)} processes)")
                self.collect_deep_tokens()
                self.measure_ceilings()
                for scenario in selected:
                    self.results.append(self.run_scenario(scenario))
                self.transport_ceiling("transport_end")
        finally:
            self.database.drop()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.document(started)

    def collect_deep_tokens(self) -> None:
        """Walk the long history once; keep the page tokens from a quarter of the way down."""
        tokens: list[str] = []
        with grpc.insecure_channel(self.server.target) as channel:
            call = channel.unary_unary(
                "/tally.v1.PointsService/ListTransactions",
                request_serializer=points_pb2.ListTransactionsRequest.SerializeToString,
                response_deserializer=points_pb2.ListTransactionsResponse.FromString,
            )
            token = ""
            while True:
                reply = call(
                    points_pb2.ListTransactionsRequest(
                        system_key=seed.SYSTEM,
                        user_id=seed.HISTORY_USER,
                        page_size=100,
                        page_token=token,
                    ),
                    metadata=self.server.headers,
                )
                token = reply.next_page_token
                if not token:
                    break
                tokens.append(token)
        self.ctx.deep_tokens = tokens[len(tokens) // 4 :] or tokens

    # -- ceilings --------------------------------------------------------------------

    def measure_ceilings(self) -> None:
        self.transport_ceiling("transport")
        if self.has_h2load:
            body = write_bodies(self.tmp, "health", [b""])
            log("ceiling transport_h2load: Health/Check with h2load")
            run = run_h2load(
                self.meter,
                port=self.server.port,
                path=HEALTH,
                body=body,
                duration=self.args.duration,
                connections=self.args.connections,
                streams=self.args.streams,
                headers=self.server.headers,
            )
            expected = 7 * run.result["calls_ok"]  # 5-byte prefix + 2-byte SERVING message
            self.ceilings["transport_h2load"] = {
                "value": run.result["throughput"],
                "unit": "calls",
                "generator_cores": run.generator_cpu_s / self.args.duration,
                "server_cores": run.usage.server_cores if run.usage else None,
                "all_ok": run.result["data_bytes"] == expected and not run.result["failed"],
                "notes": "cross-check: same body every call",
            }
        dsn = {
            "host": self.database.host,
            "port": str(self.database.port),
            "user": self.database.user,
            "dbname": self.database.name,
        }
        for name, script, unit, scale, clients, notes in (
            (
                "db_award",
                ceilings.award_script(users=self.ctx.users),
                "awards",
                1,
                self.in_flight,
                "pgbench: award-shaped transaction, spread",
            ),
            (
                "db_award_hot",
                ceilings.award_script(users=None),
                "awards",
                1,
                self.in_flight,
                "pgbench: award-shaped transaction, one user",
            ),
            (
                "db_history",
                ceilings.history_script(self.seeded),
                "entries",
                ceilings.HISTORY_CHUNK,
                1,
                "pgbench: 1000-entry keyset chunks, 1 client",
            ),
        ):
            log(f"ceiling {name}: {notes}, {clients} connections")
            start = self.meter.snapshot()
            result = ceilings.pgbench(dsn, script, clients, self.args.duration)
            usage = self.meter.usage(start, self.meter.snapshot())
            value = result.tps * scale
            self.levels[name] = value
            self.ceilings[name] = {
                "value": value,
                "unit": unit,
                "tps": result.tps,
                "transactions": result.transactions,
                "failed": result.failed,
                "latency_ms": result.latency_ms,
                "clients": clients,
                "generator_cores": result.pgbench_cpu_s / usage.seconds,
                "db_cpu_us_per_unit": usage.db_cpu / max(1, result.transactions * scale) * 1e6,
                "db_nodes_cpu_us_per_unit": {
                    node: cpu / max(1, result.transactions * scale) * 1e6
                    for node, cpu in usage.nodes.items()
                },
                "notes": notes,
            }
            log(f"  {value:,.0f} {unit}/s")

    def transport_ceiling(self, name: str) -> None:
        log(f"ceiling {name}: Health/Check with h2gen, {self.in_flight} in flight")
        body = write_bodies(self.tmp, "health", [b""])
        run = run_h2gen(
            self.meter,
            port=self.server.port,
            path=HEALTH,
            bodies=body,
            duration=self.args.duration,
            warmup=1.0,
            connections=self.args.connections,
            streams=self.args.streams,
            headers=self.server.headers,
        )
        value = run.result["throughput"]
        self.ceilings[name] = {
            "value": value,
            "unit": "calls",
            "generator_cores": run.result["generator_cores"],
            "server_cores": run.usage.server_cores if run.usage else None,
            "server_cpu_us_per_call": _per(run, run.result["calls_ok"], "server"),
            "errors": run.result["errors"],
            "notes": "same generator and load shape as the scenarios",
        }
        if name == "transport":
            self.levels["transport"] = value
        log(f"  {value:,.0f} calls/s, generator {run.result['generator_cores']:.2f} cores")

    # -- scenarios -------------------------------------------------------------------

    def seed_big_ledger(self) -> None:
        if "big_ledger_seed_s" in self.extra:
            return  # seeded for an earlier scenario
        log(f"growing the ledger by {self.ctx.big_ledger_entries:,} entries (takes minutes)")
        with self.database.connect() as conn:
            seconds = seed.big_ledger(conn, self.ctx.users, self.ctx.big_ledger_entries)
            entries, _ = seed.ledger_state(conn)
        self.extra["big_ledger_seed_s"] = round(seconds, 1)
        log(f"  ledger now {entries:,} entries ({seconds:.0f} s)")

    def last_sequence(self) -> int:
        with self.database.connect() as conn:
            return seed.last_sequence(conn)

    def open_followers(self, count: int, *, measure_lag: bool) -> None:
        with self.database.connect() as conn:
            after = seed.last_sequence(conn)
        watched = seed.SYSTEM if measure_lag else None
        self.followers = Followers(self.server.target, count, watched, after, self.server.headers)
        log(f"  {count} idle followers opened" + (", and one measuring lag" if measure_lag else ""))

    def close_followers(self) -> dict[str, Any]:
        assert self.followers is not None
        figures = self.followers.close()
        self.followers = None
        log(
            f"  followers: {figures['followers_refused']} refused; live lag over "
            f"{figures['lag_entries']} entries p50 {figures['lag_p50_ms']} ms,"
            f" p99 {figures['lag_p99_ms']} ms"
        )
        return figures

    def run_scenario(self, s: Scenario) -> dict[str, Any]:
        """Run `s` on the run's server, or on a server of its own (Scenario.server_env)."""
        if s.server_env is None:
            return self._run_scenario(s)
        main_server, main_meter = self.server, self.meter
        env = ", ".join(f"{k}={v}" for k, v in s.server_env.items())
        log(f"scenario {s.name}: starting a server of its own ({env})")
        with Server(
            self.database,
            workers=self.args.workers,
            threads=self.args.threads,
            env=s.server_env,
            auth=not self.args.no_auth,
        ) as other:
            self.server, self.meter = other, Meter(other.pid, self.postmasters, self.database.name)
            try:
                return self._run_scenario(s)
            finally:
                self.server, self.meter = main_server, main_meter

    def _run_scenario(self, s: Scenario) -> dict[str, Any]:
        log(f"scenario {s.name}: {s.title}")
        if s.setup is not None:
            s.setup(self)
        duration, warmup = self.args.duration, 1.0
        transport = self.levels["transport"]
        closed_calls = int(transport * (duration + warmup + 6) * 1.2 / s.units_per_call) + 200
        if s.streaming:
            closed_calls = 1000
        first, *rest = s.build(self.ctx, closed_calls + 1)
        preflight = self.preflight(s, first)
        bodies = write_bodies(self.tmp, s.name, rest)
        with self.database.connect() as conn:
            sequence_before = seed.last_sequence(conn)
        sessions_before = self.database.sessions()
        rss_start = self.meter.start_sampling()
        connections, streams = (self.args.connections, self.args.streams)
        if s.streaming:
            connections, streams = 1, 1
        elif s.in_flight is not None:
            connections, streams = s.in_flight
        if s.in_flight is not None:
            # fewer calls in flight take fewer calls; never fewer than the window can use
            in_flight = connections * streams
            closed_calls = min(closed_calls, int(closed_calls * in_flight / self.in_flight) + 2000)
        closed = run_h2gen(
            self.meter,
            port=self.server.port,
            path=s.path,
            bodies=bodies,
            duration=duration,
            warmup=warmup,
            connections=connections,
            streams=streams,
            headers=self.server.headers,
        )
        calls = closed.result["calls_ok"]
        sessions_after = self.database.sessions()
        throughput = (
            closed.result["messages_per_s"] * s.units_per_message
            if s.streaming
            else closed.result["throughput"] * s.units_per_call
        )
        self.levels[s.name] = throughput
        units = (
            closed.result["messages"] * s.units_per_message
            if s.streaming
            else calls * s.units_per_call
        )
        log(
            f"  closed loop: {throughput:,.0f} {s.unit}/s, "
            f"errors {closed.result['errors'] or 'none'}"
        )
        latency: dict[str, Any] = {}
        open_run: Run | None = None
        if s.latency == "closed":
            latency = {**closed.result["latency"], "at": f"{connections * streams} in flight"}
            self.p50s[s.name] = float(latency.get("p50_ms") or 0.0)
            log(f"  latency: p50 {latency.get('p50_ms')} ms, p99 {latency.get('p99_ms')} ms")
        elif not s.streaming:
            if self.followers is not None:
                self.followers.restart_lag()  # lag at the open loop's rate, not saturated
            open_run, latency = self.open_loop(s, closed.result["throughput"])
        extra = s.teardown(self) if s.teardown is not None else {}
        peak = self.meter.stop_sampling()
        check = self.verify(s, closed, open_run, sequence_before)
        result: dict[str, Any] = {
            "name": s.name,
            "title": s.title,
            "rpc": s.rpc,
            "unit": s.unit,
            "unit_one": {"entries": "entry"}.get(s.unit, s.unit.rstrip("s")),
            "throughput": throughput,
            "calls_per_s": closed.result["throughput"],
            "baseline": s.baseline,
            "closed_loop": closed.result,
            "open_loop": open_run.result if open_run else None,
            "latency": latency,
            "server_cores": closed.usage.server_cores if closed.usage else None,
            "db_cores": closed.usage.db_cores if closed.usage else None,
            "server_cpu_us_per_unit": _per(closed, units, "server"),
            "db_cpu_us_per_unit": _per(closed, units, "db"),
            "db_nodes_cpu_us_per_unit": (
                {node: cpu / units * 1e6 for node, cpu in closed.usage.nodes.items()}
                if closed.usage and units
                else {}
            ),
            # of which backends that exited in the window (connections opened and closed)
            "db_nodes_reaped_cpu_us_per_unit": (
                {node: cpu / units * 1e6 for node, cpu in closed.usage.reaped.items()}
                if closed.usage and units
                else {}
            ),
            # connections opened on each node per call of the closed loop (warm-up included)
            "db_sessions_per_call": {
                node: (sessions_after[node] - sessions_before.get(node, 0))
                / max(1, closed.result["total_ok"])
                for node in sessions_after
            },
            # CPU of other databases' backends on the same nodes, left out of the above
            "db_foreign_cores": (
                {n: cpu / closed.usage.seconds for n, cpu in closed.usage.foreign.items()}
                if closed.usage and closed.usage.seconds
                else {}
            ),
            "generator_cores": closed.result["generator_cores"],
            "rss_start_mb": rss_start / 2**20,
            "peak_rss_mb": peak / 2**20,
            "memory_growth_mb": (peak - rss_start) / 2**20,
            "preflight": preflight,
            "verification": check,
            "check": "ok" if check["ok"] else "MISMATCH",
        }
        result["p99_ms"] = latency.get("p99_ms") if latency.get("at") else None
        result.update(extra)
        result["closed_p99_ms"] = closed.result["latency"].get("p99_ms")
        if result["p99_ms"]:
            self.p99s[s.name] = float(result["p99_ms"])
            if self.p99s.get(s.baseline):
                result["p99_ratio"] = round(result["p99_ms"] / self.p99s[s.baseline], 3)
        baseline_p50 = self.p50s.get(s.baseline)
        if baseline_p50 and latency.get("p50_ms"):
            result["p50_ratio"] = round(latency["p50_ms"] / baseline_p50, 3)
        self.judge(s, result)
        for t in result["targets"]:
            log(f"  target {t['label']}: {report._mark(t['passed'])} ({t['actual']})")
        return result

    def judge(self, s: Scenario, result: dict[str, Any]) -> None:
        """Ratios against the baselines as they stand, and the targets' pass/fail."""
        throughput = result["throughput"]
        baseline = self.levels.get(s.baseline)
        result["baseline_value"] = baseline
        result["ratio"] = throughput / baseline if baseline else None
        result["also"] = {
            name: (throughput / self.levels[name] if self.levels.get(name) else None)
            for name in s.also
        }
        latency = result["latency"]
        result["targets"] = [
            {
                "label": t.label,
                "metric": t.metric,
                "op": t.op,
                "value": t.value,
                "actual": result.get(t.metric),
                "passed": t.check(result.get(t.metric)),
            }
            for t in s.targets
        ]
        if (
            any(t["metric"] == "p99_ms" for t in result["targets"])
            and latency.get("at") != "half the ceiling"
        ):
            for t in result["targets"]:
                if t["metric"] == "p99_ms":
                    t["passed"] = False  # could not even take half the ceiling

    def open_loop(self, s: Scenario, closed_calls_per_s: float) -> tuple[Run, dict[str, Any]]:
        """Latency at a fixed offered rate: half the baseline, in calls/s. When the scenario
        cannot carry even that, at half its own throughput, and say so."""
        baseline = self.levels.get(s.baseline) or 0.0
        rate, at = 0.5 * baseline / s.units_per_call, "half the ceiling"
        if not rate or rate > 0.9 * closed_calls_per_s:
            rate, at = 0.5 * closed_calls_per_s, "half its own throughput"
        rate = max(rate, 1.0)
        duration, warmup = self.args.duration, 1.0
        count = int(rate * (duration + warmup) * 1.05) + 50
        bodies = write_bodies(self.tmp, f"{s.name}-open", s.build(self.ctx, count))
        run = run_h2gen(
            self.meter,
            port=self.server.port,
            path=s.path,
            bodies=bodies,
            duration=duration,
            warmup=warmup,
            connections=self.args.connections,
            rate=rate,
            headers=self.server.headers,
        )
        latency = {
            **run.result["latency"],
            "offered_rate": rate,
            "at": at,
            "achieved_rate": run.result["throughput"],
            "generator_cores": run.result["generator_cores"],
        }
        log(
            f"  open loop at {rate:,.0f}/s ({at}): p50 {latency.get('p50_ms')} ms,"
            f" p99 {latency.get('p99_ms')} ms, dropped {run.result['dropped']}"
        )
        return run, latency

    def preflight(self, s: Scenario, message: bytes) -> dict[str, Any]:
        """One call through grpcio before the load: the request must succeed. (The load
        generators' own counts are checked against the ledger afterwards.)"""
        with grpc.insecure_channel(self.server.target) as channel:
            try:
                if s.streaming:
                    stream = channel.unary_stream(
                        s.path, request_serializer=_raw, response_deserializer=_raw
                    )
                    replies = sum(
                        1 for _ in stream(message, timeout=300, metadata=self.server.headers)
                    )
                    return {"ok": True, "messages": replies}
                unary = channel.unary_unary(
                    s.path, request_serializer=_raw, response_deserializer=_raw
                )
                reply: bytes = unary(message, timeout=30, metadata=self.server.headers)
                return {"ok": True, "response_bytes": len(reply)}
            except grpc.RpcError as error:
                raise SystemExit(f"{s.name}: the first call failed: {error}") from error

    def verify(
        self, s: Scenario, closed: Run, open_run: Run | None, sequence_before: int
    ) -> dict[str, Any]:
        """Entries written must match successful calls; balances must match the ledger."""
        runs = [r for r in (closed, open_run) if r is not None]
        ok_calls = sum(r.result["total_ok"] for r in runs)
        unfinished = sum(r.result["unfinished"] for r in runs)
        errors = sum(r.result["total_errors"] for r in runs)
        wrapped = any(r.result["wrapped"] for r in runs) and s.entries_per_call > 0
        with self.database.connect() as conn:
            written = seed.entries_after(conn, sequence_before)
            balanced = seed.balances_match_ledger(conn) if s.entries_per_call else True
        low = ok_calls * s.entries_per_call
        high = (ok_calls + unfinished) * s.entries_per_call
        ok = low <= written <= high and balanced and not errors and not wrapped
        return {
            "ok": ok,
            "successful_calls": ok_calls,
            "failed_calls": errors,
            "unfinished_calls": unfinished,
            "entries_expected": low,
            "entries_written": written,
            "balances_match_ledger": balanced,
            "requests_reused": wrapped,
        }

    # -- results ---------------------------------------------------------------------

    def document(self, started: str) -> dict[str, Any]:
        """Ratios are recomputed against the mean of the transport ceiling measured before
        and after the scenarios, which halves the effect of drift on a shared machine."""
        start, end = self.ceilings["transport"]["value"], self.ceilings["transport_end"]["value"]
        self.levels["transport"] = (start + end) / 2
        self.ceilings["transport"]["value_used"] = self.levels["transport"]
        for result in self.results:
            self.judge(BY_NAME[result["name"]], result)
        return {
            "started": started,
            "quick": self.quick,
            "command": " ".join(["python -m bench", *sys.argv[1:]]),
            "machine": machine_facts(self.extra.pop("postgresql", "")),
            "config": {
                "workers": self.args.workers,
                "threads": self.args.threads,
                "connections": self.args.connections,
                "streams": self.args.streams,
                "in_flight": self.in_flight,
                "duration_s": self.args.duration,
                "users": self.ctx.users,
                "history_entries": self.ctx.history_entries,
                "big_ledger_entries": self.ctx.big_ledger_entries,
            },
            "transport_drift": (end - start) / start if start else None,
            "ceilings": self.ceilings,
            "scenarios": self.results,
            "targets_passed": all(
                t["passed"] for s in self.results for t in s["targets"] if t["passed"] is not None
            ),
            **self.extra,
        }


def _raw(data: bytes) -> bytes:
    """Requests are serialized in advance; responses are only measured."""
    return data


def _per(run: Run, units: float, what: str) -> float | None:
    """CPU microseconds per unit over the measured window."""
    if run.usage is None or not units:
        return None
    cpu = run.usage.server_cpu if what == "server" else run.usage.db_cpu
    return cpu / units * 1e6


def machine_facts(postgresql: str) -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    h2load = ""
    if shutil.which("h2load"):
        h2load = subprocess.run(
            ["h2load", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "postgresql": postgresql,
        "h2load": h2load,
        "load_average": os.getloadavg(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    has_h2load = check_tools(args)
    names = args.scenarios.split(",") if args.scenarios else None
    unknown = [n for n in names or [] if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; known: {', '.join(BY_NAME)}")
    selected = [
        s
        for s in SCENARIOS
        if (names is None and (s.quick or not args.quick)) or (names and s.name in names)
    ]
    for s in list(selected):  # a baseline that is a scenario must run first
        if s.baseline in BY_NAME and s.baseline not in [x.name for x in selected]:
            selected.insert(0, BY_NAME[s.baseline])
    if args.citus:
        return run_both(args, has_h2load, selected)
    bench = Bench(args, has_h2load)
    doc = bench.run(selected)
    json_path, md_path = report.write(doc, args.out, bench.stamp)
    print(report.markdown(doc))
    log(f"wrote {json_path} and {md_path}")
    return 0


def run_both(args: argparse.Namespace, has_h2load: bool, selected: list[Scenario]) -> int:
    """The scenarios on plain PostgreSQL, then on the Citus cluster: same machine, same
    run, one document with both, their comparison and the scaling model."""
    workers = citus_workers(args.citus_host, args.citus_port, args.db_user)  # fail first
    log(f"--citus: plain PostgreSQL first, then the cluster ({len(workers)} workers)")
    plain = Bench(args, has_h2load)
    plain_doc = plain.run(selected)
    # kept should the cluster's half fail; the combined document replaces latest.*
    kept, _ = report.write(plain_doc, args.out, f"{plain.stamp}-postgresql")
    log(f"plain PostgreSQL's half: {kept}")
    cluster = Bench(
        args,
        has_h2load,
        Database(
            args.citus_host,
            args.citus_port,
            args.db_user,
            f"tally_bench_{plain.stamp.replace('-', '_')}_citus",
            workers,
        ),
    )
    citus_doc = cluster.run(selected)
    doc = {
        "started": plain_doc["started"],
        "quick": plain_doc["quick"],
        "command": plain_doc["command"],
        "machine": plain_doc["machine"],
        "postgresql": plain_doc,
        "citus": citus_doc,
        "comparison": citus.compare(plain_doc, citus_doc),
        "scaling": citus.scaling(citus_doc, plain_doc, cores=args.cores_per_node),
    }
    json_path, md_path = report.write(doc, args.out, plain.stamp)
    print(report.markdown(doc))
    log(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
