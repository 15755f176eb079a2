"""The edge: the bridge's asyncio server for viewers (``ws://BRIDGE_HOST:BRIDGE_PORT``).

It serves what the pure hub (:mod:`hrdash.hub`) holds and what each patient's ingest reports
(the :class:`Ingest` protocol; :class:`hrdash.ingest.PatientSource` is one). Endpoints:

* ``/ws?patient=ID[&since=SEQ&run=RUN&overlap=1]`` — one patient's feed; ``/ws`` without
  ``patient`` serves the first patient; an unknown id gets HTTP 404 with one line. JSON text
  frames, each with a ``type`` and the ``patient`` id:

  - ``{"type": "readings", "run": RUN, "patient": ID, "readings": [{"seq", "time", "bpm"}, ...],
    "first_seq": N, "last_seq": M}`` — on connect one frame with the snapshot (the last
    ``window`` readings, or everything after ``?since=SEQ`` when ``&run=RUN`` names this run),
    then live frames; readings that arrive together go out in one frame.
  - ``{"type": "status", "run": RUN, "patient": ID, "upstream": "connecting" | "live" | "down",
    ...}`` — on every change and at least once a second, placed between readings (the
    browser's heartbeat).

  A viewer may send ``{"type": "resend", "since": N, "run": RUN}``; it gets one readings frame
  with everything after ``N``. Every since/resend answer holds at most ``SINCE_LIMIT`` readings
  (the newest; :mod:`hrdash.buffer`), and a viewer's messages beyond ``VIEWER_RESEND_PER_S`` a
  second are ignored (the alarm state changes below have their own allowance); both are
  counted (``since_truncated``, ``viewer_messages_refused``). With ``?overlap=1`` each live
  frame also repeats the ``OVERLAP`` readings before the new ones (Dash hands a page only the
  last of several messages within one render; the page drops seqs it has).
  ``{"type": "detail", "on": true}`` adds a ``source_detail`` object (redacted URL, mapping, last
  raw frame, and ``recorder``: the history's status, as in ``/healthz``) to the status frames
  that viewer receives.
* ``/ws?station=1`` — the station feed: station frames (:meth:`hrdash.hub.Hub.station_frame`),
  one ``STATION_GATHER`` after a patient has new readings or changed state (what arrives
  together goes out together), at most every ``STATION_MIN_INTERVAL`` and at least every
  ``STATION_EVERY`` seconds. A new viewer gets snapshots (``"snapshot": true``, every patient's
  sparkline) on connect and in place of live frames until it acknowledges one with
  ``{"type": "snapshot_ok", "run": RUN}`` (the snapshot's run), or for at most
  ``SNAPSHOT_REPEATS`` frames; then live frames. Dash may hand a page only the last of several
  messages, so a single snapshot followed closely by a live frame is often lost: repeated until
  acknowledged, one of them arrives. A snapshot (every patient's sparkline, thinned: see
  :mod:`hrdash.hub`) can be larger than a slow link drains in a tick, so a repeat is not written
  to a viewer whose previous frame is still unsent (it waits for a later tick), and a station
  viewer is dropped as slow only when its unsent bytes exceed ``viewer_buffer`` plus the size of
  the last snapshot written to it. Each kind of frame is encoded once per tick, for all the
  viewers that get it. Counted in ``/healthz`` (``station``): ``snapshots`` sent,
  ``snapshot_acks``, ``snapshot_unacked`` (viewers that never acknowledged one),
  ``snapshots_skipped`` (repeats held back, the previous frame unsent) and
  ``viewers_awaiting_ack`` (still getting snapshots). Other messages on it but the alarm
  state changes below are ignored (rate-limited).
* Alarms (with the bridge's alarm engines, :mod:`hrdash.station_alarms`): a patient viewer gets
  ``{"type": "alarm", "patient": ID, "now": MS, "alarms": [ALARM, ...], "limits": {"extreme_low",
  "low", "high", "extreme_high"}, "sounding": "high" | "medium" | "low" | null,
  "audio_paused_until": MS | null}`` (``now``: the bridge's clock, Unix ms, as in station frames, so
  a page counts the pause down against it; ``sounding``: the priority that sounds over that
  patient's alarms, the station's pause respected) on connect (after the first readings and status
  frames: Dash may hand a page only the last of several, and the status repeats every second, the
  alarm frame does not) and whenever that patient's alarms or limits or the station's audio pause
  change, the pause's end included (the whole state, never a delta); the station frames carry each
  patient's ``alarms``, ``audio_paused_until`` and a top-level ``sounding`` over every patient's
  alarms. On either feed a viewer may send ``{"type": "ack", "alarm": ID}``, ``{"type":
  "audio_pause", "seconds": S}`` (0 < S <= 120, the whole station) and ``{"type": "limits",
  "patient": ID, "low", "high", "extreme_low", "extreme_high"}``. These change state, so they are
  accepted only on a connection whose handshake carried an allowed ``Origin`` (one without the
  header, a script, may read but not change anything): refused ones are answered ``{"type": "error",
  "request": "ack" | "audio_pause" | "limits", "message": "<one line>"}`` and counted
  (``refused_state_changes``), as are invalid ones (``invalid_state_changes``); accepted ones are
  logged with that Origin and sent out at once. Each connection may send ``STATE_CHANGE_BURST`` of
  them at once, then ``STATE_CHANGE_PER_S`` a second (a token bucket, apart from the resend limit);
  one beyond that is not applied but answered likewise (``"<type>: too many changes at once ...; try
  again"``) and counted (``throttled_state_changes``). Counted in ``/healthz`` (``alarms``). On
  an edge of the Redis fan-out (:mod:`hrdash.broker.edge_node`) a valid one is handed on to the
  ingests; when that fails it is answered ``"<type>: not applied: <cause>; try again"`` and
  counted (``unsent_state_changes``).
* ``GET /api/alarms`` — the active, latched and acknowledged ALARMs of all patients, highest
  priority first, then oldest first.
* ``GET /api/alarms/log[?patient=ID][&limit=N]`` — the alarm log, newest first (N: 1 to
  ``LOG_KEPT``, default ``LOG_DEFAULT``); without ``patient`` every patient's entries and the
  station's (``audio_paused``). Kept in memory (the last ``LOG_KEPT`` per patient), and with a
  history in its ``alarm_log`` too (read back at start, so the log survives a restart). On an
  edge of the Redis fan-out, read from the log streams (503 with one line while Redis is away).
* ``GET /healthz`` — 200 with the first patient's status and counters, the origins,
  ``patients``: each patient's id, name, upstream, state and counters, and ``recorder``: the
  history's status (:meth:`hrdash.ingest.recorder.Recorder.status`, or :func:`history_off`);
  on an edge of the Redis fan-out, ``broker`` too (the edge's id, Redis, its reader).
* ``GET /api/patients`` — every patient's id, name, upstream, state, age, last reading, alarms
  and ``limits`` (``{"extreme_low", "low", "high", "extreme_high"}``, in effect).
* ``GET /readings?patient=ID`` — everything the patient's ring holds (default: the first).

A WebSocket handshake whose ``Origin`` header is not in ``HRDASH_ALLOWED_ORIGINS`` (see
:mod:`hrdash.origins`) gets HTTP 403; the refusal is counted in ``/healthz`` (``origins``) and
logged, with the allowed list, once per origin per minute. Clients without an ``Origin`` header
(not browsers) are accepted.

Fan-out works like :func:`websockets.asyncio.server.broadcast`: each frame is encoded and framed
once and written to every viewer without waiting. A viewer whose unsent bytes exceed
``viewer_buffer`` (a station viewer: plus its last snapshot) is dropped (it resumes with
``since`` when it reconnects), so it never delays the others or grows memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http
import inspect
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from hrdash.hub import Hub, PatientHub, UpstreamState
from hrdash.origins import RefusedOrigins, canonical_origin, origin_allowed
from hrdash.settings import PortInUseError, Settings
from hrdash.station_alarms import LOG_KEPT, PATIENT_ID_SHOWN
from hrdash.store import MEMORY

__all__ = [
    "SNAPSHOT_REPEATS",
    "Alarms",
    "Edge",
    "Feed",
    "Ingest",
    "RateWindow",
    "Station",
    "TokenBucket",
    "Unavailable",
    "history_off",
]

log = logging.getLogger("hrdash.edge")

VIEWER_SNDBUF = 32 * 1024  # kernel send buffer per viewer (Linux doubles it): keeps what a
# stalled viewer holds in the kernel small, so that viewer_buffer, counted in user space, is
# reached quickly and the viewer dropped (autotuning would grow it to ~4 MiB first)
LISTEN_BACKLOG = 4096  # connections waiting to be accepted (the kernel caps it at somaxconn):
# when an edge or the bridge restarts, every page reconnects at once; asyncio's default of 100
# leaves the rest to a 1 s SYN retransmit (failover benchmark: p99 1.8 s → 0.9 s)
VIEWER_MAX_MESSAGE = 4096  # bytes; viewers only send small resend requests
VIEWER_RESEND_PER_S = 5  # more resend requests than this in a second are ignored
# State changes (ack, audio_pause, limits) have their own allowance per connection, a token
# bucket: a burst of STATE_CHANGE_BURST (a nurse acknowledging every alarm in view at once),
# refilled at STATE_CHANGE_PER_S (beyond anyone's clicking). Each accepted one costs an engine
# call, a log entry (a history row) and alarm frames, so a script flooding them is held to this
# rate; one beyond it is answered with an error frame ("try again"), never silently dropped.
STATE_CHANGE_BURST = 20
STATE_CHANGE_PER_S = 10.0
STATUS_EVERY = 1.0  # seconds between heartbeat status frames at most
STATION_MIN_INTERVAL = 0.1  # seconds between two station frames at least
STATION_EVERY = 1.0  # seconds between two station frames at most (the station's heartbeat)
STATION_GATHER = 0.005  # seconds a change waits for the readings arriving with it (services
# that tick together, like the simulator's ward, send a burst: it goes out in one frame)
SNAPSHOT_REPEATS = 10  # station frames a new viewer gets as snapshots at most, until it acks
# one (a viewer that never does, a plain client or an old page, costs this many snapshots)
LOG_DEFAULT = 100  # log entries GET /api/alarms/log answers without ?limit=
STATE_CHANGES = ("ack", "audio_pause", "limits")  # viewer messages that change alarm state
# /healthz and status frames list the edge's, the hub's and the ingest's counters in this order.
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


def _json(obj: Any) -> str:
    # Strict JSON: a browser's JSON.parse rejects NaN/Infinity, so refuse to emit them.
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _request(message: str | bytes) -> dict[str, Any] | None:
    """A viewer's message as a JSON object, or ``None`` (not JSON, or not an object)."""
    try:
        request = json.loads(message)
    except (ValueError, RecursionError):
        return None
    return request if isinstance(request, dict) else None


