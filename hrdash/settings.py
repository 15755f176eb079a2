"""The one settings table: every setting is an ``HRDASH_*`` environment variable and a CLI flag.

``SETTINGS`` is the single source of truth. The CLI builds its options from it, the README's
settings table is checked against it by a test, and child processes (simulator, bridge) receive
their configuration through :meth:`Settings.to_env`.

Precedence: CLI flag > environment variable > default. Every value is validated here; a bad value
raises :class:`SettingError`, whose message is one line naming the setting and what it accepts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

PREFIX = "HRDASH_"
MAX_SIMULATOR_PATIENTS = 256


class SettingError(ValueError):
    """A setting has a value we cannot use. ``str(err)`` is a one-line message for the user."""


class PortInUseError(SettingError):
    """A port we must listen on is taken. ``str(err)`` names the port and its setting."""

    @classmethod
    def for_port(cls, host: str, port: int, setting: str) -> PortInUseError:
        return cls(f"port {port} on {host} is already in use (set {setting} to another port)")


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer {lo}-{hi}, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected an integer {lo}-{hi}, got {value}")
        return value

    return parse


def _float_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number {lo:g}-{hi:g}, got {raw!r}") from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ValueError(f"expected a number {lo:g}-{hi:g}, got {raw!r}")
        return value

    return parse


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(lo_s: float, hi_s: float) -> Callable[[str], float]:
    """A duration as a number and a unit (``90s``, ``30m``, ``72h``, ``30d``; a bare number is
    seconds), in seconds."""

    def parse(raw: str) -> float:
        text = raw.strip().lower()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", text)
        if match is None:
            raise ValueError(f"expected a duration such as 90s, 30m, 72h or 30d, got {raw!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
        if not lo_s <= seconds <= hi_s:
            raise ValueError(
                f"expected a duration from {_show_duration(lo_s)} to {_show_duration(hi_s)}, "
                f"got {raw!r}"
            )
        return seconds

    return parse


def _show_duration(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        size = _DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _db_path(raw: str) -> str:
    text = raw.strip()
    if not text:
        raise ValueError("expected a file path or :memory:, got an empty value")
    return text


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}; got {raw!r}")
        return value

    return parse


def ws_url(raw: str) -> str:
    """A ws:// or wss:// URL with a host name, stripped. Raises ValueError."""
    value = raw.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"expected a ws:// or wss:// URL, got {raw!r}")
    return value


def _ws_url(raw: str) -> str:
    if not raw.strip():
        return ""
    try:
        return ws_url(raw)
    except ValueError:
        raise ValueError(
            f"expected a ws:// or wss:// URL (or empty for the simulator), got {raw!r}"
        ) from None


def _public_ws_url(raw: str) -> str:
    value = raw.strip()
    if not value or value.startswith("/"):
        return value
    return _ws_url(value)


def _host(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() for c in value) or "/" in value:
        raise ValueError(f"expected a host name or IP address, got {raw!r}")
    return value


def _origins(raw: str) -> tuple[str, ...]:
    items = tuple(item.strip().rstrip("/") for item in raw.split(",") if item.strip())
    for item in items:
        if item == "*":
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise ValueError(
                "expected a comma-separated list of origins such as "
                f"http://example.org:8050 (or *), got {item!r}"
            )
    return items


def _optional_int(raw: str) -> int | None:
    value = raw.strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected an integer (or empty for random), got {raw!r}") from None


def _dotted_path(raw: str) -> str:
    value = raw.strip()
    if value and any(not part for part in value.split(".")):
        raise ValueError(f"expected a dotted path such as data.hr or readings.0.value, got {raw!r}")
    return value


def _text(raw: str) -> str:
    return raw.strip()


def _raw_text(raw: str) -> str:
    return raw


def pair(name: str, value: str) -> tuple[str, str]:
    """One path parameter (or query parameter): a non-empty name and its value, stripped.
    Raises ValueError."""
    if not name.strip():
        raise ValueError(f"expected a non-empty name, got {name!r}")
    return name.strip(), value.strip()


