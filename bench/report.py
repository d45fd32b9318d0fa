"""Results out: one JSON document (every figure) and a Markdown table (for people)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _mark(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[passed]


def _db_cpu(s: dict[str, Any]) -> str:
    """Database CPU per unit, split by node when there are several (Citus)."""
    total = f"{_fmt(s['db_cpu_us_per_unit'])} us/{s['unit_one']}"
    nodes = s.get("db_nodes_cpu_us_per_unit") or {}
    if len(nodes) < 2:
        return total
    return f"{total} ({' + '.join(_fmt(v) for v in nodes.values())})"


def markdown(doc: dict[str, Any]) -> str:
    if "citus" in doc:
        return markdown_citus(doc)
    database = doc.get("database") or {}
    nodes = database.get("nodes") or {}
    on = ""
    if database.get("kind") == "citus":
        on = (
            " on Citus (DB CPU: total ("
            + " + ".join(f"{name} {where}" for name, where in nodes.items())
            + "))"
        )
    lines = [
        f"### Tally benchmark {doc['started']} ({'quick' if doc['quick'] else 'full'} run)" + on,
        "",
        f"`{doc['command']}` on {doc['machine']['cpus']} cores "
        f"({doc['machine']['cpu_model']}), server `--workers {doc['config']['workers']}`, "
        f"{doc['config']['in_flight']} calls in flight, {doc['config']['duration_s']:.0f} s "
        f"per measurement.",
        "",
        "Ceilings (same run):",
        "",
        "| ceiling | value | generator CPU | notes |",
        "|---|---:|---:|---|",
    ]
    for name, c in doc["ceilings"].items():
        if "value_used" in c:
            c = {
                **c,
                "notes": f"{c['notes']}; ratios use the mean with transport_end: "
                f"{c['value_used']:,.0f}",
            }
        lines.append(
            f"| {name} | {_fmt(c['value'])} {c['unit']}/s | {_fmt(c.get('generator_cores'), 2)}"
            f" cores | {c.get('notes', '')} |"
        )
    lines += [
        "",
        "| scenario | throughput | ratio (baseline) | also | p50 / p99 ms (offered/s) "
        "| server CPU | DB CPU | server RSS peak (growth) | generator | checks | targets |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for s in doc["scenarios"]:
        lat = s.get("latency") or {}
        if lat and str(lat.get("at", "")).endswith("in flight"):  # a closed-loop latency run
            latency = f"{_fmt(lat.get('p50_ms'), 2)} / {_fmt(lat.get('p99_ms'), 2)} ({lat['at']})"
        elif lat:
            note = "" if lat.get("at") == "half the ceiling" else " *"
            latency = (
                f"{_fmt(lat.get('p50_ms'), 1)} / {_fmt(lat.get('p99_ms'), 1)}"
                f" ({_fmt(lat.get('offered_rate'))}{note})"
            )
        else:
            latency = "-"
        also = ", ".join(f"{_ratio(v)} {k}" for k, v in s["also"].items()) or "-"
        targets = "; ".join(f"{_mark(t['passed'])} {t['label']}" for t in s["targets"]) or "-"
        lines.append(
            f"| {s['name']} | {_fmt(s['throughput'])} {s['unit']}/s "
            f"| {_ratio(s['ratio'])} {s['baseline']} | {also} | {latency} "
            f"| {_fmt(s['server_cpu_us_per_unit'])} us/{s['unit_one']} "
            f"| {_db_cpu(s)} "
            f"| {_fmt(s['peak_rss_mb'])} MB ({_fmt(s['memory_growth_mb'], 1)}) "
            f"| {_fmt(s['generator_cores'], 2)} cores | {s['check']} | {targets} |"
        )
    lines += [
        "",
        "Throughput: closed loop. Latency: open loop at half the baseline's rate; `*` marks a "
        "scenario that could not take half its ceiling, measured instead at half its own "
        "throughput; `(N in flight)` is a closed loop's own latency. CPU per unit is over "
        "the closed-loop window. Checks compare the ledger with the calls that succeeded.",
        "",
    ]
    return "\n".join(lines)


def write(doc: dict[str, Any], out: Path, stamp: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{stamp}.json"
    md_path = out / f"{stamp}.md"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    text = markdown(doc)
    md_path.write_text(text)
    (out / "latest.md").write_text(text)
    (out / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    return json_path, md_path


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _pair(a: float | None, b: float | None, digits: int = 1) -> str:
    return f"{_fmt(a, digits)} / {_fmt(b, digits)}"


def markdown_citus(doc: dict[str, Any]) -> str:
    """Both runs' tables, then the comparison and the scaling model."""
    citus_doc = doc["citus"]
    nodes = list((citus_doc.get("database") or {}).get("nodes", {}))
    where = ", ".join(f"{n} {a}" for n, a in (citus_doc["database"]["nodes"]).items())
    lines = [
        f"## Tally on plain PostgreSQL and on Citus, {doc['started']}"
        f" ({'quick' if doc['quick'] else 'full'} run)",
        "",
        f"`{doc['command']}`: the same scenarios, the same machine, one after the other;"
        f" PostgreSQL {doc['postgresql'].get('machine', {}).get('postgresql', '')} on"
        f" {doc['postgresql']['database']['nodes']['postgresql']}, then Citus ({where}).",
        "",
        "| scenario | PostgreSQL | Citus | Citus / PostgreSQL | p50 / p99 ms PostgreSQL "
        "| p50 / p99 ms Citus | server CPU PostgreSQL / Citus | DB CPU PostgreSQL "
        f"| DB CPU Citus ({' + '.join(nodes)}) | other databases, cores "
        "(PostgreSQL / Citus) | checks | targets |",
        "|---|---:|---:|---|---|---|---:|---:|---:|---|---|---|",
    ]
    for row in doc["comparison"]:
        p, c, unit = row["plain"], row["citus"], row["unit_one"]
        split = " + ".join(_fmt(c["db_nodes_cpu_us"].get(n)) for n in nodes) + f" us/{unit}"
        if any(c.get("db_nodes_reaped_us", {}).values()):
            exited = " + ".join(_fmt(c["db_nodes_reaped_us"].get(n)) for n in nodes)
            split += f" (exited backends {exited})"
        opened = c.get("sessions_per_call") or {}
        if any(opened.values()):
            split += "; connections opened per call " + " + ".join(
                f"{opened.get(n, 0):.2f}" for n in nodes
            )
        ratios = f"{_ratio(row['throughput_ratio'])} throughput"
        if row["p50_ratio"] is not None:
            ratios += f", {_ratio(row['p50_ratio'])} p50"
        targets = "; ".join(f"{_mark(t['passed'])} {t['label']}" for t in row["targets"]) or "-"
        lines.append(
            f"| {row['name']} | {_fmt(p['throughput'])} {row['unit']}/s "
            f"| {_fmt(c['throughput'])} {row['unit']}/s | {ratios} "
            f"| {_pair(p['p50_ms'], p['p99_ms'])} | {_pair(c['p50_ms'], c['p99_ms'])} "
            f"| {_pair(p['server_cpu_us'], c['server_cpu_us'], 0)} us/{unit} "
            f"| {_fmt(p['db_cpu_us'])} us/{unit} "
            f"| {_fmt(c['db_cpu_us'])} = {split} "
            f"| {_pair(p['others_cores'], c['others_cores'], 2)} | {row['check']} | {targets} |"
        )
    lines += [
        "",
        "Latency as in each run's table (open loop at half the baseline's rate, or the closed"
        " loop's own at 1 in flight); the open loops of the two runs may offer different rates."
        " CPU per unit over each closed-loop window; a node's CPU is its postmaster's whole"
        " process tree less the live backends of other databases (shown in cores: other"
        " people's tests on the same nodes); their backends that exited during the window"
        " and the nodes' shared background work stay in. `exited backends`: the part spent by"
        " backends that ended in the window (connections opened and closed: Citus's to its"
        " workers, or other people's).",
        "",
    ]
    plain_db, citus_db = (
        doc["postgresql"]["ceilings"].get("db_award"),
        citus_doc["ceilings"].get("db_award"),
    )
    if plain_db and citus_db:
        split = " + ".join(
            _fmt((citus_db.get("db_nodes_cpu_us_per_unit") or {}).get(n)) for n in nodes
        )
        lines += [
            "The same award-shaped transaction from pgbench (db_award, one user's rows, no"
            f" Tally): PostgreSQL {_fmt(plain_db['value'])}/s at"
            f" {_fmt(plain_db.get('db_cpu_us_per_unit'))} us of database CPU each; Citus"
            f" {_fmt(citus_db['value'])}/s ({_ratio(_div(citus_db['value'], plain_db['value']))})"
            f" at {_fmt(citus_db.get('db_cpu_us_per_unit'))} = {split} us.",
            "",
        ]
    for m in doc.get("scaling", []):
        lines += _scaling(m)
    lines += [
        "",
        markdown(doc["postgresql"]),
        "",
        markdown(citus_doc),
    ]
    return "\n".join(lines)


