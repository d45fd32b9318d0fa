"""Settings: command-line flags over TALLY_* environment variables over defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DATABASE_FILE = "tally.db"


def default_database_url() -> str:
    """An SQLite file in the working folder: the server runs with nothing else installed."""
    return f"sqlite:///{Path.cwd() / DEFAULT_DATABASE_FILE}"


@dataclass(frozen=True)
class Settings:
    listen: str = DEFAULT_LISTEN
    database_url: str = ""
    # Threads per server process: each call holds one while it runs, also while it waits
    # for the writer, so the thread count bounds how many changes one commit can carry.
    threads: int = 64
    # Server streams open at once per process (a follower of WatchLedger holds one for
    # as long as it follows), each on a thread of its own beyond `threads`; one more is
    # refused RESOURCE_EXHAUSTED (server/api/streams.py).
    max_streams: int = 64
    # Server processes sharing the port (SO_REUSEPORT): one per core uses every core.
    workers: int = 1
    # Seconds that calls in flight get to finish after SIGTERM/SIGINT.
    grace_seconds: float = 10.0
    log_level: str = "INFO"
    # Seconds between sweeps that write off lapsed credit of idle accounts (0 = off).
    sweep_seconds: float = 30.0
    # Most changes one group commit carries (1 = one transaction per change).
    max_batch: int = 256
    # Serve without checking API keys (local experiments only; logged as a warning).
    insecure_no_auth: bool = False
    # Seconds a process trusts the keys it holds: a revoked key is refused by every
    # process within this bound (plus one reload of the keys).
    key_cache_seconds: float = 5.0
    # Writes per second (and burst) of one user in one system, per process (0 = no limit).
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 100
    # HOST:PORT where Prometheus metrics are served at /metrics ("" = not served).
    metrics_listen: str = ""
    # Log lines on standard error: "text" for people, "json" (one object a line) for
    # log collectors (server/logs.py).
    log_format: str = "text"

    @property
    def pool_size(self) -> int:
        """Database connections per process (and as many more at peaks): one writer, and
        readers, whose transactions are short, so far fewer than the threads."""
        return min(self.threads, 16)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **flags: object) -> Settings:
        """Flags that are given (not None) win over the environment, which wins over defaults."""
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "listen": env.get("TALLY_LISTEN", DEFAULT_LISTEN),
            "database_url": env.get("TALLY_DATABASE_URL") or default_database_url(),
            "threads": int(env.get("TALLY_THREADS", cls.threads)),
            "max_streams": int(env.get("TALLY_MAX_STREAMS", cls.max_streams)),
            "workers": int(env.get("TALLY_WORKERS", cls.workers)),
            "grace_seconds": float(env.get("TALLY_GRACE_SECONDS", cls.grace_seconds)),
            "log_level": env.get("TALLY_LOG_LEVEL", cls.log_level),
            "sweep_seconds": float(env.get("TALLY_SWEEP_SECONDS", cls.sweep_seconds)),
            "max_batch": int(env.get("TALLY_MAX_BATCH", cls.max_batch)),
            "key_cache_seconds": float(env.get("TALLY_KEY_CACHE_SECONDS", cls.key_cache_seconds)),
            "rate_limit_per_second": float(
                env.get("TALLY_RATE_LIMIT_PER_SECOND", cls.rate_limit_per_second)
            ),
            "rate_limit_burst": int(env.get("TALLY_RATE_LIMIT_BURST", cls.rate_limit_burst)),
            "metrics_listen": env.get("TALLY_METRICS_LISTEN", cls.metrics_listen),
            "log_format": env.get("TALLY_LOG_FORMAT", cls.log_format),
        }
        values.update({name: value for name, value in flags.items() if value is not None})
        return cls(**values)  # type: ignore[arg-type]
