"""`--citus`: the same scenarios on plain PostgreSQL and on a Citus cluster, side by side,
and a scaling model from the cluster's CPU per award.

Pure arithmetic on two result documents of the same run (bench/__main__.py makes them),
so that it is tested without a cluster (tests/unit/test_bench_citus.py).

The scaling model. One award (an Award call, or one award of an AwardBatch) costs
`coordinator` us of CPU on the coordinator, `workers[i]` us on worker i, and `server` us in
Tally's servers, measured in the closed loop of the Citus run. Projected for N workers:

- coordinator-bound: `cores * utilization / coordinator` awards/s, whatever N (every write
  goes through the one coordinator: the ledger's sequence lives there);
- worker-bound: `N * cores * utilization / sum(workers)` awards/s (the workers' CPU per award,
  summed, is spread evenly over N workers);
- projected: the lower of the two; past `crossover_workers` more workers add nothing;
- Tally servers are stateless and added as needed: `server` us per award says how many
  cores of them a rate takes.

Assumptions, stated in the report: every node (and every server) on its own machine of
`cores` cores usable to `utilization`; CPU per award stays what it was on the 2-worker
cluster (an award touches a fixed number of shards and nodes whatever N; the 2PC of a
write spanning two workers stays two workers); users spread evenly over shards (no hot
user); the network between machines costs no CPU beyond what loopback cost here; no
other bottleneck (disk, locks). On this machine every process shared 2 cores, so CPU per
award includes some contention (context switches, spinning), making the model
conservative rather than optimistic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Issue 23's targets: Citus against plain PostgreSQL in the same run.
TARGETS = (
    # scenario, metric, op, value, label
    ("award_spread", "throughput_ratio", ">=", 0.4, "Award >= 0.4x plain PostgreSQL"),
    ("award_batch_1", "p50_ratio", "<=", 3.0, "AwardBatch of 100 p50 <= 3x plain PostgreSQL"),
)

WORKER_COUNTS = (1, 2, 4, 8, 16, 32)
# Scenarios whose CPU per award feeds the model.
MODELLED = ("award_spread", "award_batch")


@dataclass(frozen=True)
class Projection:
    workers: int
    worker_bound: float  # awards/s
    coordinator_bound: float
    awards_per_s: float
    bound: str  # "workers" or "coordinator"
    server_cores: float  # Tally server cores that rate takes


@dataclass(frozen=True)
class Model:
    """CPU per award (us) on each part, and what it projects."""

    server: float
    coordinator: float
    workers: tuple[float, ...]
    cores: float
    utilization: float

    @property
    def worker_total(self) -> float:
        return sum(self.workers)

    @property
    def coordinator_bound(self) -> float:
        return self.cores * self.utilization / self.coordinator * 1e6

    def worker_bound(self, n: int) -> float:
        return n * self.cores * self.utilization / self.worker_total * 1e6

    @property
    def crossover_workers(self) -> float:
        """Workers at which their bound meets the coordinator's."""
        return self.worker_total / self.coordinator

    def project(self, n: int) -> Projection:
        workers, coordinator = self.worker_bound(n), self.coordinator_bound
        rate = min(workers, coordinator)
        return Projection(
            workers=n,
            worker_bound=workers,
            coordinator_bound=coordinator,
            awards_per_s=rate,
            bound="workers" if workers < coordinator else "coordinator",
            server_cores=rate * self.server / 1e6,
        )


def model_of(
    result: dict[str, Any], *, cores: float = 2.0, utilization: float = 1.0
) -> Model | None:
    """The model from one Citus scenario's result (its CPU per unit on each node)."""
    nodes = result.get("db_nodes_cpu_us_per_unit") or {}
    server = result.get("server_cpu_us_per_unit")
    coordinator = nodes.get("coordinator")
    workers = tuple(v for k, v in sorted(nodes.items()) if k.startswith("worker"))
    if not server or not coordinator or not workers or not all(workers):
        return None
    return Model(float(server), float(coordinator), workers, cores, utilization)


