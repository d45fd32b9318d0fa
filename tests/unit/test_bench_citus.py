"""The arithmetic of `python -m bench --citus` (bench/citus.py): the scaling model and the
comparison against plain PostgreSQL, on made-up results (no cluster needed)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import citus, report
from bench.measure import NodeSample, node_usage, title_database


def scenario(name: str, **figures: Any) -> dict[str, Any]:
    return {
        "name": name,
        "unit": "calls",
        "unit_one": "call",
        "check": "ok",
        "latency": {},
        "server_cpu_us_per_unit": None,
        "db_cpu_us_per_unit": None,
        "db_nodes_cpu_us_per_unit": {},
        **figures,
    }


SPREAD_ON_CITUS = scenario(
    "award_spread",
    throughput=400.0,
    latency={"p50_ms": 8.0, "p99_ms": 20.0, "at": "half the ceiling"},
    server_cpu_us_per_unit=1000.0,
    db_cpu_us_per_unit=1000.0,
    # 200 us on the coordinator, 800 us over the two workers
    db_nodes_cpu_us_per_unit={"coordinator": 200.0, "worker1": 450.0, "worker2": 350.0},
)


def test_the_model_is_worker_bound_until_the_workers_outgrow_the_coordinator() -> None:
    model = citus.model_of(SPREAD_ON_CITUS, cores=2.0)
    assert model is not None
    assert model.worker_total == 800.0
    assert model.coordinator_bound == pytest.approx(10_000.0)  # 2 cores / 200 us
    assert model.crossover_workers == pytest.approx(4.0)  # 800 us / 200 us
    two = model.project(2)
    assert two.worker_bound == pytest.approx(5_000.0)  # 2 workers x 2 cores / 800 us
    assert two.awards_per_s == pytest.approx(5_000.0)
    assert two.bound == "workers"
    assert two.server_cores == pytest.approx(5.0)  # 5,000/s x 1 ms of server CPU
    eight = model.project(8)
    assert eight.worker_bound == pytest.approx(20_000.0)
    assert eight.awards_per_s == pytest.approx(10_000.0)
    assert eight.bound == "coordinator"


def test_utilization_scales_every_bound() -> None:
    model = citus.model_of(SPREAD_ON_CITUS, cores=4.0, utilization=0.5)
    assert model is not None
    assert model.coordinator_bound == pytest.approx(10_000.0)
    assert model.project(1).worker_bound == pytest.approx(2_500.0)


def test_no_model_without_every_node_figure() -> None:
    assert citus.model_of(scenario("award_spread", server_cpu_us_per_unit=1.0)) is None
    partial = {**SPREAD_ON_CITUS, "db_nodes_cpu_us_per_unit": {"coordinator": 200.0}}
    assert citus.model_of(partial) is None


def plain_doc() -> dict[str, Any]:
    return {
        "scenarios": [
            scenario(
                "award_spread",
                throughput=1000.0,
                latency={"p50_ms": 4.0, "p99_ms": 10.0, "at": "half the ceiling"},
                server_cpu_us_per_unit=900.0,
                db_cpu_us_per_unit=400.0,
            ),
            scenario(
                "award_batch_1",
                unit="awards",
                unit_one="award",
                throughput=4000.0,
                latency={"p50_ms": 20.0, "p99_ms": 30.0, "at": "1 in flight"},
            ),
            scenario("get_balance", throughput=2000.0),  # not run on Citus: no row
        ]
    }


def citus_doc() -> dict[str, Any]:
    return {
        "scenarios": [
            SPREAD_ON_CITUS,
            scenario(
                "award_batch_1",
                unit="awards",
                unit_one="award",
                throughput=1000.0,
                latency={"p50_ms": 80.0, "p99_ms": 90.0, "at": "1 in flight"},
            ),
        ]
    }


def test_the_comparison_judges_issue_23s_targets() -> None:
    rows = {row["name"]: row for row in citus.compare(plain_doc(), citus_doc())}
    assert set(rows) == {"award_spread", "award_batch_1"}
    spread, batch = rows["award_spread"], rows["award_batch_1"]
    assert spread["throughput_ratio"] == pytest.approx(0.4)
    assert spread["p50_ratio"] == pytest.approx(2.0)
    assert spread["db_cpu_ratio"] == pytest.approx(2.5)
    assert [t["passed"] for t in spread["targets"]] == [True]  # >= 0.4x
    assert batch["p50_ratio"] == pytest.approx(4.0)
    assert [t["passed"] for t in batch["targets"]] == [False]  # <= 3x


def test_scaling_sets_plain_postgresqls_one_node_bound_beside_the_cluster() -> None:
    (model,) = citus.scaling(citus_doc(), plain_doc(), cores=2.0, worker_counts=(2, 8))
    assert model["scenario"] == "award_spread"
    assert model["plain_postgresql_bound"] == pytest.approx(5_000.0)  # 2 cores / 400 us
    assert [p["bound"] for p in model["projections"]] == ["workers", "coordinator"]


def test_the_report_shows_both_runs_the_comparison_and_the_model() -> None:
    def run(
        kind: str, nodes: dict[str, str], doc: dict[str, Any], db_award: dict[str, Any]
    ) -> dict[str, Any]:
        scenarios = [
            {
                **s,
                "baseline": "transport",
                "ratio": None,
                "also": {},
                "targets": [],
                "peak_rss_mb": 1.0,
                "memory_growth_mb": 0.0,
                "generator_cores": 0.1,
            }
            for s in doc["scenarios"]
        ]
        return {
            "started": "2026-12-07 15:00:00",
            "quick": True,
            "command": "python -m bench --citus",
            "machine": {"cpus": 2, "cpu_model": "x", "postgresql": "15"},
            "config": {"workers": 2, "in_flight": 16, "duration_s": 5},
            "database": {"kind": kind, "nodes": nodes},
            "ceilings": {"db_award": {"unit": "awards", "notes": "pgbench", **db_award}},
            "scenarios": scenarios,
        }

    plain = run(
        "postgresql",
        {"postgresql": "127.0.0.1:5432"},
        plain_doc(),
        {"value": 4000.0, "db_cpu_us_per_unit": 300.0},
    )
    cluster = run(
        "citus",
        {"coordinator": "h:9700", "worker1": "h:9701", "worker2": "h:9702"},
        citus_doc(),
        {
            "value": 1000.0,
            "db_cpu_us_per_unit": 900.0,
            "db_nodes_cpu_us_per_unit": {"coordinator": 300.0, "worker1": 300.0, "worker2": 300.0},
        },
    )
    doc = {
        **{k: plain[k] for k in ("started", "quick", "command", "machine")},
        "postgresql": plain,
        "citus": cluster,
        "comparison": citus.compare(plain, cluster),
        "scaling": citus.scaling(cluster, plain),
    }
    text = report.markdown(doc)
    assert "| award_spread | 1,000 calls/s | 400 calls/s | 0.40x throughput, 2.00x p50" in text
    assert "| 1,000 = 200 + 450 + 350 us/call |" in text
    assert "FAIL AwardBatch of 100 p50 <= 3x plain PostgreSQL" in text
    assert "Citus 1,000/s (0.25x) at 900 = 300 + 300 + 300 us." in text
    assert "### Scaling model from award_spread on Citus" in text
    assert "1,000 us/call (200 + 450 + 350)" in text  # the Citus run's own table


@pytest.mark.parametrize(
    ("title", "database"),
    [
        ("postgres: postgres tally_bench_1 127.0.0.1(5432) idle", "tally_bench_1"),
        ("postgres: 15/main: postgres tally_x 127.0.0.1(49588) INSERT", "tally_x"),
        ("postgres: app shop [local] idle in transaction", "shop"),
        ("postgres: checkpointer ", None),
        ("postgres: 15/main: background writer ", None),
        ("postgres: Citus Maintenance Daemon: 55601/10 ", None),
        ("/usr/lib/postgresql/15/bin/postgres -D /tmp/citus-cluster/n9700", None),
    ],
)
def test_a_backend_is_told_by_the_database_its_title_names(
    title: str, database: str | None
) -> None:
    assert title_database(title) == database


def test_a_nodes_cpu_is_the_windows_less_other_databases_backends() -> None:
    start = NodeSample(
        total=100.0,
        reaped=40.0,
        # 11: ours; 12: ours, ends in the window; 13: another database's
        children={11: 10.0, 12: 30.0, 13: 20.0},
        foreign=frozenset({13}),
    )
    end = NodeSample(
        # 12 reaped with 35 s in all (5 in the window); 14 (another database's) is new
        total=100.0 + 2.0 + 5.0 + 4.0 + 3.0 + 6.0,  # 11, 12, 13, new ours 15, new foreign 14
        reaped=40.0 + 35.0,
        children={11: 12.0, 13: 24.0, 14: 6.0, 15: 3.0},
        foreign=frozenset({13, 14}),
    )
    usage = node_usage(start, end)
    assert usage.foreign == pytest.approx(4.0 + 6.0)
    assert usage.cpu == pytest.approx(2.0 + 5.0 + 3.0)
    assert usage.exited == pytest.approx(5.0)  # not the 35 s of 12's whole life