def _unsent(ws: ServerConnection) -> int:
    """Bytes written to ``ws`` and not yet handed to the kernel (0 once it is closed)."""
    transport = ws.transport
    return 0 if transport is None else transport.get_write_buffer_size()


def history_off() -> dict[str, Any]:
    """The history's status when it keeps nothing (``HRDASH_DB=:memory:``: no recorder)."""
    return {"db": MEMORY, "state": "off"}


def _flag(params: dict[str, list[str]], name: str) -> bool:
    return params.get(name, ["0"])[0] not in ("", "0")


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


class TokenBucket:
    """A burst of ``capacity`` events, then ``per_s`` a second; the caller passes the clock."""

    def __init__(self, capacity: int, per_s: float) -> None:
        self.capacity, self.per_s = capacity, per_s
        self._tokens = float(capacity)
        self._at: float | None = None

    def allow(self, now: float) -> bool:
        """Take one token at ``now``; false (none taken) when the bucket is empty."""
        if self._at is not None:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.per_s)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Ingest(Protocol):
    """What the edge shows of a patient's ingest (:class:`hrdash.ingest.PatientSource`)."""

    id: str
    counters: dict[str, int]

    @property
    def upstream_state(self) -> UpstreamState: ...

    def status_fields(self) -> dict[str, Any]: ...

    def rejected(self) -> dict[str, Any]: ...

    def source_detail(self) -> dict[str, Any]: ...