def scaling(
    citus_doc: dict[str, Any],
    plain_doc: dict[str, Any] | None = None,
    *,
    cores: float = 2.0,
    utilization: float = 1.0,
    worker_counts: Sequence[int] = WORKER_COUNTS,
) -> list[dict[str, Any]]:
    """The model for each modelled scenario of the Citus run, with plain PostgreSQL's
    single-node bound (`cores / its database CPU per award`) beside it."""
    plain = {s["name"]: s for s in (plain_doc or {}).get("scenarios", [])}
    models = []
    for result in citus_doc.get("scenarios", []):
        if result["name"] not in MODELLED:
            continue
        model = model_of(result, cores=cores, utilization=utilization)
        if model is None:
            continue
        plain_db = (plain.get(result["name"]) or {}).get("db_cpu_us_per_unit")
        models.append(
            {
                "scenario": result["name"],
                "unit": result.get("unit_one", "award"),
                "cores_per_node": cores,
                "utilization": utilization,
                "cpu_us_per_award": {
                    "server": model.server,
                    "coordinator": model.coordinator,
                    **{f"worker{i}": w for i, w in enumerate(model.workers, 1)},
                    "workers_total": model.worker_total,
                },
                "plain_postgresql_db_cpu_us": plain_db,
                "plain_postgresql_bound": (
                    cores * utilization / plain_db * 1e6 if plain_db else None
                ),
                "coordinator_bound": model.coordinator_bound,
                "crossover_workers": model.crossover_workers,
                "projections": [vars(model.project(n)) for n in worker_counts],
            }
        )
    return models


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def compare(plain_doc: dict[str, Any], citus_doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each scenario run on both: Citus's figures as ratios of plain PostgreSQL's, and
    issue 23's targets judged on them."""
    plain = {s["name"]: s for s in plain_doc.get("scenarios", [])}
    rows = []
    for c in citus_doc.get("scenarios", []):
        p = plain.get(c["name"])
        if p is None:
            continue
        p_lat, c_lat = p.get("latency") or {}, c.get("latency") or {}
        row: dict[str, Any] = {
            "name": c["name"],
            "unit": c["unit"],
            "unit_one": c.get("unit_one", c["unit"]),
            "plain": {
                "throughput": p["throughput"],
                "p50_ms": p_lat.get("p50_ms"),
                "p99_ms": p_lat.get("p99_ms"),
                "latency_at": p_lat.get("at"),
                "server_cpu_us": p.get("server_cpu_us_per_unit"),
                "db_cpu_us": p.get("db_cpu_us_per_unit"),
                "others_cores": sum((p.get("db_foreign_cores") or {}).values()),
            },
            "citus": {
                "throughput": c["throughput"],
                "p50_ms": c_lat.get("p50_ms"),
                "p99_ms": c_lat.get("p99_ms"),
                "latency_at": c_lat.get("at"),
                "server_cpu_us": c.get("server_cpu_us_per_unit"),
                "db_cpu_us": c.get("db_cpu_us_per_unit"),
                "db_nodes_cpu_us": c.get("db_nodes_cpu_us_per_unit") or {},
                "db_nodes_reaped_us": c.get("db_nodes_reaped_cpu_us_per_unit") or {},
                "sessions_per_call": c.get("db_sessions_per_call") or {},
                "others_cores": sum((c.get("db_foreign_cores") or {}).values()),
            },
            "check": "ok" if p["check"] == "ok" and c["check"] == "ok" else "MISMATCH",
        }
        row["throughput_ratio"] = _ratio(c["throughput"], p["throughput"])
        row["p50_ratio"] = _ratio(c_lat.get("p50_ms"), p_lat.get("p50_ms"))
        row["p99_ratio"] = _ratio(c_lat.get("p99_ms"), p_lat.get("p99_ms"))
        row["db_cpu_ratio"] = _ratio(c.get("db_cpu_us_per_unit"), p.get("db_cpu_us_per_unit"))
        row["targets"] = [
            _judge(label, row.get(metric), op, value)
            for name, metric, op, value, label in TARGETS
            if name == c["name"]
        ]
        rows.append(row)
    return rows


def _judge(label: str, actual: float | None, op: str, value: float) -> dict[str, Any]:
    passed = None
    if actual is not None and not math.isnan(actual):
        passed = actual >= value if op == ">=" else actual <= value
    return {"label": label, "actual": actual, "op": op, "value": value, "passed": passed}
