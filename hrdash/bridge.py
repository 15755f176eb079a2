"""The bridge: one upstream connection in, many browser viewers out.

Upstream side: connects to the heart-rate service with websockets' reconnect iterator, using our
own backoff (first retry within 0.5 s, doubling with jitter, capped at ``RECONNECT_CAP``); every
frame goes through :class:`hrdash.upstream.FrameReader` (the configured or inferred mapping, or
the transform hook, over the pure :mod:`hrdash.readings`); accepted readings go to the pure hub
(:mod:`hrdash.hub`: the ring and ``seq``, snapshots, since/resend answers, the frames), which this
module's asyncio edge sends out; rejected frames are counted by reason and logged at most once
per reason per 10 s.

Viewer side (``ws://BRIDGE_HOST:BRIDGE_PORT/ws``), JSON text frames, each with a ``type``:

* ``{"type": "readings", "run": RUN, "readings": [{"seq", "time", "bpm"}, ...],
  "first_seq": N, "last_seq": M}`` — on connect one frame with the snapshot (the last
  ``window`` readings, or everything after ``?since=SEQ`` when ``&run=RUN`` names this run), then
  live frames; readings that arrive together go out in one frame.
* ``{"type": "status", "run": RUN, "upstream": "connecting" | "live" | "down", ...}`` — on every
  change and at least once a second, placed between readings (the browser's heartbeat).

A viewer may send ``{"type": "resend", "since": N, "run": RUN}``; it gets one readings frame with
everything after ``N``. Every since/resend answer holds at most ``SINCE_LIMIT`` readings (the
newest; :mod:`hrdash.buffer`), and a viewer's messages beyond ``VIEWER_RESEND_PER_S`` a second are
ignored; both are counted (``since_truncated``, ``viewer_messages_refused``).

A viewer that connects with ``?overlap=1`` gets, in each live frame, the
``OVERLAP`` readings before the new ones too: Dash hands a page only the last of several messages
that arrive within one render, and the repeat lets the page recover such a loss without asking
(it drops seqs it already has). ``{"type": "detail", "on": true}`` adds a ``source_detail``
object (redacted URL, mapping, last raw frame) to the status frames that viewer receives.
``GET /healthz`` answers 200 with the state and counters.

A handshake whose ``Origin`` header is not in ``HRDASH_ALLOWED_ORIGINS`` (see
:mod:`hrdash.origins`) gets HTTP 403; the refusal is counted in ``/healthz`` (``origins``) and
logged, with the allowed list, once per origin per minute. Clients without an ``Origin`` header
(not browsers) are accepted.

Fan-out works like :func:`websockets.asyncio.server.broadcast`: each frame is encoded and framed
once and written to every viewer without waiting. A viewer whose unread bytes exceed
``viewer_buffer`` is dropped (it resumes with ``since`` when it reconnects), so it never delays
the others or grows memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http
import json
import logging
import random
import secrets
import signal
import socket
import time
from collections.abc import Callable, Generator, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from hrdash.buffer import RingBuffer, Stored
from hrdash.hub import OVERLAP, Hub, PatientHub
from hrdash.origins import RefusedOrigins, canonical_origin, origin_allowed
from hrdash.readings import Reading, RejectCounter, Rejected
from hrdash.settings import PortInUseError, Settings, redact_url
from hrdash.upstream import (
    UPSTREAM_MAX_SIZE,
    FrameReader,
    connect_options,
    connect_url,
    load_transform,
)

__all__ = ["OVERLAP", "UPSTREAM_MAX_SIZE", "Bridge", "reconnect_delays", "run_bridge"]

log = logging.getLogger("hrdash.bridge")

# Upstream connection limits (UPSTREAM_MAX_SIZE etc.) live in hrdash.upstream.
RECONNECT_FIRST = 0.5  # seconds: the first retry comes within this (jittered down to half)
RECONNECT_FACTOR = 2.0
RECONNECT_CAP = 10.0  # seconds between attempts at most
SHORT_CONNECTION = 2.0  # seconds: a connection that dies sooner is followed by a backoff pause
# Viewers.
VIEWER_SNDBUF = 32 * 1024  # kernel send buffer per viewer (Linux doubles it): keeps what a
# stalled viewer holds in the kernel small, so that viewer_buffer, counted in user space, is
# reached quickly and the viewer dropped (autotuning would grow it to ~4 MiB first)
VIEWER_MAX_MESSAGE = 4096  # bytes; viewers only send small resend requests
VIEWER_RESEND_PER_S = 5  # more resend requests than this in a second are ignored
STATUS_EVERY = 1.0  # seconds between heartbeat status frames at most
REJECT_LOG_EVERY = 10.0  # seconds between two log lines for the same rejection reason
LAST_FRAME_CHARS = 4096  # the Source panel shows at most this much of the last raw frame
LAST_REJECTED_CHARS = 1024
PATIENT_ID = "patient-1"  # the one patient of HRDASH_UPSTREAM_URL
# /healthz and status frames list the edge's and the hub's counters in this order.
COUNTER_ORDER = (
    "frames",
    "accepted",
    "upstream_connects",
    "upstream_failures",
    "viewers_connected",
    "viewers_dropped_slow",
    "resends",
    "since_truncated",
    "viewer_messages_refused",
)


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


def _json(obj: Any) -> str:
    # Strict JSON: a browser's JSON.parse rejects NaN/Infinity, so refuse to emit them.
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


class RateWindow:
    """At most ``limit`` events per window of ``per`` seconds; the caller passes the clock."""

    def __init__(self, limit: int, per: float = 1.0) -> None:
        self.limit, self.per = limit, per
        self._start: float | None = None
        self._count = 0

    def allow(self, now: float) -> bool:
        """Count one event at ``now``; true if it is within the limit."""
        if self._start is None or now - self._start >= self.per:
            self._start, self._count = now, 0
        self._count += 1
        return self._count <= self.limit


class Bridge:
    """Upstream client + viewer fan-out. Start with :meth:`start`, stop with :meth:`close`.

    ``clock`` gives Unix seconds (reading ages, status times); ``monotonic`` is the clock of
    the viewers' message rate limit."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.monotonic = monotonic
        self.reader = FrameReader(
            settings.value_field, settings.time_field, load_transform(settings.transform)
        )
        self.hub = Hub(settings.buffer, settings.window, run_id=secrets.token_hex(4))
        self.patient: PatientHub = self.hub.add(PATIENT_ID)
        self.viewers: set[ServerConnection] = set()
        self.detail_viewers: set[ServerConnection] = set()  # Source panel open: full status
        self.overlap_viewers: set[ServerConnection] = set()  # asked for ?overlap=1
        self.last_frame: str | None = None
        self.last_frame_at: int | None = None
        self.last_rejected_frame: str | None = None
        self.rejects = RejectCounter(REJECT_LOG_EVERY)
        self.refused_origins = RefusedOrigins()
        self.allowed_origins = frozenset(canonical_origin(o) for o in settings.effective_origins)
        self._counters: dict[str, int] = {  # the edge's; the hub keeps its own
            "frames": 0,
            "upstream_connects": 0,
            "upstream_failures": 0,
            "viewers_connected": 0,
            "viewers_dropped_slow": 0,
            "viewer_messages_refused": 0,  # over VIEWER_RESEND_PER_S a second: ignored
        }
        self.upstream = "connecting"
        self.upstream_since = self._now_ms()
        self.upstream_detail = ""
        self.last_rejection: dict[str, Any] | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._last_status_at = 0.0
        self._last_flush_at = 0.0
        self._period_estimate = 0.5
        self._tasks: list[asyncio.Task[None]] = []
        self.server: Server | None = None

    # -- clock, hub -------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def buffer(self) -> RingBuffer:
        return self.patient.buffer

    @property
    def run_id(self) -> str:
        return self.hub.run_id

    @property
    def _flushed_seq(self) -> int:
        return self.patient.flushed_seq

    @property
    def counters(self) -> dict[str, int]:
        """Every counter, the edge's and the hub's, in the order /healthz shows them."""
        merged = {**self._counters, **self.patient.counters}
        return {key: merged[key] for key in COUNTER_ORDER if key in merged} | merged

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Server:
        """Listen for viewers and start the upstream client and the heartbeat."""
        s = self.settings
        try:
            self.server = await serve(
                self._handle_viewer,
                s.bridge_host,
                s.bridge_port,
                process_request=self._process_request,  # checks the Origin, too
                compression=None,  # per-viewer deflate costs ~50 KiB and CPU per frame
                ping_interval=s.ping_interval,
                ping_timeout=s.ping_timeout,
                max_size=VIEWER_MAX_MESSAGE,
                max_queue=4,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError.for_port(
                    s.bridge_host, s.bridge_port, "HRDASH_BRIDGE_PORT"
                ) from None
            raise
        self._tasks = [
            asyncio.create_task(self._upstream_forever(), name="upstream"),
            asyncio.create_task(self._status_forever(), name="status"),
        ]
        return self.server

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    # -- upstream --------------------------------------------------------------------------

    def _set_upstream(self, state: str, detail: str = "") -> None:
        if state == self.upstream and detail == self.upstream_detail:
            return
        if state != self.upstream:
            self.upstream_since = self._now_ms()
        self.upstream, self.upstream_detail = state, detail
        self._broadcast_status()

    def _retry(self, exc: Exception) -> Exception | None:
        """process_exception for the reconnect iterator: a monitor retries every failure."""
        self._counters["upstream_failures"] += 1
        cause = describe_error(exc)
        if self.upstream != "down" or self.upstream_detail != cause:
            log.warning("upstream %s: %s; retrying", self._shown_url, cause)
        self._set_upstream("down", cause)
        return None

    def _upstream_url(self) -> str:
        return connect_url(self.settings)

    @property
    def _shown_url(self) -> str:
        """The configured service URL as people may see it (redacted)."""
        return redact_url(self.settings.effective_upstream_url)

    async def _upstream_forever(self) -> None:
        s = self.settings
        pause = reconnect_delays()
        if s.insecure:
            log.warning("HRDASH_INSECURE is set: the service's TLS certificate is not verified")
        quiet_logger = logging.getLogger("hrdash.bridge.reconnect")
        quiet_logger.setLevel(logging.WARNING)  # we log failures ourselves, once per cause
        async for ws in connect(
            self._upstream_url(),
            reconnect_delays=reconnect_delays,
            process_exception=self._retry,
            logger=quiet_logger,
            **connect_options(s),
        ):
            opened = time.monotonic()
            self._counters["upstream_connects"] += 1
            log.info("upstream connected: %s", self._shown_url)
            if s.send:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(s.send)  # the request body, after every (re)connect
            self._set_upstream("live")
            cause = await self._receive(ws)
            log.warning("upstream lost: %s; reconnecting", cause)
            self._set_upstream("connecting", cause)
            if time.monotonic() - opened < SHORT_CONNECTION:
                await asyncio.sleep(next(pause))  # the service accepts then drops: do not spin
            else:
                pause = reconnect_delays()

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
                self._reject("too_large", "frame larger than the 64 KiB limit")
            return describe_error(exc)

    def on_frame(self, data: str | bytes) -> list[Reading]:
        """Handle one upstream frame: parse, validate, buffer, schedule the fan-out.

        Returns the readings accepted now (frames held while the mapping is being inferred are
        accepted later, all at once)."""
        self._counters["frames"] += 1
        if isinstance(data, str):
            self.last_frame = data[:LAST_FRAME_CHARS]
        else:
            self.last_frame = f"<binary frame of {len(data)} bytes>"
        self.last_frame_at = self._now_ms()
        deciding = self.reader.deciding
        results = self.reader.feed(data, self._now_ms(), time.monotonic())
        if deciding and not self.reader.deciding:
            self._log_mapping()
        return self._accept(results, data)

    def _log_mapping(self) -> None:
        mapping, inference = self.reader.describe(), self.reader.inference
        if inference is None:
            log.info("frames fit the default mapping: value=value time=time")
            return
        if inference.value_path is None:
            log.warning(
                "could not infer the heart-rate field (%s); using value/time. "
                "Set HRDASH_VALUE_FIELD (try `hrdash probe URL`)",
                "; ".join(inference.notes) or "no candidate",
            )
        else:
            log.info(
                "inferred mapping from %d frames: value=%s time=%s (confidence %s)%s",
                inference.frames,
                mapping["value"],
                mapping["time"],
                inference.confidence,
                "".join(f"; {note}" for note in inference.notes),
            )
        self._broadcast_status()

    def _accept(self, results: list[Reading | Rejected], data: str | bytes | None) -> list[Reading]:
        accepted: list[Reading] = []
        for result in results:
            if not isinstance(result, Reading):
                self._reject(result.reason, result.detail, data)
                continue
            accepted.append(result)
        if accepted:
            self.patient.accept(accepted, self.clock())
            if self._flush_handle is None:
                # Everything that arrives in this loop iteration goes out in one frame.
                self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        return accepted

    def _reject(self, reason: str, detail: str, data: str | bytes | None = None) -> None:
        self.last_rejection = {"reason": reason, "detail": detail, "at": self._now_ms()}
        if isinstance(data, str):
            self.last_rejected_frame = data[:LAST_REJECTED_CHARS]
        elif data is not None:
            self.last_rejected_frame = f"<binary frame of {len(data)} bytes>"
        suppressed = self.rejects.add(reason, time.monotonic())
        if suppressed is not None:
            extra = f" ({suppressed} more since the last report)" if suppressed else ""
            log.warning("rejected upstream frame: %s: %s%s", reason, detail, extra)

    # -- fan-out ---------------------------------------------------------------------------

    def _readings_frame(self, items: Iterable[Stored], **extra: Any) -> str:
        return _json(self.patient.readings_frame(items, **extra))

    def _flush(self) -> None:
        self._flush_handle = None
        items = self.patient.flush()
        if not items:
            return
        now = time.monotonic()
        if self._last_flush_at:
            gap = now - self._last_flush_at
            if 0.01 < gap < 5:
                self._period_estimate = 0.8 * self._period_estimate + 0.2 * gap
        self._last_flush_at = now
        if self.overlap_viewers:
            plain = self.viewers - self.overlap_viewers
            self._send_all(_json(self.patient.overlap_frame(items)), set(self.overlap_viewers))
            self._send_all(_json(self.patient.readings_frame(items)), plain)
        else:
            self._send_all(_json(self.patient.readings_frame(items)))

    def _send_all(self, frame: str, viewers: set[ServerConnection] | None = None) -> None:
        """Write ``frame`` to ``viewers`` (default: all), dropping those too far behind.

        The frame is serialised once (server frames are unmasked and uncompressed here, so the
        bytes are the same for every viewer) and written to each transport without waiting;
        this is what :func:`websockets.asyncio.server.broadcast` does, minus framing the same
        message once per viewer, which is a fifth of the cost at thousands of viewers."""
        targets = self.viewers if viewers is None else viewers
        data = Frame(Opcode.TEXT, frame.encode()).serialize(mask=False)
        limit = self.settings.viewer_buffer
        for ws in list(targets):
            transport = ws.transport
            if transport is None or ws.protocol.state is not State.OPEN:
                continue
            if transport.get_write_buffer_size() > limit:
                self._drop_slow(ws)
                continue
            transport.write(data)

    def _forget(self, ws: ServerConnection) -> None:
        self.viewers.discard(ws)
        self.detail_viewers.discard(ws)
        self.overlap_viewers.discard(ws)

    def _drop_slow(self, ws: ServerConnection) -> None:
        self._forget(ws)
        self._counters["viewers_dropped_slow"] += 1
        log.info("dropped a viewer that fell behind (%s)", ws.remote_address)
        if ws.transport is not None:
            ws.transport.abort()  # free its buffer now; it resumes with ?since= on reconnect

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The state a viewer or /healthz sees. Contains no secret."""
        return self.patient.status_frame(
            self.clock(),
            upstream=self.upstream,
            since=self.upstream_since,
            detail=self.upstream_detail,
            source=self.settings.display_source,
            viewers=len(self.viewers),
            counters={
                **self.counters,
                "rejected": self.rejects.total,
                "rejected_by_reason": dict(self.rejects),
            },
            mapping=self.reader.describe(),
            last_rejection=self.last_rejection,
        )

    def source_detail(self) -> dict[str, Any]:
        """What the Source panel shows beyond the status: never a secret (URL redacted, header
        values never included)."""
        return {
            "url": self._shown_url,
            "mapping": {**self.reader.describe(), "transform": self.settings.transform or None},
            "last_frame": self.last_frame,
            "last_frame_at": self.last_frame_at,
            "last_rejected_frame": self.last_rejected_frame,
        }

    def _broadcast_status(self) -> None:
        self._last_status_at = time.monotonic()
        if not self.viewers:
            return
        status = self.status()
        if self.detail_viewers:
            self.detail_viewers &= self.viewers
            plain = self.viewers - self.detail_viewers
            self._send_all(_json(status), plain)
            self._send_all(
                _json({**status, "source_detail": self.source_detail()}), self.detail_viewers
            )
        else:
            self._send_all(_json(status))

    def _next_status_delay(self) -> float:
        """Seconds until the next heartbeat: at most STATUS_EVERY after the last status, and,
        while readings flow, half a period away from the instants when they go out."""
        now = time.monotonic()
        due = self._last_status_at + STATUS_EVERY
        period = self._period_estimate
        if self._last_flush_at and now - self._last_flush_at < 2 * period and period > 0.1:
            mid = self._last_flush_at + period / 2
            while mid + period <= due:
                mid += period
            if mid > self._last_status_at + STATUS_EVERY / 2 and mid > now:
                due = mid
        return max(0.01, due - now)

    async def _status_forever(self) -> None:
        while True:
            await asyncio.sleep(self._next_status_delay())
            if self.reader.deciding:
                decided = self.reader.due(time.monotonic())
                if not self.reader.deciding:
                    self._log_mapping()
                    self._accept(decided, None)
            if time.monotonic() - self._last_status_at >= STATUS_EVERY / 2 - 0.01:
                self._broadcast_status()

    # -- viewers ---------------------------------------------------------------------------

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            origins = {
                "allowed": list(self.settings.effective_origins),
                "refused": self.refused_origins.as_dict(),
            }
            body = {"status": "ok", **self.status(), "origins": origins}
            return self._json_response(http.HTTPStatus.OK, body)
        if path == "/readings":
            body = self.patient.all_readings()
            return self._json_response(http.HTTPStatus.OK, body)
        if path != "/ws":
            return ws.respond(http.HTTPStatus.NOT_FOUND, "Not found: use /ws or /healthz\n")
        headers = request.headers.get_all("Origin")
        origin = ", ".join(headers) if headers else None
        if len(headers) > 1 or not origin_allowed(origin, self.allowed_origins):
            self._refuse_origin(str(origin))
            return ws.respond(
                http.HTTPStatus.FORBIDDEN, "Origin not allowed: see HRDASH_ALLOWED_ORIGINS\n"
            )
        return None

    def _refuse_origin(self, origin: str) -> None:
        suppressed = self.refused_origins.add(origin, time.monotonic())
        if suppressed is not None:
            extra = f" ({suppressed} more since the last report)" if suppressed else ""
            log.warning(
                "refused a viewer from origin %r: not in HRDASH_ALLOWED_ORIGINS (%s); set it to "
                "the exact origin the browser uses, scheme, host and port%s",
                self.refused_origins.key(origin),
                ", ".join(self.settings.effective_origins),
                extra,
            )

    @staticmethod
    def _json_response(status: http.HTTPStatus, body: dict[str, Any]) -> Response:
        data = (_json(body) + "\n").encode()
        headers = Headers(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
            ]
        )
        return Response(status.value, status.phrase, headers, data)

    def _first_frame(self, query: str) -> str:
        params = parse_qs(query)
        since = params.get("since", [""])[0]
        run = params.get("run", [""])[0]
        seq = int(since) if since.isascii() and since.isdigit() else None  # not "²"
        return _json(self.patient.first_frame(seq, run))

    async def _handle_viewer(self, ws: ServerConnection) -> None:
        # Write the snapshot and join the fan-out in one synchronous step, so that no live
        # frame can slip in before it and none is missed after it.
        query = urlsplit(ws.request.path).query if ws.request else ""
        sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, VIEWER_SNDBUF)
        broadcast([ws], self._first_frame(query))
        broadcast([ws], _json(self.status()))
        self.viewers.add(ws)
        if parse_qs(query).get("overlap", ["0"])[0] not in ("", "0"):
            self.overlap_viewers.add(ws)
        self._counters["viewers_connected"] += 1
        rate = RateWindow(VIEWER_RESEND_PER_S)
        try:
            async for message in ws:
                if rate.allow(self.monotonic()):
                    self._on_viewer_message(ws, message)
                else:
                    self._counters["viewer_messages_refused"] += 1
        except ConnectionClosed:
            pass
        finally:
            self._forget(ws)

    def _on_viewer_message(self, ws: ServerConnection, message: str | bytes) -> None:
        try:
            request = json.loads(message)
        except (ValueError, RecursionError):
            return
        if not isinstance(request, dict):
            return
        if request.get("type") == "detail":
            if request.get("on") is True:
                self.detail_viewers.add(ws)
                status = {**self.status(), "source_detail": self.source_detail()}
                broadcast([ws], _json(status))
            else:
                self.detail_viewers.discard(ws)
            return
        if request.get("type") != "resend":
            return
        since = request.get("since")
        if isinstance(since, bool) or not isinstance(since, int):
            return
        broadcast([ws], _json(self.patient.resend_frame(since, request.get("run"))))


async def run_bridge(settings: Settings, ready: Callable[[Bridge], None] | None = None) -> None:
    """Run a bridge until SIGINT/SIGTERM."""
    bridge = Bridge(settings)
    await bridge.start()
    log.info(
        "bridge on ws://%s:%d/ws relaying %s (origins: %s)",
        settings.bridge_host,
        bridge.port,
        settings.display_source,
        ", ".join(settings.effective_origins),
    )
    if ready is not None:
        ready(bridge)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await bridge.close()