class Unavailable(Exception):
    """What the edge reads from or hands a state change on to cannot be reached now (Redis,
    for an edge of the fan-out). ``str(err)`` is one line for the viewer, without secrets."""


LogEntries = list[dict[str, Any]]


class Alarms(Protocol):
    """What the edge shows of the station's alarms and where a viewer's state change goes:
    :class:`hrdash.station_alarms.StationAlarms` (the engines, in this process), or an edge of
    the Redis fan-out's mirror (:class:`hrdash.broker.edge_node.RemoteAlarms`), whose log is
    read from Redis (awaited) and whose state changes are written on to the ingests (awaited:
    :class:`Unavailable` when that failed)."""

    def alarm_frame(self, patient_id: str) -> dict[str, Any]: ...

    def alarms(self, patient_id: str) -> list[dict[str, Any]]: ...

    def limits(self, patient_id: str) -> dict[str, float]: ...

    def all_alarms(self) -> list[dict[str, Any]]: ...

    def paused_until(self) -> int | None: ...

    def sounding(self, patient_id: str | None = None) -> str | None: ...

    def log(self, patient_id: str | None, limit: int) -> LogEntries | Awaitable[LogEntries]: ...

    def change(self, request: dict[str, Any], origin: str) -> Awaitable[None] | None:
        """Apply (None) or hand on (an awaitable) a valid state change; ValueError (one line)
        for one that is not valid, before anything is done."""
        ...


class Feed:
    """The edge's side of one patient: its viewers, their counters and the fan-out timing."""

    def __init__(self, hub: PatientHub, ingest: Ingest) -> None:
        self.id = hub.id
        self.hub = hub
        self.ingest = ingest
        self.viewers: set[ServerConnection] = set()
        self.detail_viewers: set[ServerConnection] = set()  # Source panel open: full status
        self.overlap_viewers: set[ServerConnection] = set()  # asked for ?overlap=1
        self.counters: dict[str, int] = {
            "viewers_connected": 0,
            "viewers_dropped_slow": 0,
            "viewer_messages_refused": 0,  # over VIEWER_RESEND_PER_S a second: ignored
        }
        self.flush_handle: asyncio.Handle | None = None
        self.last_status_at = 0.0
        self.last_flush_at = 0.0
        self.period_estimate = 0.5

    def forget(self, ws: ServerConnection) -> None:
        self.viewers.discard(ws)
        self.detail_viewers.discard(ws)
        self.overlap_viewers.discard(ws)

    def flushed(self, now: float) -> None:
        """Note a live frame sent out at ``now`` (monotonic s): the period estimate follows."""
        if self.last_flush_at:
            gap = now - self.last_flush_at
            if 0.01 < gap < 5:
                self.period_estimate = 0.8 * self.period_estimate + 0.2 * gap
        self.last_flush_at = now

    def next_status_delay(self, now: float) -> float:
        """Seconds from ``now`` (monotonic) until the next heartbeat: at most STATUS_EVERY after
        the last status, and, while readings flow, half a period away from the instants when
        they go out."""
        due = self.last_status_at + STATUS_EVERY
        period = self.period_estimate
        if self.last_flush_at and now - self.last_flush_at < 2 * period and period > 0.1:
            mid = self.last_flush_at + period / 2
            while mid + period <= due:
                mid += period
            if mid > self.last_status_at + STATUS_EVERY / 2 and mid > now:
                due = mid
        return max(0.01, due - now)