def _pairs(raw: str) -> tuple[tuple[str, str], ...]:
    """``a=1,b=2`` → (("a", "1"), ("b", "2"))."""
    out = []
    for item in raw.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected name=value pairs separated by commas, got {item.strip()!r}")
        out.append(pair(name, value))
    return tuple(out)


def _query(raw: str) -> str:
    value = raw.strip().lstrip("?")
    for item in value.split("&"):
        if item and "=" not in item:
            raise ValueError(f"expected name=value pairs separated by &, got {item!r}")
    return value


def _headers(raw: str) -> tuple[tuple[str, str], ...]:
    """A JSON object, or ``Name: value`` entries, one per line."""
    text = raw.strip()
    if not text:
        return ()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            raise ValueError("expected a JSON object of header names to values") from None
        if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
            raise ValueError("expected a JSON object of header names to string values")
        items = list(obj.items())
    else:
        items = []
        for line in text.splitlines():
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise ValueError("expected 'Name: value' lines (or a JSON object)")
            items.append((name.strip(), value.strip()))
    return tuple(header(name, value) for name, value in items)


def header(name: str, value: str) -> tuple[str, str]:
    """One request header: a name of letters, digits and dashes, a value on one line.
    Raises ValueError (naming the header, never its value: values are secret)."""
    if not name.replace("-", "").isalnum() or "\n" in value or "\r" in value:
        raise ValueError(f"invalid header {name!r}")
    return name, value


