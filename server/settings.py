"""Settings: command-line flags over TALLY_* environment variables over defaults.

Every value is checked here, once, as it is read: a bad one is a SettingError whose
message names the flag or variable, says what it accepts, and quotes what it got.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DATABASE_FILE = "tally.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")  # server/logs.py
# The stores Tally runs on (plain postgresql:// means psycopg 3, server/store/database.py).
DATABASE_DRIVERS = ("postgresql+psycopg", "postgresql", "sqlite", "sqlite+pysqlite")
DATABASE_EXAMPLE = "postgresql+psycopg://USER@HOST:5432/DATABASE or sqlite:///PATH"
QUOTED_CHARS = 100  # of a bad value, in a message
# The server secret user tokens are signed under (server/domain/tokens.py): at least this
# many characters, e.g. the 44 of `openssl rand -base64 32`.
MIN_TOKEN_SECRET_CHARS = 32
TOKEN_SECRET_EXAMPLE = "openssl rand -base64 32"


class SettingError(ValueError):
    """A setting Tally cannot use. The message names the flag or variable, what it accepts
    and what it got, in one line for the operator."""


@dataclass(frozen=True)
class Accepts:
    """What a numeric setting accepts: whole numbers or not, from `low` to `high`."""

    whole: bool
    low: float
    high: float
    note: str = ""  # what a special value means, e.g. "0 = off"

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        text = f"{kind} from {_plain(self.low)} to {_plain(self.high)}"
        return f"{text} ({self.note})" if self.note else text

    def read(self, name: str, raw: object) -> int | float:
        """`raw` (text from the command line or the environment, or a number) checked."""
        value: int | float
        try:
            if isinstance(raw, str):
                value = int(raw.strip()) if self.whole else float(raw.strip())
            elif isinstance(raw, int | float) and not isinstance(raw, bool):
                value = raw
            else:
                raise ValueError(raw)
        except ValueError:
            raise SettingError(f"{name} must be {self.describe()}, got {quoted(raw)}") from None
        if (
            not math.isfinite(value)
            or (self.whole and value != int(value))
            or not self.low <= value <= self.high
        ):
            raise SettingError(f"{name} must be {self.describe()}, got {quoted(raw)}")
        return int(value) if self.whole else float(value)


def _plain(number: float) -> str:
    """1000000000, not 1e+09."""
    return str(int(number)) if number == int(number) else str(number)


# The numeric settings, each read from --flag-name or TALLY_FLAG_NAME.
NUMBERS: dict[str, Accepts] = {
    "threads": Accepts(whole=True, low=1, high=1024),
    "max_streams": Accepts(whole=True, low=1, high=4096),
    "max_streams_per_key": Accepts(whole=True, low=1, high=4096),
    "max_open_streams": Accepts(whole=True, low=1, high=4096),
    "workers": Accepts(whole=True, low=1, high=256),
    "grace_seconds": Accepts(whole=False, low=0, high=3600),
    "sweep_seconds": Accepts(whole=False, low=0, high=86400, note="0 = off"),
    "max_batch": Accepts(whole=True, low=1, high=100_000),
    "key_cache_seconds": Accepts(whole=False, low=0, high=3600),
    "rate_limit_per_second": Accepts(whole=False, low=0, high=1e9, note="0 = no limit"),
    "rate_limit_burst": Accepts(whole=True, low=1, high=1_000_000_000),
    "entry_lookup_limit_per_second": Accepts(whole=False, low=0, high=1e9, note="0 = no limit"),
    "entry_lookup_limit_burst": Accepts(whole=True, low=1, high=1_000_000_000),
}


# TALLY_* variables that others read: the `tally` command, compose, the test suites.
OTHERS_VARIABLES = frozenset({"TALLY_TARGET", "TALLY_API_KEY", "TALLY_USER_TOKEN", "TALLY_PORT"})
OTHERS_PREFIXES = ("TALLY_TEST_", "TALLY_FAULTS_", "TALLY_CONTAINER_", "TALLY_HOSTILE_")


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """A line for each TALLY_* variable that names no setting (a typo, e.g. TALLY_WORKER,
    would otherwise be ignored without a word), with the setting it may have meant."""
    known = {env_name(f.name) for f in dataclasses.fields(Settings)} | {
        env_name("token_secret_file")
    }
    lines = []
    for name in sorted(env):
        if not name.startswith("TALLY_") or name in known or name in OTHERS_VARIABLES:
            continue
        if name.startswith(OTHERS_PREFIXES) or name in ("TALLY_BUF", "TALLY_KEY"):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"{name} is not a setting, so it is ignored{hint}")
    return lines


def flag_name(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def env_name(setting: str) -> str:
    return "TALLY_" + setting.upper()


def quoted(raw: object) -> str:
    """`raw` as a message quotes it: repr, at most QUOTED_CHARS characters of it."""
    text = str(raw)
    return repr(text if len(text) <= QUOTED_CHARS else text[:QUOTED_CHARS] + "...")


def parse_listen(text: str, name: str = flag_name("listen")) -> tuple[str, int]:
    """HOST:PORT (HOST may be [IPv6]) as (host, port); port 0 means any free port."""
    host, colon, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    well_formed = colon and host and "[" not in host and "]" not in host
    if not well_formed or not re.fullmatch(r"\d{1,5}", port) or int(port) > 65535:
        raise SettingError(
            f"{name} must be HOST:PORT with a port from 0 to 65535 (0 = any free port), "
            f"got {quoted(text)}"
        )
    return host, int(port)


def hide_password(url: str) -> str:
    """`url` with any password masked, also when it does not parse."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def check_database_url(text: str, name: str) -> str:
    """`text` when it is a URL of a store Tally runs on."""
    try:
        url: URL = make_url(text)
    except (ArgumentError, ValueError):
        raise SettingError(
            f"{name} is not a database URL (expected {DATABASE_EXAMPLE}), "
            f"got {quoted(hide_password(text))}"
        ) from None
    if url.drivername not in DATABASE_DRIVERS:
        raise SettingError(
            f"{name} must be a PostgreSQL or SQLite URL ({DATABASE_EXAMPLE}), "
            f"got {quoted(url.render_as_string(hide_password=True))}"
        )
    return text