class Station:
    """The edge's side of the station feed: its viewers, their counters and its pace."""

    def __init__(self) -> None:
        self.viewers: set[ServerConnection] = set()
        # Viewers still getting snapshots → snapshots sent to each (until it acks one, at most
        # SNAPSHOT_REPEATS).
        self.unacked: dict[ServerConnection, int] = {}
        # Viewer → bytes of the last snapshot written to it: its allowance beyond viewer_buffer
        # (a snapshot in flight is expected, not a sign of a slow viewer).
        self.snapshot_bytes: dict[ServerConnection, int] = {}
        self.counters: dict[str, int] = {
            "viewers_connected": 0,
            "viewers_dropped_slow": 0,
            "viewer_messages_refused": 0,
            "frames": 0,  # station ticks that sent frames (snapshots, live frames or both)
            "snapshots": 0,  # snapshot frames sent, the one on connect included
            "snapshot_acks": 0,  # viewers that acknowledged a snapshot
            "snapshot_unacked": 0,  # viewers that got SNAPSHOT_REPEATS snapshots, no ack
            "snapshots_skipped": 0,  # snapshot repeats not written: the previous frame unsent
        }
        self._wake = asyncio.Event()
        self._dirty = False

    def join(self, ws: ServerConnection, size: int) -> None:
        """``ws`` has been sent its first snapshot (``size`` bytes): it gets station frames from
        now on, snapshots until it acknowledges one."""
        self.viewers.add(ws)
        self.counters["viewers_connected"] += 1
        self.unacked[ws] = 0
        self.snapshots_sent([ws], size)

    def forget(self, ws: ServerConnection) -> None:
        self.viewers.discard(ws)
        self.unacked.pop(ws, None)
        self.snapshot_bytes.pop(ws, None)

    def split(self) -> tuple[list[ServerConnection], list[ServerConnection]]:
        """The viewers due a snapshot (not acknowledged yet) and those due a live frame."""
        snapshot = [ws for ws in self.viewers if ws in self.unacked]
        live = [ws for ws in self.viewers if ws not in self.unacked]
        return snapshot, live

    def snapshots_sent(self, viewers: Iterable[ServerConnection], size: int) -> None:
        """Count a snapshot of ``size`` bytes written to each of ``viewers``; one that has had
        SNAPSHOT_REPEATS gets live frames from now on."""
        for ws in viewers:
            sent = self.unacked.get(ws)
            if sent is None:
                continue
            self.counters["snapshots"] += 1
            self.snapshot_bytes[ws] = size
            if sent + 1 >= SNAPSHOT_REPEATS:
                del self.unacked[ws]
                self.counters["snapshot_unacked"] += 1
            else:
                self.unacked[ws] = sent + 1

    def acknowledged(self, ws: ServerConnection) -> None:
        """``ws`` acknowledged a snapshot: live frames from the next tick on (nothing if it had
        acknowledged one already or had all its snapshots)."""
        if self.unacked.pop(ws, None) is not None:
            self.counters["snapshot_acks"] += 1

    def changed(self) -> None:
        """A patient has new readings or changed state: a frame is due (when anyone watches)."""
        if self.viewers and not self._dirty:
            self._dirty = True
            self._wake.set()

    async def due(self) -> AsyncIterator[None]:
        """Yields whenever a station frame is due: STATION_GATHER after a change, but at most
        every STATION_MIN_INTERVAL, and at least every STATION_EVERY seconds."""
        last = 0.0
        while True:
            wait = last + STATION_EVERY - time.monotonic()
            if not self._dirty and wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
            now = time.monotonic()
            pause = last + STATION_MIN_INTERVAL - now
            if self._dirty:
                pause = max(pause, STATION_GATHER)
            if pause > 0:
                await asyncio.sleep(pause)  # what changes meanwhile goes out in this frame
            self._wake.clear()
            self._dirty = False
            last = time.monotonic()
            yield