def _scaling(m: dict[str, Any]) -> list[str]:
    cpu = m["cpu_us_per_award"]
    workers = [k for k in cpu if k.startswith("worker") and k != "workers_total"]
    cores = m["cores_per_node"]
    plain = m.get("plain_postgresql_bound")
    lines = [
        f"### Scaling model from {m['scenario']} on Citus",
        "",
        f"CPU per {m['unit']}: Tally server {_fmt(cpu['server'])} us, coordinator "
        f"{_fmt(cpu['coordinator'])} us, workers "
        + " + ".join(f"{_fmt(cpu[w])}" for w in workers)
        + f" = {_fmt(cpu['workers_total'])} us"
        + (
            f" (plain PostgreSQL: {_fmt(m['plain_postgresql_db_cpu_us'])} us, one node of "
            f"{cores:g} cores: {_fmt(plain)}/s)"
            if plain
            else ""
        )
        + ".",
        "",
        f"Every node on its own {cores:g}-core machine, used to {m['utilization']:.0%}:"
        f" the coordinator caps the cluster at {_fmt(m['coordinator_bound'])}/s; the workers"
        f" reach that cap at {m['crossover_workers']:.1f} workers.",
        "",
        "| workers | worker-bound /s | coordinator-bound /s | projected /s | bound by "
        "| Tally server cores |",
        "|---:|---:|---:|---:|---|---:|",
    ]
    for p in m["projections"]:
        lines.append(
            f"| {p['workers']} | {_fmt(p['worker_bound'])} | {_fmt(p['coordinator_bound'])} "
            f"| {_fmt(p['awards_per_s'])} | {p['bound']} | {_fmt(p['server_cores'], 1)} |"
        )
    lines += [
        "",
        "Assumptions: each node (and each Tally server) on its own machine; CPU per award"
        " stays what this 2-worker cluster measured (an award touches a fixed number of shards"
        " and nodes whatever the worker count); users spread evenly over shards; the network"
        " costs no more CPU than loopback did here; no disk or lock bottleneck; all writes"
        " through the one coordinator (the ledger's sequence lives there). Measured with every"
        " process sharing this machine's cores, so contention is in the CPU per award.",
        "",
    ]
    return lines
