"""One patient's upstream: connect, reconnect, read, count. Knows nothing about viewers.

A :class:`PatientSource` connects to its patient's service with websockets' reconnect iterator,
using our own backoff (first retry within 0.5 s, doubling with jitter, capped at
``RECONNECT_CAP``), with that patient's own settings (``settings.replace(**source.
upstream_settings())``: URL, headers, TLS, the message sent after every connect, mapping,
transform). Every frame goes through its own :class:`hrdash.upstream.FrameReader` (the configured
or inferred mapping, or the transform hook, over the pure :mod:`hrdash.readings`); accepted
readings go to the patient's :class:`hrdash.hub.PatientHub`, which gives them their ``seq``;
rejected frames are counted by reason and logged at most once per reason per 10 s.

It tells whoever serves the readings through two callbacks, both called with the source:
``on_readings`` when readings were accepted into the hub (with those readings, in order: the
edge then sends them out, the recorder keeps them), and ``on_change`` when the upstream state
(``connecting`` / ``live`` / ``down``, since when, why) or the mapping changed. A service that is
down affects only its own source.

It also keeps what the Source panel shows: counters (``frames``, ``upstream_connects``,
``upstream_failures``), rejections by reason, the last raw frame and the last rejected one, all
bounded and never a secret (:meth:`source_detail`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Generator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hrdash.hub import PatientHub, UpstreamState
from hrdash.readings import Reading, RejectCounter, Rejected
from hrdash.settings import Settings, redact_url
from hrdash.upstream import INFER_WAIT, FrameReader, connect_options, connect_url, load_transform

__all__ = ["PatientSource", "describe_error", "reconnect_delays"]

log = logging.getLogger("hrdash.ingest")

# Upstream connection limits (UPSTREAM_MAX_SIZE etc.) live in hrdash.upstream.
RECONNECT_FIRST = 0.5  # seconds: the first retry comes within this (jittered down to half)
RECONNECT_FACTOR = 2.0
RECONNECT_CAP = 10.0  # seconds between attempts at most
SHORT_CONNECTION = 2.0  # seconds: a connection that dies sooner is followed by a backoff pause
REJECT_LOG_EVERY = 10.0  # seconds between two log lines for the same rejection reason
LAST_FRAME_CHARS = 4096  # the Source panel shows at most this much of the last raw frame
LAST_REJECTED_CHARS = 1024
DECIDE_RETRY = 0.05  # seconds: look again when the mapping was not yet due

Callback = Callable[["PatientSource"], None]
ReadingsCallback = Callable[["PatientSource", list[Reading]], None]


def reconnect_delays(
    first: float = RECONNECT_FIRST,
    factor: float = RECONNECT_FACTOR,
    cap: float = RECONNECT_CAP,
    rng: random.Random | None = None,
) -> Generator[float]:
    """Capped exponential backoff with jitter: each delay is uniform in [d/2, d], d doubling."""
    rand = rng or random.Random()
    delay = first
    while True:
        yield rand.uniform(delay / 2, delay)
        delay = min(cap, delay * factor)


def describe_error(exc: BaseException) -> str:
    """A short, secret-free cause for a failed or lost upstream connection."""
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code} at the handshake"
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        if exc.sent is not None and exc.sent.code == 1009:
            return "frame larger than the 64 KiB limit"
        if rcvd is None:
            return "connection lost"
        reason = f": {rcvd.reason}" if rcvd.reason else ""
        return f"closed by the service (code {rcvd.code}{reason})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _ignore(source: PatientSource) -> None:
    pass


def _ignore_readings(source: PatientSource, readings: list[Reading]) -> None:
    pass


class PatientSource:
    """One patient's service → its hub. Run :meth:`run` as a task; cancel it to stop.

    ``settings`` are this patient's own (see :func:`hrdash.sources.source_settings`); ``clock``
    gives Unix seconds (acceptance times, upstream times), ``monotonic`` the clock of rejection
    logging and mapping inference. Raises :class:`~hrdash.settings.SettingError` when the
    transform hook cannot be loaded."""

    def __init__(
        self,
        patient: PatientHub,
        settings: Settings,
        *,
        on_readings: ReadingsCallback = _ignore_readings,
        on_change: Callback = _ignore,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.patient = patient
        self.id = patient.id
        self.name = patient.name
        self.settings = settings
        self.on_readings = on_readings
        self.on_change = on_change
        self.clock = clock
        self.monotonic = monotonic
        self.reader = FrameReader(
            settings.value_field, settings.time_field, load_transform(settings.transform)
        )
        self.counters: dict[str, int] = {
            "frames": 0,
            "upstream_connects": 0,
            "upstream_failures": 0,
        }
        self.rejects = RejectCounter(REJECT_LOG_EVERY)
        self.last_frame: str | None = None
        self.last_frame_at: int | None = None
        self.last_rejected_frame: str | None = None
        self.last_rejection: dict[str, Any] | None = None
        self.upstream = "connecting"
        self.upstream_since = self._now_ms()
        self.upstream_detail = ""
        self.live_since: float | None = None  # clock when the upstream last went live
        self._decide_handle: asyncio.TimerHandle | None = None

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def upstream_state(self) -> UpstreamState:
        """The upstream as the hub's station digest takes it."""
        return UpstreamState(self.upstream, self.upstream_detail, self.live_since)

    @property
    def shown_url(self) -> str:
        """The configured service URL as people may see it (redacted)."""
        return redact_url(self.settings.effective_upstream_url)

    # -- upstream --------------------------------------------------------------------------

    def _set_upstream(self, state: str, detail: str = "") -> None:
        if state == self.upstream and detail == self.upstream_detail:
            return
        if state != self.upstream:
            self.upstream_since = self._now_ms()
            self.live_since = self.clock() if state == "live" else None
        self.upstream, self.upstream_detail = state, detail
        self.on_change(self)

    def _retry(self, exc: Exception) -> Exception | None:
        """process_exception for the reconnect iterator: a monitor retries every failure."""
        self.counters["upstream_failures"] += 1
        cause = describe_error(exc)
        if self.upstream != "down" or self.upstream_detail != cause:
            log.warning("%s: upstream %s: %s; retrying", self.id, self.shown_url, cause)
        self._set_upstream("down", cause)
        return None

    async def run(self) -> None:
        """Connect, read and reconnect, until cancelled."""
        s = self.settings
        pause = reconnect_delays()
        if s.insecure:
            log.warning(
                "%s: HRDASH_INSECURE is set: the service's TLS certificate is not verified", self.id
            )
        quiet_logger = logging.getLogger("hrdash.ingest.reconnect")
        quiet_logger.setLevel(logging.WARNING)  # we log failures ourselves, once per cause
        try:
            async for ws in connect(
                connect_url(s),
                reconnect_delays=reconnect_delays,
                process_exception=self._retry,
                logger=quiet_logger,
                **connect_options(s),
            ):
                opened = time.monotonic()
                self.counters["upstream_connects"] += 1
                log.info("%s: upstream connected: %s", self.id, self.shown_url)
                if s.send:
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(s.send)  # the request body, after every (re)connect
                self._set_upstream("live")
                cause = await self._receive(ws)
                log.warning("%s: upstream lost: %s; reconnecting", self.id, cause)
                self._set_upstream("connecting", cause)
                if time.monotonic() - opened < SHORT_CONNECTION:
                    await asyncio.sleep(next(pause))  # accepts then drops: do not spin
                else:
                    pause = reconnect_delays()
        finally:
            if self._decide_handle is not None:
                self._decide_handle.cancel()

    async def _receive(self, ws: ClientConnection) -> str:
        """Read frames until the connection ends; returns why it ended."""
        silence = self.settings.upstream_silence
        try:
            while True:
                try:
                    async with asyncio.timeout(silence):
                        data = await ws.recv()
                except TimeoutError:
                    await ws.close(1001, "no data")
                    return f"no frame for {silence:g} s"
                self.on_frame(data)
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == 1009:
                self.reject("too_large", "frame larger than the 64 KiB limit")
            return describe_error(exc)

    # -- frames ----------------------------------------------------------------------------

    def on_frame(self, data: str | bytes) -> list[Reading]:
        """Handle one upstream frame: parse, validate, hand the readings to the hub.

        Returns the readings accepted now (frames held while the mapping is being inferred are
        accepted later, all at once, :data:`~hrdash.upstream.INFER_WAIT` after the first)."""
        self.counters["frames"] += 1
        if isinstance(data, str):
            self.last_frame = data[:LAST_FRAME_CHARS]
        else:
            self.last_frame = f"<binary frame of {len(data)} bytes>"
        self.last_frame_at = self._now_ms()
        deciding = self.reader.deciding
        results = self.reader.feed(data, self._now_ms(), self.monotonic())
        if deciding and not self.reader.deciding:
            self._log_mapping()
        elif self.reader.deciding:
            self._decide_later(INFER_WAIT)
        return self.accept(results, data)

    def _decide_later(self, delay: float) -> None:
        """Decide the mapping with what is held once it is due, even if no frame follows."""
        if self._decide_handle is None:
            loop = asyncio.get_running_loop()
            self._decide_handle = loop.call_later(delay, self._decide_due)

    def _decide_due(self) -> None:
        self._decide_handle = None
        if not self.reader.deciding:
            return
        decided = self.reader.due(self.monotonic())
        if self.reader.deciding:
            self._decide_later(DECIDE_RETRY)
            return
        self._log_mapping()
        self.accept(decided, None)

    def _log_mapping(self) -> None:
        mapping, inference = self.reader.describe(), self.reader.inference
        if inference is None:
            log.info("%s: frames fit the default mapping: value=value time=time", self.id)
        elif inference.value_path is None:
            log.warning(
                "%s: could not infer the heart-rate field (%s); using value/time. "
                "Set HRDASH_VALUE_FIELD (try `hrdash probe URL`)",
                self.id,
                "; ".join(inference.notes) or "no candidate",
            )
        else:
            log.info(
                "%s: inferred mapping from %d frames: value=%s time=%s (confidence %s)%s",
                self.id,
                inference.frames,
                mapping["value"],
                mapping["time"],
                inference.confidence,
                "".join(f"; {note}" for note in inference.notes),
            )
        if inference is not None:
            self.on_change(self)

    def accept(self, results: list[Reading | Rejected], data: str | bytes | None) -> list[Reading]:
        """Count the rejections, hand the readings to the hub (then ``on_readings`` with
        them)."""
        accepted: list[Reading] = []
        for result in results:
            if not isinstance(result, Reading):
                self.reject(result.reason, result.detail, data)
                continue
            accepted.append(result)
        if accepted:
            self.patient.accept(accepted, self.clock())
            self.on_readings(self, accepted)
        return accepted

    def reject(self, reason: str, detail: str, data: str | bytes | None = None) -> None:
        """Count one rejection; log it at most once per reason per ``REJECT_LOG_EVERY``."""
        self.last_rejection = {"reason": reason, "detail": detail, "at": self._now_ms()}
        if isinstance(data, str):
            self.last_rejected_frame = data[:LAST_REJECTED_CHARS]
        elif data is not None:
            self.last_rejected_frame = f"<binary frame of {len(data)} bytes>"
        suppressed = self.rejects.add(reason, self.monotonic())
        if suppressed is not None:
            extra = f" ({suppressed} more since the last report)" if suppressed else ""
            log.warning("%s: rejected upstream frame: %s: %s%s", self.id, reason, detail, extra)

    # -- what people see -------------------------------------------------------------------

    def status_fields(self) -> dict[str, Any]:
        """This source's part of a status frame (:meth:`hrdash.hub.PatientHub.status_frame`):
        never a secret."""
        return {
            "upstream": self.upstream,
            "since": self.upstream_since,
            "detail": self.upstream_detail,
            "source": self.settings.display_source,
            "mapping": self.reader.describe(),
            "last_rejection": self.last_rejection,
        }

    def rejected(self) -> dict[str, Any]:
        """The rejection counters of a status frame."""
        return {"rejected": self.rejects.total, "rejected_by_reason": dict(self.rejects)}

    def source_detail(self) -> dict[str, Any]:
        """What the Source panel shows beyond the status: never a secret (URL redacted, header
        values never included)."""
        return {
            "url": self.shown_url,
            "mapping": {**self.reader.describe(), "transform": self.settings.transform or None},
            "last_frame": self.last_frame,
            "last_frame_at": self.last_frame_at,
            "last_rejected_frame": self.last_rejected_frame,
        }