def check_log_level(text: str, name: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise SettingError(f"{name} must be one of {', '.join(LOG_LEVELS)}, got {quoted(text)}")
    return level


def check_log_format(text: str, name: str) -> str:
    log_format = text.strip().lower()
    if log_format not in LOG_FORMATS:
        raise SettingError(f"{name} must be one of {', '.join(LOG_FORMATS)}, got {quoted(text)}")
    return log_format


def check_token_secret(secret: str, name: str) -> str:
    """`secret` (surrounding whitespace removed, as a file's last newline) when it is long
    enough. The message never quotes it."""
    secret = secret.strip()
    if len(secret) < MIN_TOKEN_SECRET_CHARS:
        raise SettingError(
            f"{name} must be at least {MIN_TOKEN_SECRET_CHARS} characters "
            f"(e.g. `{TOKEN_SECRET_EXAMPLE}`), got {len(secret)}"
        )
    return secret


def read_token_secret_file(path: str, name: str) -> str:
    """The token secret in the file at `path`."""
    try:
        text = Path(path.strip()).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise SettingError(f"{name}: cannot read {quoted(path)}: {reason}") from None
    return check_token_secret(text, f"the file {name} names")


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
    # Of those, the most one caller may hold (an API key; a user token with its user),
    # so that one caller's followers cannot refuse everyone else's streams.
    max_streams_per_key: int = 16
    # Streams of the services that need no key (health Watch, server reflection) open at
    # once per process: a budget and threads of their own, beyond the two above.
    max_open_streams: int = 16
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
    # Reverses naming an entry by id alone, per second (and burst) of one API key, per
    # process, where that look-up asks every shard (Citus; 0 = no limit). Each takes a
    # token before the look-up, found or not; naming the user takes none.
    entry_lookup_limit_per_second: float = 5.0
    entry_lookup_limit_burst: int = 10
    # HOST:PORT where Prometheus metrics are served at /metrics ("" = not served).
    metrics_listen: str = ""
    # Log lines on standard error: "text" for people, "json" (one object a line) for
    # log collectors (server/logs.py).
    log_format: str = "text"
    # The server secret that user tokens are signed under, with each key's stored secret
    # as its salt (server/domain/tokens.py): a copy of the store alone cannot sign tokens.
    # "" = none: tokens are signed with the stored secrets, as before. From
    # TALLY_TOKEN_SECRET or the file --token-secret-file / TALLY_TOKEN_SECRET_FILE names
    # (never a flag of its own: a command line is visible to every user of the machine).
    token_secret: str = field(default="", repr=False)

    @property
    def pool_size(self) -> int:
        """Database connections per process (and as many more at peaks): one writer, and
        readers, whose transactions are short, so far fewer than the threads."""
        return min(self.threads, 16)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **flags: object) -> Settings:
        """Flags that are given (not None) win over the environment, which wins over
        defaults; an empty variable counts as unset. Raises SettingError on a bad value."""
        env = os.environ if env is None else env
        given = {name: value for name, value in flags.items() if value is not None}

        def raw(setting: str) -> tuple[str, object] | None:
            """(where it came from, the value given), or None when not given."""
            if setting in given:
                return flag_name(setting), given.pop(setting)
            text = env.get(env_name(setting), "")
            return (env_name(setting), text) if text.strip() else None

        values: dict[str, object] = {}
        for setting, accepts in NUMBERS.items():
            if (found := raw(setting)) is not None:
                values[setting] = accepts.read(*found)
        if (found := raw("listen")) is not None:
            where, listen = found
            parse_listen(str(listen), where)
            values["listen"] = str(listen).strip()
        if (found := raw("database_url")) is not None:
            where, url = found
            values["database_url"] = check_database_url(str(url), where)
        else:
            values["database_url"] = default_database_url()
        if (found := raw("log_level")) is not None:
            values["log_level"] = check_log_level(str(found[1]), found[0])
        if (found := raw("metrics_listen")) is not None:
            where, metrics_listen = found
            parse_listen(str(metrics_listen), where)
            values["metrics_listen"] = str(metrics_listen).strip()
        if (found := raw("log_format")) is not None:
            values["log_format"] = check_log_format(str(found[1]), found[0])
        secret_file = raw("token_secret_file")
        secret_text = env.get(env_name("token_secret"), "")
        if secret_file is not None and secret_text.strip():
            raise SettingError(
                f"{env_name('token_secret')} and {secret_file[0]} are both set; set one"
            )
        if secret_file is not None:
            values["token_secret"] = read_token_secret_file(str(secret_file[1]), secret_file[0])
        elif secret_text.strip():
            values["token_secret"] = check_token_secret(secret_text, env_name("token_secret"))
        values.update(given)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        """What holds between settings."""
        if self.max_streams_per_key > self.max_streams:
            raise SettingError(
                f"{flag_name('max_streams_per_key')} ({env_name('max_streams_per_key')}) must "
                f"be at most the stream budget {env_name('max_streams')}, {self.max_streams}; "
                f"got {self.max_streams_per_key}"
            )
        if self.workers > 1 and parse_listen(self.listen)[1] == 0:
            raise SettingError(
                f"{self.workers} workers ({flag_name('workers')}, {env_name('workers')}) need "
                f"a fixed port to share; the listen address {self.listen} asks for any free port"
            )

    @property
    def listen_address(self) -> tuple[str, int]:
        """(host, port) of `listen`."""
        return parse_listen(self.listen)
