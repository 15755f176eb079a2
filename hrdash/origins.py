"""Which browser origins the bridge accepts, and a bounded record of the ones it refused.

Pure: no I/O and no clock of its own (the caller passes ``now``), like
:class:`hrdash.readings.RejectCounter`. The bridge checks the ``Origin`` header of each
WebSocket handshake with :func:`origin_allowed`, answers 403 when it fails, and counts the
refusal in a :class:`RefusedOrigins`, which also decides when the refusal may be logged.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

ORIGIN_LOG_EVERY = 60.0  # seconds between two log lines for the same refused origin
ORIGIN_TRACKED_MAX = 64  # distinct refused origins counted by name; more go to "other"
ORIGIN_CHARS = 200  # a refused Origin header is kept (and logged) cut to this many characters
OTHER = "(other)"  # the key under which origins beyond ORIGIN_TRACKED_MAX are counted and logged


DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_origin(value: str) -> str:
    """``value`` (an entry of HRDASH_ALLOWED_ORIGINS) written as a browser writes an Origin:
    scheme and host in lower case, the port only when it is not the scheme's default
    (``https://Monitor.example.org:443`` → ``https://monitor.example.org``). ``*`` and values
    that do not parse are returned unchanged."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return value
    if value == "*" or not parts.scheme or not parts.hostname:
        return value
    scheme = parts.scheme.lower()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        host += f":{port}"
    return f"{scheme}://{host}"


def origin_allowed(origin: str | None, allowed: Collection[str]) -> bool:
    """Whether a handshake with this ``Origin`` header may open a viewer connection.

    No header (``None``: not a browser, e.g. a script or a health probe) is accepted; ``*`` in
    ``allowed`` accepts any origin; otherwise the header must equal one entry exactly, as
    browsers send it: ``scheme://host`` plus ``:port`` unless it is the scheme's default (pass
    the entries through :func:`canonical_origin`).
    """
    return origin is None or "*" in allowed or origin in allowed


class RefusedOrigins:
    """Counts refused origins and decides when each may be logged again.

    Each origin is logged at most once per ``log_every`` seconds. Memory is bounded: at most
    ``max_tracked`` origins are counted by name, each cut to :data:`ORIGIN_CHARS` characters;
    refusals of any further origin are counted (and rate-limited) together under
    :data:`OTHER`.
    """

    def __init__(
        self, log_every: float = ORIGIN_LOG_EVERY, max_tracked: int = ORIGIN_TRACKED_MAX
    ) -> None:
        self.log_every = log_every
        self.max_tracked = max_tracked
        self.total = 0
        self.counts: dict[str, int] = {}  # by origin, plus OTHER once the map is full
        self._suppressed: dict[str, int] = {}
        self._last_logged: dict[str, float] = {}

    def key(self, origin: str) -> str:
        """The name a refusal of ``origin`` is counted under."""
        origin = origin[:ORIGIN_CHARS]
        tracked = len(self.counts) - (OTHER in self.counts)
        if origin in self.counts or tracked < self.max_tracked:
            return origin
        return OTHER

    def add(self, origin: str, now: float) -> int | None:
        """Count one refusal of ``origin`` at ``now`` (seconds, any monotonic clock).

        Returns how many refusals of it were not logged since its last log line if this one
        should be logged now, else ``None``."""
        key = self.key(origin)
        self.total += 1
        self.counts[key] = self.counts.get(key, 0) + 1
        last = self._last_logged.get(key)
        if last is not None and now - last < self.log_every:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last_logged[key] = now
        return self._suppressed.pop(key, 0)

    def as_dict(self) -> dict[str, Any]:
        """What ``/healthz`` shows: the total and the counts by origin."""
        return {"total": self.total, "by_origin": dict(sorted(self.counts.items()))}
