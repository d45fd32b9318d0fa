"""Load generators as separate processes, each with its own CPU reported.

- `h2gen` (bench/h2gen.py): a different prepared request per call, closed or open loop,
  real grpc-status per call. Used for every scenario and for the transport ceiling.
- `h2load` (Debian nghttp2-client): the same body on every call; the cheapest generator,
  used as a cross-check of the transport ceiling.
- `pgbench`: the database ceiling (bench/ceilings.py).

Server and database CPU are read at the moments the generator opens and closes its
measured window, so warm-up and drain are left out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import Meter, Snapshot, Usage

INSTALL_H2LOAD = "apt-get install -y nghttp2-client"


@dataclass
class Run:
    """One generator run: what the generator reported and what the system spent."""

    result: dict[str, Any]
    usage: Usage | None
    generator_cpu_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def grpc_frames(messages: Iterable[bytes]) -> bytes:
    """gRPC length-prefixed messages: flag 0 (uncompressed), 4-byte big-endian length."""
    return b"".join(b"\x00" + len(m).to_bytes(4, "big") + m for m in messages)


def write_bodies(directory: Path, name: str, messages: Iterable[bytes]) -> Path:
    path = directory / f"{name}.bodies"
    path.write_bytes(grpc_frames(messages))
    return path


def _wait_with_usage(proc: subprocess.Popen[str]) -> float:
    """Reap a child and return the CPU seconds it used (user + system)."""
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def run_h2gen(
    meter: Meter | None,
    *,
    port: int,
    path: str,
    bodies: Path,
    duration: float,
    warmup: float,
    connections: int,
    streams: int = 1,
    rate: float = 0.0,
    headers: Sequence[tuple[str, str]] = (),
) -> Run:
    spec = {
        "host": "127.0.0.1",
        "port": port,
        "path": path,
        "bodies": str(bodies),
        "connections": connections,
        "streams": streams,
        "rate": rate,
        "duration": duration,
        "warmup": warmup,
        "headers": [list(h) for h in headers],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as spec_file:
        json.dump(spec, spec_file)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.h2gen", spec_file.name],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stdout is not None
    marks: dict[str, Snapshot] = {}
    result: dict[str, Any] = {}
    for line in proc.stdout:
        line = line.strip()
        if line in ("start", "end") and meter is not None:
            marks[line] = meter.snapshot()
        elif line.startswith("{"):
            result = json.loads(line)
    cpu = _wait_with_usage(proc)
    os.unlink(spec_file.name)
    if proc.returncode != 0 or not result:
        raise RuntimeError(f"h2gen failed (exit {proc.returncode}) on {path}")
    usage = meter.usage(marks["start"], marks["end"]) if len(marks) == 2 and meter else None
    return Run(result, usage, cpu)


def h2load_available() -> bool:
    return shutil.which("h2load") is not None


def ensure_h2load(install: bool) -> bool:
    """h2load is optional (a cross-check); install it when asked and possible."""
    if h2load_available():
        return True
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(INSTALL_H2LOAD.split(), check=False, capture_output=True)
    return h2load_available()


def run_h2load(
    meter: Meter | None,
    *,
    port: int,
    path: str,
    body: Path,
    duration: float,
    connections: int,
    streams: int,
    headers: Sequence[tuple[str, str]] = (),
) -> Run:
    """Closed loop with h2load. It counts HTTP 200 as success whatever the grpc-status, so
    the caller must check outcomes another way (bytes of DATA per call, the ledger)."""
    command = [
        "h2load",
        "-D",
        str(int(duration)),
        "-c",
        str(connections),
        "-m",
        str(streams),
        "-t",
        "1",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        *(arg for name, value in headers for arg in ("-H", f"{name}: {value}")),
        "-d",
        str(body),
        f"http://127.0.0.1:{port}{path}",
    ]
    start = meter.snapshot() if meter else None
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = proc.stdout.read() if proc.stdout else ""
    end = meter.snapshot() if meter else None
    cpu = _wait_with_usage(proc)
    result = parse_h2load(output, duration)
    usage = meter.usage(start, end) if meter and start and end else None
    return Run(result, usage, cpu)


def parse_h2load(output: str, duration: float) -> dict[str, Any]:
    def number(pattern: str) -> float:
        match = re.search(pattern, output)
        return float(match.group(1)) if match else 0.0

    succeeded = int(number(r"(\d+) succeeded"))
    return {
        "throughput": number(r"finished in [\d.]+s, ([\d.]+) req/s"),
        "calls_ok": succeeded,
        "failed": int(number(r"(\d+) failed")),
        "data_bytes": int(number(r"headers \(space savings [\d.]+%\), [\d.]+\w*B \((\d+)\) data")),
        "duration_s": duration,
    }


def run_child(command: list[str], *, env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run a command to the end; return its output and the CPU seconds it used."""
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    output = proc.stdout.read() if proc.stdout else ""
    cpu = _wait_with_usage(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"{command[0]} failed (exit {proc.returncode}):\n{output[-2000:]}")
    return output, cpu