class Edge:
    """Viewers in, frames out, for every patient of ``hub``, each with its ``ingests`` entry
    (same ids, same order). Start with :meth:`start`, stop with :meth:`close`; the ingest calls
    :meth:`readings_accepted` and :meth:`upstream_changed`.

    ``clock`` gives Unix seconds (ages, status times); ``monotonic`` is the clock of the
    viewers' message rate limit; ``history`` gives the history's status (``/healthz`` and the
    Source panel; default :func:`history_off`; an ingest's ``source_detail`` may carry its own
    ``recorder``, which wins); ``alarms`` the station's alarms (none: no alarm frames, state
    changes refused). ``broker`` gives the ``broker`` section of ``/healthz`` (an edge of the
    Redis fan-out); ``relay`` the cause while what feeds this edge (Redis) is unreachable, None
    while it answers: station frames then carry ``"relay": "up" | "down"`` and ``relay_detail``
    (the station page's badge says so); ``reuse_port`` listens with ``SO_REUSEPORT``, so that
    several edge processes share the port (the kernel spreads the connections)."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        ingests: Sequence[Ingest],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        history: Callable[[], dict[str, Any]] = history_off,
        alarms: Alarms | None = None,
        broker: Callable[[], dict[str, Any]] | None = None,
        relay: Callable[[], str | None] | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.clock = clock
        self.monotonic = monotonic
        self.history = history
        self.alarms = alarms
        self.broker = broker
        self.relay = relay
        self.reuse_port = reuse_port
        self.alarm_counters = {
            "state_changes": 0,  # accepted ack / audio_pause / limits messages
            "refused_state_changes": 0,  # from a connection without an allowed Origin
            "invalid_state_changes": 0,  # answered with an error frame
            "throttled_state_changes": 0,  # beyond STATE_CHANGE_BURST / STATE_CHANGE_PER_S
            "unsent_state_changes": 0,  # valid, but could not be handed on: error frame
        }
        self._sending: set[asyncio.Task[None]] = set()  # state changes being handed on
        self._origins: dict[ServerConnection, str | None] = {}  # allowed Origin, or None
        self.feeds: dict[str, Feed] = {i.id: Feed(hub[i.id], i) for i in ingests}
        if list(self.feeds) != list(hub):
            raise ValueError("the ingests must be the hub's patients, in its order")
        self.first = next(iter(self.feeds.values()))
        self.station = Station()
        self.refused_origins = RefusedOrigins()
        self.allowed_origins = frozenset(canonical_origin(o) for o in settings.effective_origins)
        self._where: dict[ServerConnection, Feed | None] = {}  # None: a station viewer
        self._tasks: list[asyncio.Task[None]] = []
        self.server: Server | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Server:
        """Listen for viewers and start the heartbeats and the station feed."""
        s = self.settings
        listen: dict[str, Any] = {"reuse_port": True} if self.reuse_port else {}
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
                backlog=LISTEN_BACKLOG,
                **listen,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError.for_port(
                    s.bridge_host, s.bridge_port, "HRDASH_BRIDGE_PORT"
                ) from None
            raise
        self._tasks = [
            asyncio.create_task(self._status_forever(feed), name=f"status {feed.id}")
            for feed in self.feeds.values()
        ]
        self._tasks.append(asyncio.create_task(self._station_forever(), name="station"))
        return self.server

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        tasks = [*self._tasks, *self._sending]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for feed in self.feeds.values():
            if feed.flush_handle is not None:
                feed.flush_handle.cancel()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    # -- from the ingest -------------------------------------------------------------------

    def readings_accepted(self, patient_id: str) -> None:
        """The patient's hub holds new readings: send them out on the next loop turn (what
        arrives within this turn goes out in one frame)."""
        feed = self.feeds[patient_id]
        if feed.flush_handle is None:
            feed.flush_handle = asyncio.get_running_loop().call_soon(self._flush, feed)
        self.station.changed()

    def upstream_changed(self, patient_id: str) -> None:
        """The patient's upstream state or mapping changed: tell its viewers and the station."""
        self._broadcast_status(self.feeds[patient_id])
        self.station.changed()

    def alarms_changed(self, patient_id: str | None) -> None:
        """The patient's alarm state (None: the station's audio pause) changed: its viewers
        (None: every patient's) get an alarm frame now, the station a frame soon."""
        if self.alarms is None:
            return
        feeds = self.feeds.values() if patient_id is None else [self.feeds[patient_id]]
        for feed in feeds:
            if feed.viewers:
                self._send_all(_json(self.alarms.alarm_frame(feed.id)), feed.viewers)
        self.station.changed()

    # -- fan-out ---------------------------------------------------------------------------

    def _flush(self, feed: Feed) -> None:
        feed.flush_handle = None
        items = feed.hub.flush()
        if not items:
            return
        feed.flushed(time.monotonic())
        if not feed.viewers:
            return
        if feed.overlap_viewers:
            plain = feed.viewers - feed.overlap_viewers
            self._send_all(_json(feed.hub.overlap_frame(items)), set(feed.overlap_viewers))
            if plain:
                self._send_all(_json(feed.hub.readings_frame(items)), plain)
        else:
            self._send_all(_json(feed.hub.readings_frame(items)), feed.viewers)

    def _send_all(
        self,
        frame: str | bytes,
        viewers: Iterable[ServerConnection],
        allowance: Mapping[ServerConnection, int] | None = None,
    ) -> list[ServerConnection]:
        """Write ``frame`` (text, or its UTF-8 bytes) to ``viewers``, dropping those too far
        behind: with more than ``viewer_buffer`` bytes unsent, plus their ``allowance`` (the
        station's viewers: the last snapshot written to each). Returns the viewers written to.

        The frame is serialised once (server frames are unmasked and uncompressed here, so the
        bytes are the same for every viewer) and written to each transport without waiting;
        this is what :func:`websockets.asyncio.server.broadcast` does, minus framing the same
        message once per viewer, which is a fifth of the cost at thousands of viewers."""
        payload = frame.encode() if isinstance(frame, str) else frame
        data = Frame(Opcode.TEXT, payload).serialize(mask=False)
        limit = self.settings.viewer_buffer
        written = []
        for ws in list(viewers):
            transport = ws.transport
            if transport is None or ws.protocol.state is not State.OPEN:
                continue
            extra = allowance.get(ws, 0) if allowance is not None else 0
            if transport.get_write_buffer_size() > limit + extra:
                self._drop_slow(ws)
                continue
            transport.write(data)
            written.append(ws)
        return written

    def _forget(self, ws: ServerConnection) -> None:
        feed = self._where.pop(ws, None)
        if feed is not None:
            feed.forget(ws)
        self.station.forget(ws)
        self._origins.pop(ws, None)

    def _drop_slow(self, ws: ServerConnection) -> None:
        feed = self._where.get(ws)
        counters = self.station.counters if feed is None else feed.counters
        counters["viewers_dropped_slow"] += 1
        self._forget(ws)
        log.info("dropped a viewer that fell behind (%s)", ws.remote_address)
        if ws.transport is not None:
            ws.transport.abort()  # free its buffer now; it resumes with ?since= on reconnect

    # -- status ----------------------------------------------------------------------------

    def counters(self, feed: Feed) -> dict[str, int]:
        """A patient's counters, the edge's, the hub's and the ingest's, in COUNTER_ORDER."""
        merged = {**feed.ingest.counters, **feed.hub.counters, **feed.counters}
        return {key: merged[key] for key in COUNTER_ORDER if key in merged} | merged

    def status(self, feed: Feed | None = None) -> dict[str, Any]:
        """The status frame of a patient (default: the first) as a viewer or /healthz sees
        it. Contains no secret."""
        feed = feed or self.first
        return feed.hub.status_frame(
            self.clock(),
            **feed.ingest.status_fields(),
            viewers=len(feed.viewers),
            counters={**self.counters(feed), **feed.ingest.rejected()},
        )

    def detail_status(self, feed: Feed, status: dict[str, Any] | None = None) -> dict[str, Any]:
        """A status frame with ``source_detail`` (what the Source panel shows beyond the
        status): the ingest's, and the history's status as ``recorder``."""
        detail = {"recorder": self.history(), **feed.ingest.source_detail()}
        return {**(status or self.status(feed)), "source_detail": detail}

    def _broadcast_status(self, feed: Feed) -> None:
        feed.last_status_at = time.monotonic()
        if not feed.viewers:
            return
        status = self.status(feed)
        if feed.detail_viewers:
            feed.detail_viewers &= feed.viewers
            plain = feed.viewers - feed.detail_viewers
            self._send_all(_json(status), plain)
            self._send_all(_json(self.detail_status(feed, status)), feed.detail_viewers)
        else:
            self._send_all(_json(status), feed.viewers)

    async def _status_forever(self, feed: Feed) -> None:
        while True:
            await asyncio.sleep(feed.next_status_delay(time.monotonic()))
            if time.monotonic() - feed.last_status_at >= STATUS_EVERY / 2 - 0.01:
                self._broadcast_status(feed)

    # -- the station -----------------------------------------------------------------------

    def upstreams(self) -> dict[str, UpstreamState]:
        return {pid: feed.ingest.upstream_state for pid, feed in self.feeds.items()}

    def station_frame(self, *, snapshot: bool = False) -> dict[str, Any]:
        """The station digest now (:meth:`hrdash.hub.Hub.station_frame`)."""
        alarms = self.alarms
        frame = self.hub.station_frame(
            self.upstreams(),
            self.clock(),
            self.settings.stale_after,
            snapshot=snapshot,
            alarms=alarms.alarms if alarms is not None else None,
            audio_paused_until=alarms.paused_until() if alarms is not None else None,
        )
        frame["sounding"] = alarms.sounding() if alarms is not None else None
        if self.relay is not None:
            cause = self.relay()
            frame["relay"] = "up" if cause is None else "down"
            frame["relay_detail"] = "" if cause is None else f"Redis unreachable: {cause}"
        return frame

    def patients(self) -> list[dict[str, Any]]:
        """``GET /api/patients``."""
        alarms = self.alarms
        listing = self.hub.listing(
            self.upstreams(),
            self.clock(),
            self.settings.stale_after,
            alarms.alarms if alarms is not None else None,
        )
        if alarms is not None:
            for entry in listing:
                entry["limits"] = alarms.limits(entry["id"])
        return listing

    async def _station_forever(self) -> None:
        async for _ in self.station.due():
            self.send_station()

    def send_station(self) -> None:
        """One station tick: a snapshot, encoded once, for the viewers that have not
        acknowledged one yet, and a live frame, encoded once, for the others.

        A snapshot repeat is not written to a viewer whose previous frame is still unsent (a
        snapshot can be larger than a slow link drains in a tick): it is skipped this tick and
        counted (``snapshots_skipped``). A station viewer is dropped as slow only when its
        unsent bytes exceed ``viewer_buffer`` plus the size of the last snapshot written to
        it."""
        station = self.station
        if not station.viewers:
            return
        station.counters["frames"] += 1
        due, live = station.split()
        snapshot = [ws for ws in due if not _unsent(ws)]
        station.counters["snapshots_skipped"] += len(due) - len(snapshot)
        if snapshot:
            data = _json(self.station_frame(snapshot=True)).encode()
            written = self._send_all(data, snapshot, station.snapshot_bytes)
            station.snapshots_sent(written, len(data))
        if live:
            self._send_all(_json(self.station_frame()), live, station.snapshot_bytes)

    # -- HTTP ------------------------------------------------------------------------------

    def healthz(self) -> dict[str, Any]:
        """``GET /healthz``: the first patient's status (as before there were several), the
        origins, every patient in short and the station feed's counters."""
        now, stale_after = self.clock(), self.settings.stale_after
        patients = [
            {
                "id": feed.id,
                "name": feed.hub.name,
                "upstream": feed.ingest.upstream_state.state,
                "state": feed.hub.state(feed.ingest.upstream_state, now, stale_after),
                "counters": {**self.counters(feed), **feed.ingest.rejected()},
            }
            for feed in self.feeds.values()
        ]
        origins = {
            "allowed": list(self.settings.effective_origins),
            "refused": self.refused_origins.as_dict(),
        }
        station = {
            "viewers": len(self.station.viewers),
            "viewers_awaiting_ack": len(self.station.unacked),  # still getting snapshots
            **self.station.counters,
        }
        health = {
            "status": "ok",
            **self.status(),
            "origins": origins,
            "patients": patients,
            "station": station,
            "recorder": self.history(),
            "alarms": {
                **self.alarm_counters,
                "audio_paused_until": self.alarms.paused_until() if self.alarms else None,
            },
        }
        if self.broker is not None:
            health["broker"] = self.broker()
        return health

    def _feed_of(self, params: dict[str, list[str]]) -> Feed | None:
        """The feed a query names (``patient=ID``; none: the first); ``None`` if unknown."""
        patient_id = params.get("patient", [""])[0]
        return self.feeds.get(patient_id) if patient_id else self.first

    def _not_found(self, ws: ServerConnection, params: dict[str, list[str]]) -> Response:
        shown = params.get("patient", [""])[0][:PATIENT_ID_SHOWN]
        return ws.respond(
            http.HTTPStatus.NOT_FOUND, f"No patient {shown!r}: see GET /api/patients\n"
        )

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        path, params = parts.path, parse_qs(parts.query)
        if path == "/healthz":
            return self._json_response(http.HTTPStatus.OK, self.healthz())
        if path == "/api/patients":
            return self._json_response(http.HTTPStatus.OK, self.patients())
        if path == "/api/alarms":
            alarms = self.alarms.all_alarms() if self.alarms is not None else []
            return self._json_response(http.HTTPStatus.OK, alarms)
        if path == "/api/alarms/log":
            return await self._alarm_log(ws, params)
        if path == "/readings":
            feed = self._feed_of(params)
            if feed is None:
                return self._not_found(ws, params)
            return self._json_response(http.HTTPStatus.OK, feed.hub.all_readings())
        if path != "/ws":
            return ws.respond(
                http.HTTPStatus.NOT_FOUND,
                "Not found: use /ws, /api/patients, /api/alarms, /api/alarms/log or /healthz\n",
            )
        headers = request.headers.get_all("Origin")
        origin = ", ".join(headers) if headers else None
        if len(headers) > 1 or not origin_allowed(origin, self.allowed_origins):
            self._refuse_origin(str(origin))
            return ws.respond(
                http.HTTPStatus.FORBIDDEN, "Origin not allowed: see HRDASH_ALLOWED_ORIGINS\n"
            )
        if not _flag(params, "station") and self._feed_of(params) is None:
            return self._not_found(ws, params)
        return None

    async def _alarm_log(self, ws: ServerConnection, params: dict[str, list[str]]) -> Response:
        """``GET /api/alarms/log?patient=ID&limit=N``; a bad query gets 400 with one line, a log
        that cannot be read now (:class:`Unavailable`) 503."""
        unknown = sorted(set(params) - {"patient", "limit"})
        if unknown or any(len(v) > 1 for v in params.values()):
            what = f"unknown parameter {unknown[0]!r}" if unknown else "a parameter repeated"
            return ws.respond(
                http.HTTPStatus.BAD_REQUEST, f"Bad query: {what}; use ?patient=ID&limit=N\n"
            )
        text = params.get("limit", [str(LOG_DEFAULT)])[0]
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= LOG_KEPT):
            shown = text[:PATIENT_ID_SHOWN]
            return ws.respond(
                http.HTTPStatus.BAD_REQUEST,
                f"Bad limit {shown!r}: expected a whole number from 1 to {LOG_KEPT}\n",
            )
        patient_id = params.get("patient", [None])[0]
        if patient_id is not None and patient_id not in self.feeds:
            return self._not_found(ws, params)
        if self.alarms is None:
            return self._json_response(http.HTTPStatus.OK, [])
        entries = self.alarms.log(patient_id, int(text))
        if inspect.isawaitable(entries):
            try:
                entries = await entries
            except Unavailable as exc:
                return ws.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, f"Alarm log: {exc}\n")
        return self._json_response(http.HTTPStatus.OK, entries)

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
    def _json_response(status: http.HTTPStatus, body: Any) -> Response:
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

    # -- viewers ---------------------------------------------------------------------------

    def first_frame(self, query: str) -> str:
        """The frame a patient viewer connecting with ``query`` gets first (``?since=SEQ&run=RUN``
        or the snapshot). Raises KeyError for an unknown patient."""
        params = parse_qs(query)
        feed = self._feed_of(params)
        if feed is None:
            raise KeyError(params.get("patient", [""])[0])
        since = params.get("since", [""])[0]
        run = params.get("run", [""])[0]
        seq = int(since) if since.isascii() and since.isdigit() else None  # not "²"
        return _json(feed.hub.first_frame(seq, run))

    async def _handle_viewer(self, ws: ServerConnection) -> None:
        # Write the first frames and join the fan-out in one synchronous step, so that no live
        # frame can slip in before them and none is missed after them.
        query = urlsplit(ws.request.path).query if ws.request else ""
        params = parse_qs(query)
        sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, VIEWER_SNDBUF)
        headers = ws.request.headers.get_all("Origin") if ws.request else []
        origin = headers[0] if len(headers) == 1 else None
        # State changes need an Origin the handshake allowed (a header: a browser page).
        self._origins[ws] = origin if origin_allowed(origin, self.allowed_origins) else None
        feed: Feed | None = None
        if _flag(params, "station"):
            snapshot = _json(self.station_frame(snapshot=True)).encode()
            broadcast([ws], snapshot, text=True)
            self.station.join(ws, len(snapshot))
            refused = self.station.counters
        else:
            feed = self._feed_of(params)
            if feed is None:  # process_request refused it already
                return
            broadcast([ws], self.first_frame(query))
            broadcast([ws], _json(self.status(feed)))
            if self.alarms is not None:
                broadcast([ws], _json(self.alarms.alarm_frame(feed.id)))
            feed.viewers.add(ws)
            if _flag(params, "overlap"):
                feed.overlap_viewers.add(ws)
            feed.counters["viewers_connected"] += 1
            refused = feed.counters
        self._where[ws] = feed
        rate = RateWindow(VIEWER_RESEND_PER_S)
        state_rate = TokenBucket(STATE_CHANGE_BURST, STATE_CHANGE_PER_S)
        try:
            async for message in ws:
                request = _request(message)
                if request is not None and request.get("type") in STATE_CHANGES:
                    if state_rate.allow(self.monotonic()):
                        self._on_state_change(ws, request)
                    else:
                        self._state_change_throttled(ws, request["type"])
                elif not rate.allow(self.monotonic()):
                    refused["viewer_messages_refused"] += 1
                elif feed is not None:
                    self._on_viewer_message(feed, ws, message)
                else:
                    self._on_station_message(ws, message)
        except ConnectionClosed:
            pass
        finally:
            self._forget(ws)

    def _state_change_throttled(self, ws: ServerConnection, kind: str) -> None:
        """A state change beyond the connection's allowance: answered (the page shows it and
        the user tries again), counted, not applied."""
        self.alarm_counters["throttled_state_changes"] += 1
        message = (
            f"{kind}: too many changes at once (over {STATE_CHANGE_BURST}, then "
            f"{STATE_CHANGE_PER_S:g} a second); try again"
        )
        self._send_all(_json({"type": "error", "request": kind, "message": message}), [ws])

    def _on_state_change(self, ws: ServerConnection, request: dict[str, Any]) -> None:
        """An ``ack``, ``audio_pause`` or ``limits`` message, on either feed: applied when the
        connection's Origin is allowed and the message valid, else answered with an error."""
        origin = self._origins.get(ws)
        kind = request.get("type")
        if origin is None or self.alarms is None:
            self.alarm_counters["refused_state_changes"] += 1
            why = "no alarms here" if self.alarms is None else "needs an allowed Origin"
            refused = {"type": "error", "request": kind, "message": f"{kind}: refused: {why}"}
            broadcast([ws], _json(refused))
            return
        try:
            sending = self.alarms.change(request, origin)
        except ValueError as exc:
            self.alarm_counters["invalid_state_changes"] += 1
            message = f"{kind}: {exc}".splitlines()[0]
            broadcast([ws], _json({"type": "error", "request": kind, "message": message}))
            return
        if sending is None:
            self.alarm_counters["state_changes"] += 1
            return
        task = asyncio.create_task(self._hand_on(ws, str(kind), sending), name=f"{kind} sent")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _hand_on(self, ws: ServerConnection, kind: str, sending: Awaitable[None]) -> None:
        """Wait for a valid state change to be handed on; one that was not is answered with an
        error frame ("try again") and counted, never lost silently."""
        try:
            await sending
        except Exception as exc:
            self.alarm_counters["unsent_state_changes"] += 1
            if not isinstance(exc, Unavailable):
                log.exception("%s: not handed on", kind)
            cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            message = f"{kind}: not applied: {cause}; try again"
            self._send_all(_json({"type": "error", "request": kind, "message": message}), [ws])
            return
        self.alarm_counters["state_changes"] += 1

    def _on_station_message(self, ws: ServerConnection, message: str | bytes) -> None:
        """``{"type": "snapshot_ok", "run": RUN}`` naming this run ends the viewer's snapshots;
        anything else is ignored."""
        request = _request(message)
        if (
            request is not None
            and request.get("type") == "snapshot_ok"
            and request.get("run") == self.hub.run_id
        ):
            self.station.acknowledged(ws)

    def _on_viewer_message(self, feed: Feed, ws: ServerConnection, message: str | bytes) -> None:
        request = _request(message)
        if request is None:
            return
        if request.get("type") == "detail":
            if request.get("on") is True:
                feed.detail_viewers.add(ws)
                broadcast([ws], _json(self.detail_status(feed)))
            else:
                feed.detail_viewers.discard(ws)
            return
        if request.get("type") != "resend":
            return
        since = request.get("since")
        if isinstance(since, bool) or not isinstance(since, int):
            return
        broadcast([ws], _json(feed.hub.resend_frame(since, request.get("run"))))
