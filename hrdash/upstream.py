"""What the bridge and ``hrdash probe`` share about the upstream service: how to connect (TLS,
headers, subprotocols, the message sent after connecting) and how to read its frames (the
configured or inferred field mapping, and the optional transform hook).
"""

from __future__ import annotations

import importlib
import logging
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hrdash.inference import Inference, infer
from hrdash.readings import (
    DEFAULT_TIME_FIELD,
    FieldMapping,
    Reading,
    Rejected,
    decode,
    extract,
    parse_readings,
)
from hrdash.settings import SettingError, Settings

log = logging.getLogger("hrdash.upstream")

UPSTREAM_MAX_SIZE = 64 * 1024  # bytes; a larger frame closes the connection (counted too_large)
UPSTREAM_OPEN_TIMEOUT = 5.0  # seconds for TCP + TLS + WebSocket handshake
UPSTREAM_MAX_QUEUE = 64  # frames buffered by websockets before it stops reading the socket
UPSTREAM_CLOSE_TIMEOUT = 2.0  # seconds to wait for a dead service's close frame before dropping
INFER_FRAMES = 3  # frames looked at before choosing a mapping, when none is configured
INFER_WAIT = 1.5  # seconds: choose with fewer frames after this long

Transform = Callable[[Any], Any]


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS for wss:// URLs: verified against the system CAs or ``ca_file``; ``insecure`` turns
    verification off (and says so)."""
    if not settings.effective_upstream_url.startswith("wss://"):
        return None
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    if settings.insecure:
        log.warning("TLS certificate verification is OFF (HRDASH_INSECURE): for testing only")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect_url(settings: Settings) -> str:
    """The URL to connect to. When ``HRDASH_HEADERS`` carries an Authorization header, the URL's
    user:password is left out, so that the service receives one Authorization, ours."""
    url = settings.effective_upstream_url
    has_auth = any(name.lower() == "authorization" for name, _ in settings.headers)
    parts = urlsplit(url)
    if has_auth and (parts.username or parts.password):
        url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


def connect_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``websockets.asyncio.client.connect`` (besides the URL)."""
    options: dict[str, Any] = {
        "open_timeout": UPSTREAM_OPEN_TIMEOUT,
        "close_timeout": UPSTREAM_CLOSE_TIMEOUT,
        "ping_interval": settings.ping_interval,
        "ping_timeout": settings.ping_timeout,
        "max_size": UPSTREAM_MAX_SIZE,
        "max_queue": UPSTREAM_MAX_QUEUE,
        "user_agent_header": "hrdash",
    }
    if settings.headers:
        options["additional_headers"] = list(settings.headers)
    if settings.subprotocols:
        options["subprotocols"] = list(settings.subprotocols)
    context = ssl_context(settings)
    if context is not None:
        options["ssl"] = context
    return options


def load_transform(spec: str) -> Transform | None:
    """Import ``package.module:function``. Raises :class:`SettingError` with one line."""
    if not spec:
        return None
    module_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise SettingError(
            f"HRDASH_TRANSFORM: cannot import {module_name!r}: {_describe(exc)}"
        ) from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise SettingError(f"HRDASH_TRANSFORM: {module_name!r} has no function {func_name!r}")
    return func


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


class FrameReader:
    """Turns upstream frames into readings and rejections.

    With ``value_field`` set, frames are read with that mapping from the first one. Without it,
    a first frame that the defaults ``value``/``time`` read without complaint settles the mapping
    at once (the reference service's shape costs no delay). Otherwise the first ``INFER_FRAMES``
    frames (or those received within ``INFER_WAIT`` seconds) are held, the mapping is inferred
    from them exactly as ``hrdash probe`` does, and the held frames are then read with it; when
    nothing can be inferred, the defaults are used and the frames are rejected as they come.
    With a transform hook, each decoded frame goes through it instead (see README).
    """

    def __init__(
        self, value_field: str = "", time_field: str = "", transform: Transform | None = None
    ) -> None:
        self.time_field = time_field
        self.transform = transform
        self.inference: Inference | None = None
        self.mapping: FieldMapping | None = None
        if value_field or transform is not None:
            self.mapping = FieldMapping.from_settings(value_field, time_field)
        self._held: list[tuple[str | bytes, int]] = []
        self._held_since = 0.0
        self._defaulted = False

    @property
    def deciding(self) -> bool:
        return self.mapping is None

    def describe(self) -> dict[str, Any]:
        """The mapping in use, for status frames and logs."""
        if self.mapping is None:
            return {"value": None, "time": None, "inferred": True, "confidence": "pending"}
        inferred = self.inference is not None
        if self.inference is not None:
            confidence = self.inference.confidence
        else:
            confidence = "default" if self._defaulted else "configured"
        return {
            "value": self.mapping.value,
            "time": self.mapping.time,
            "inferred": inferred,
            "confidence": confidence,
        }

    def feed(self, data: str | bytes, received_ms: int, now: float) -> list[Reading | Rejected]:
        """Read one frame. ``now`` is a monotonic clock reading (seconds)."""
        if self.mapping is not None:
            return self._read(data, received_ms)
        if not self._held:
            default = FieldMapping()
            results = parse_readings(data, default, received_ms)
            if results and all(isinstance(r, Reading) for r in results):
                self.mapping, self._defaulted = default, True
                return list(results)
            self._held_since = now
        self._held.append((data, received_ms))
        if len(self._held) >= INFER_FRAMES:
            return self.decide()
        return self.due(now)

    def due(self, now: float) -> list[Reading | Rejected]:
        """Decide with what is held once ``INFER_WAIT`` has passed (call now and then)."""
        if self.mapping is None and self._held and now - self._held_since >= INFER_WAIT:
            return self.decide()
        return []

    def decide(self) -> list[Reading | Rejected]:
        """Infer the mapping from the held frames, then read them with it."""
        decoded = [decode(data) for data, _ in self._held]
        self.inference = infer([obj for obj in decoded if not isinstance(obj, Rejected)])
        value = self.inference.value_path or ""
        time_field = self.time_field or self.inference.time_path or DEFAULT_TIME_FIELD
        self.mapping = FieldMapping.from_settings(value, time_field)
        held, self._held = self._held, []
        out: list[Reading | Rejected] = []
        for data, received_ms in held:
            out.extend(self._read(data, received_ms))
        return out

    def _read(self, data: str | bytes, received_ms: int) -> list[Reading | Rejected]:
        assert self.mapping is not None
        if self.transform is None:
            return parse_readings(data, self.mapping, received_ms)
        obj = decode(data)
        if isinstance(obj, Rejected):
            if obj.reason != "not_json":
                return [obj]
            obj = data  # text that is not JSON goes to the hook as a string
        try:
            result = self.transform(obj)
        except Exception as exc:
            return [Rejected("transform_error", f"the transform raised {_describe(exc)}")]
        if result is None or result == []:
            return [Rejected("transform_skipped", f"the transform returned {result!r}")]
        items = result if isinstance(result, list) else [result]
        out: list[Reading | Rejected] = []
        for item in items:
            if not isinstance(item, dict):
                kind = type(item).__name__
                out.append(Rejected("transform_error", f"the transform returned a {kind}"))
                continue
            value_key = "bpm" if "bpm" in item else "value"
            out.append(extract(item, FieldMapping(value_key, DEFAULT_TIME_FIELD), received_ms))
        return out
