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


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"### Tally benchmark {doc['started']} ({'quick' if doc['quick'] else 'full'} run)",
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
            f"| {_fmt(s['db_cpu_us_per_unit'])} us/{s['unit_one']} "
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