def _names(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _file(raw: str) -> str:
    value = raw.strip()
    if value and not os.path.isfile(value):
        raise ValueError(f"no such file: {value!r}")
    return value


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _hook(raw: str) -> str:
    value = raw.strip()
    if value:
        module, sep, func = value.partition(":")
        if not sep or not module or not func.isidentifier():
            raise ValueError(f"expected package.module:function, got {raw!r}")
    return value


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str  # attribute on Settings, and the flag (--name-with-dashes)
    default: str  # the raw default, parsed like any user value
    parse: Callable[[str], Any]
    help: str
    scopes: frozenset[str] = frozenset({"run", "bridge"})

    @property
    def env(self) -> str:
        return PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


_ALL = frozenset({"run", "bridge", "simulate"})
_SIM = frozenset({"run", "simulate"})
_WEB = frozenset({"run"})
_UPSTREAM = frozenset({"run", "bridge", "probe"})

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "upstream_url",
        "",
        _ws_url,
        "The heart-rate service (ws:// or wss://). Empty: start the embedded simulator.",
    ),
    Setting(
        "sources",
        "",
        _text,
        "Sources file (TOML): one [[patient]] table per patient, for a station of several "
        "patients. Not together with HRDASH_UPSTREAM_URL. Empty: HRDASH_UPSTREAM_URL, or the "
        "simulator's patients.",
    ),
    Setting(
        "path_params",
        "",
        _pairs,
        "Values for {name} placeholders in the upstream URL, e.g. patient=7,bed=3.",
        _UPSTREAM,
    ),
    Setting(
        "query", "", _query, "Query parameters added to the upstream URL, e.g. a=1&b=2.", _UPSTREAM
    ),
    Setting(
        "send",
        "",
        _raw_text,
        "Message (text or JSON) sent to the service after every (re)connect.",
        _UPSTREAM,
    ),
    Setting(
        "headers",
        "",
        _headers,
        "Extra request headers for the upstream handshake: a JSON object or 'Name: value' "
        "lines. Values are secret: never logged or shown.",
        _UPSTREAM,
    ),
    Setting(
        "subprotocols", "", _names, "WebSocket subprotocols to offer, comma-separated.", _UPSTREAM
    ),
    Setting(
        "ca_file", "", _file, "CA bundle (PEM) to verify the service's TLS certificate.", _UPSTREAM
    ),
    Setting(
        "insecure",
        "false",
        _bool,
        "Skip TLS certificate verification (warns at start). For testing only.",
        _UPSTREAM,
    ),
    Setting(
        "transform",
        "",
        _hook,
        "Python hook package.module:function that turns each parsed frame into a reading "
        "dict, a list of them, or None to skip.",
    ),
    Setting("host", "127.0.0.1", _host, "Address the Dash server listens on.", _WEB),
    Setting("port", "8050", _int_range(1, 65535), "Port of the Dash server.", _WEB),
    Setting("bridge_host", "127.0.0.1", _host, "Address the bridge listens on for browsers."),
    Setting("bridge_port", "8765", _int_range(1, 65535), "Port of the bridge (/ws, /healthz)."),
    Setting(
        "simulator_port",
        "8766",
        _int_range(1, 65535),
        "Port of the embedded simulator (it listens on 127.0.0.1).",
        _ALL,
    ),
    Setting(
        "simulator_period",
        "0.5",
        _float_range(0.001, 60),
        "Seconds between two simulated readings.",
        _SIM,
    ),
    Setting(
        "simulator_seed",
        "",
        _optional_int,
        "Seed of the simulator's random generator (empty: a new patient every run).",
        _SIM,
    ),
    Setting(
        "simulator_patients",
        "1",
        _int_range(1, MAX_SIMULATOR_PATIENTS),
        "Patients the embedded simulator serves, bed-01 … bed-NN, at /patients/<id> (/ is "
        "bed-01). Each has its own seed, derived from HRDASH_SIMULATOR_SEED and its index.",
        _SIM,
    ),
    Setting(
        "window",
        "20",
        _int_range(1, 1000),
        "Readings shown in the table, the chart and the min/avg/max cards.",
        _ALL - {"simulate"},
    ),
    Setting(
        "order",
        "newest-last",
        _choice("newest-last", "newest-first"),
        "Table order: newest reading appended last, or shown first.",
        _WEB,
    ),
    Setting(
        "buffer",
        "3600",
        _int_range(1, 1_000_000),
        "Readings the bridge keeps so that viewers can resume (3600 = 30 min at 2 Hz).",
    ),
    Setting(
        "public_ws_url",
        "",
        _public_ws_url,
        "Bridge URL as the browser must use it (behind a reverse proxy), e.g. wss://host/ws or "
        "/ws (a path is resolved by the browser against the page's own address: scheme, host "
        "and port). Empty: ws://<the page's host>:<bridge port>/ws.",
        _WEB,
    ),
    Setting(
        "allowed_origins",
        "",
        _origins,
        "Comma-separated origins the bridge accepts, each exactly as the browser sends it: "
        "scheme, host and port (https://monitor.example.org:8443); * for any. Empty: the Dash "
        "server's own "
        "origins, http://127.0.0.1:PORT and http://localhost:PORT.",
    ),
    Setting(
        "value_field",
        "",
        _dotted_path,
        "Dotted path of the heart rate in upstream frames. Empty: value.",
    ),
    Setting(
        "time_field",
        "",
        _dotted_path,
        "Dotted path of the time (Unix s/ms or ISO-8601) in upstream frames. Empty: time; a "
        "frame without it gets its receive time.",
    ),
    Setting(
        "source_name",
        "",
        _text,
        "Name of the source shown in the page header. Empty: derived from the URL.",
    ),
    Setting(
        "stale_after",
        "2.0",
        _float_range(0.1, 3600),
        "Seconds without a reading after which the page and the station mark the value as stale.",
    ),
    Setting(
        "no_signal_after",
        "10",
        _float_range(0.1, 3600),
        "Seconds without a reading before the `no_signal` technical alarm (and not connected "
        "to the service before `source_down`).",
    ),
    Setting(
        "ping_interval",
        "10",
        _float_range(0.1, 3600),
        "Seconds between keepalive pings, upstream and to viewers.",
    ),
    Setting(
        "ping_timeout",
        "10",
        _float_range(0.1, 3600),
        "Seconds to wait for a pong before a connection counts as dead.",
    ),
    Setting(
        "upstream_silence",
        "10",
        _float_range(0.1, 3600),
        "Seconds without any upstream frame after which the bridge reconnects.",
    ),
    Setting(
        "viewer_buffer",
        "262144",
        _int_range(1024, 1 << 30),
        "Bytes a viewer may leave unread before the bridge drops it (it resumes on reconnect).",
    ),
    Setting(
        "db",
        "hrdash.db",
        _db_path,
        "SQLite file of the history (every reading, minute trends), relative to the working "
        "directory; :memory: keeps nothing (no trends or exports beyond the bridge's buffer).",
    ),
    Setting(
        "retention",
        "72h",
        _duration(3600, 366 * 86400),
        "How long raw readings are kept in the history (90m, 72h, 30d...; 1h to 366d).",
    ),
    Setting(
        "trend_retention",
        "30d",
        _duration(3600, 3660 * 86400),
        "How long minute trends are kept (at least HRDASH_RETENTION; 1h to 3660d).",
    ),
    Setting(
        "redis_url",
        "",
        _text,
        "Redis for the fan-out (redis://, rediss:// or unix://). Empty: one bridge process.",
    ),
    Setting(
        "log_level",
        "info",
        _choice("debug", "info", "warning", "error"),
        "Logging level of the bridge, simulator and app.",
        _ALL,
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def _default(name: str) -> Any:
    """The parsed default of setting ``name``: the table's raw default, read like a user value."""
    setting = BY_NAME[name]
    return setting.parse(setting.default)


@dataclass(frozen=True)
class Settings:
    """Validated settings. Build with :meth:`load`; every field is documented in ``SETTINGS``,
    and its default is that row's default (written once, in the table)."""

    upstream_url: str = _default("upstream_url")
    sources: str = _default("sources")
    path_params: tuple[tuple[str, str], ...] = _default("path_params")
    query: str = _default("query")
    send: str = _default("send")
    headers: tuple[tuple[str, str], ...] = _default("headers")
    subprotocols: tuple[str, ...] = _default("subprotocols")
    ca_file: str = _default("ca_file")
    insecure: bool = _default("insecure")
    transform: str = _default("transform")
    host: str = _default("host")
    port: int = _default("port")
    bridge_host: str = _default("bridge_host")
    bridge_port: int = _default("bridge_port")
    simulator_port: int = _default("simulator_port")
    simulator_period: float = _default("simulator_period")
    simulator_seed: int | None = _default("simulator_seed")
    simulator_patients: int = _default("simulator_patients")
    window: int = _default("window")
    order: str = _default("order")
    buffer: int = _default("buffer")
    public_ws_url: str = _default("public_ws_url")
    allowed_origins: tuple[str, ...] = _default("allowed_origins")
    value_field: str = _default("value_field")
    time_field: str = _default("time_field")
    source_name: str = _default("source_name")
    stale_after: float = _default("stale_after")
    no_signal_after: float = _default("no_signal_after")
    ping_interval: float = _default("ping_interval")
    ping_timeout: float = _default("ping_timeout")
    upstream_silence: float = _default("upstream_silence")
    viewer_buffer: int = _default("viewer_buffer")
    db: str = _default("db")
    retention: float = _default("retention")
    trend_retention: float = _default("trend_retention")
    redis_url: str = _default("redis_url")
    log_level: str = _default("log_level")

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Read settings from ``env`` (default ``os.environ``) and ``overrides`` (CLI flags).

        An override of ``None`` means "not given". Raises :class:`SettingError`.
        """
        env = os.environ if env is None else env
        overrides = overrides or {}
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            given = overrides.get(setting.name)
            if given is not None:
                raw, origin = str(given), setting.flag
            elif setting.env in env:
                raw, origin = env[setting.env], setting.env
            else:
                raw, origin = setting.default, f"default of {setting.env}"
            try:
                values[setting.name] = setting.parse(raw)
            except ValueError as exc:
                raise SettingError(f"{origin}: {exc}") from None
        settings = cls(**values)
        settings._check_consistency()
        return settings

    def _check_consistency(self) -> None:
        if self.sources and self.upstream_url:
            raise SettingError(
                "HRDASH_SOURCES and HRDASH_UPSTREAM_URL are both set: use one (the sources file "
                "for several patients, the URL for one)"
            )
        if self.upstream_url:
            try:
                check_path_params(self.upstream_url, self.path_params)
            except ValueError as exc:
                raise SettingError(f"HRDASH_PATH_PARAMS: {exc}") from None
        if self.buffer < self.window:
            raise SettingError(
                f"HRDASH_BUFFER ({self.buffer}) must be at least HRDASH_WINDOW ({self.window})"
            )
        if self.trend_retention < self.retention:
            raise SettingError(
                f"HRDASH_TREND_RETENTION ({_show_duration(self.trend_retention)}) must be at "
                f"least HRDASH_RETENTION ({_show_duration(self.retention)})"
            )
        ports = {"HRDASH_PORT": self.port, "HRDASH_BRIDGE_PORT": self.bridge_port}
        if self.uses_simulator:
            ports["HRDASH_SIMULATOR_PORT"] = self.simulator_port
        seen: dict[int, str] = {}
        for name, port in ports.items():
            if port in seen:
                raise SettingError(f"{name} and {seen[port]} are both {port}; use different ports")
            seen[port] = name

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def effective_upstream_url(self) -> str:
        """The URL the bridge connects to: the configured one with its path parameters filled in
        and the extra query appended, or the embedded simulator."""
        if not self.upstream_url:
            return f"ws://127.0.0.1:{self.simulator_port}/"
        url = self.upstream_url
        for name, value in self.path_params:
            url = url.replace("{" + name + "}", quote(value, safe=""))
        if self.query:
            parts = urlsplit(url)
            query = f"{parts.query}&{self.query}" if parts.query else self.query
            url = urlunsplit(parts._replace(query=query))
        return url

    @property
    def uses_simulator(self) -> bool:
        """True when neither a sources file nor an upstream URL is set."""
        return not self.upstream_url and not self.sources

    @property
    def effective_origins(self) -> tuple[str, ...]:
        """Origins the bridge accepts; ``("*",)`` means any."""
        if self.allowed_origins:
            return self.allowed_origins
        return (f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}")

    @property
    def display_source(self) -> str:
        """Source name for people: never contains credentials or query strings."""
        if self.source_name:
            return self.source_name
        if self.uses_simulator:
            return "Embedded simulator"
        if not self.upstream_url:
            return f"Sources file {self.sources}"
        return redact_url(self.effective_upstream_url)

    def to_env(self) -> dict[str, str]:
        """Every setting as ``HRDASH_*`` variables, for child processes."""
        out: dict[str, str] = {}
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if value is None:
                text = ""
            elif isinstance(value, bool):
                text = "true" if value else "false"
            elif setting.name == "headers":
                text = json.dumps(dict(value))
            elif isinstance(value, tuple) and value and isinstance(value[0], tuple):
                text = ",".join(f"{k}={v}" for k, v in value)
            elif isinstance(value, tuple):
                text = ",".join(value)
            else:
                text = str(value)
            out[setting.env] = text
        return out


def check_path_params(url: str, path_params: tuple[tuple[str, str], ...]) -> None:
    """Every ``{name}`` placeholder of ``url`` has a value, and every value a placeholder.
    Raises ValueError."""
    placeholders = set(re.findall(r"{([^{}]*)}", url))
    given = {name for name, _ in path_params}
    if placeholders - given:
        missing = ", ".join(sorted(placeholders - given))
        raise ValueError(f"the upstream URL needs a value for {missing}")
    if given - placeholders:
        extra = ", ".join(sorted(given - placeholders))
        raise ValueError(f"the upstream URL has no {{{extra}}} placeholder")


def url_host(host: str) -> str:
    """A listening address as a client on this machine puts it in a URL: wildcard addresses
    become 127.0.0.1 and IPv6 literals get brackets."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def redact_url(url: str) -> str:
    """``url`` without userinfo and with every query value replaced by ``***``."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    if parts.username or parts.password:
        netloc = "***@" + netloc
    query = ""
    if parts.query:
        keys = [pair.split("=", 1)[0] for pair in parts.query.split("&") if pair]
        query = "?" + "&".join(f"{key}=***" for key in keys)
    return f"{parts.scheme}://{netloc}{parts.path}{query}"
