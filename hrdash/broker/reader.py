"""The edge's side of the fan-out: many patients' streams read with ``XREAD BLOCK``.

:class:`StreamReader` runs one ``XREAD BLOCK`` over every patient's readings, status and alarm
streams (:mod:`hrdash.broker.entries`) from the last id it saw of each; it reconnects with
backoff and goes on from those ids, so nothing is missed or delivered twice, and a reader
started with another's :attr:`~StreamReader.positions` goes on where that one stopped. A stream
found shorter than the reader's last id after a reconnect (Redis restarted empty) is read from
its start (counted ``resets``). An edge answers its viewers' ``since``/``resend`` from its
rings, which hold what the streams hold (it reads them before it serves: see
:mod:`hrdash.broker.edge_node`). Bad entries are counted by reason and passed over.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any

from redis.asyncio import Redis

from hrdash.broker.client import (
    BLOCK_MS,
    CONNECT_ERRORS,
    Sleep,
    backoff,
    describe_error,
    raise_if_cancelled,
    round_trip,
)
from hrdash.broker.entries import (
    StreamReading,
    decode_frame,
    decode_reading,
    keys_for,
    parse_id,
)
from hrdash.readings import RejectCounter, Rejected

__all__ = ["READ_COUNT", "StreamReader"]

log = logging.getLogger("hrdash.broker")

READ_COUNT = 500  # entries per stream per XREAD at most
REJECT_LOG_EVERY = 10.0  # seconds between two log lines for the same bad-entry reason

ReadingsCallback = Callable[[str, list[StreamReading]], None]
FrameCallback = Callable[[str, dict[str, Any]], None]


def _entries(reply: Any) -> list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """An XREAD reply (RESP2 list or RESP3 map) as ``[(key, [(id, fields), ...]), ...]``."""
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    return [(_text(key), list(entries or [])) for key, entries in pairs]


def _text(entry_id: Any) -> str:
    return entry_id.decode("ascii", "replace") if isinstance(entry_id, bytes) else str(entry_id)


class StreamReader:
    """The edge's reader of many patients' streams (see the module's docstring). Run
    :meth:`run` as a task.

    ``on_readings(patient_id, readings)`` gets each patient's new readings in stream order,
    ``on_status`` / ``on_alarm`` ``(patient_id, frame)`` each new status / alarm frame; on its
    first start the reader delivers each patient's newest status and alarm frame, and the
    readings after ``positions`` (stream key → last id seen, e.g. a previous reader's
    :attr:`positions`), or, for a stream not named there, everything the stream holds
    (``backlog=True``) or only what comes from now on. ``clock`` (Unix s) stamps ``last_read``;
    ``rng`` jitters the backoff."""

    def __init__(
        self,
        client: Redis,
        patients: Iterable[str],
        *,
        on_readings: ReadingsCallback,
        on_status: FrameCallback | None = None,
        on_alarm: FrameCallback | None = None,
        positions: Mapping[str, str] | None = None,
        backlog: bool = True,
        block_ms: int = BLOCK_MS,
        count: int = READ_COUNT,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.client = client
        self.patients = list(patients)
        self.on_readings, self.on_status, self.on_alarm = on_readings, on_status, on_alarm
        self.backlog = backlog
        self.block_ms, self.count = block_ms, count
        self.clock = clock
        self.rng = rng
        self.sleep = sleep
        self._kind: dict[str, tuple[str, str]] = {}  # stream key → (patient id, kind)
        for patient_id in self.patients:
            keys = keys_for(patient_id)
            self._kind[keys.readings] = (patient_id, "readings")
            self._kind[keys.status] = (patient_id, "status")
            self._kind[keys.alarms] = (patient_id, "alarm")
        self.positions: dict[str, str] = {
            key: value for key, value in (positions or {}).items() if key in self._kind
        }
        self.rejects = RejectCounter(REJECT_LOG_EVERY)
        self.state = "connecting"
        self.detail = ""
        self.last_read: float | None = None
        self._started = False
        self.counters: dict[str, int] = {
            "readings": 0,  # readings delivered
            "status": 0,  # status frames delivered
            "alarms": 0,  # alarm frames delivered
            "rejected": 0,  # entries refused (by reason in rejects)
            "failures": 0,  # reads that failed (Redis unreachable)
            "resets": 0,  # streams read again from their start (Redis restarted empty)
        }

    def status(self) -> dict[str, Any]:
        """The reader's state for ``/healthz``."""
        return {
            "state": self.state,
            "detail": self.detail,
            **self.counters,
            "rejected_by": dict(self.rejects),
        }

    async def run(self) -> None:
        """Read forever: on a failure, back off, reconnect and go on from the last ids."""
        delays: Generator[float] | None = None
        resync = True
        while True:
            try:
                if resync:
                    await self._resync()
                    resync = False
                await self.read_once()
            except CONNECT_ERRORS as exc:
                raise_if_cancelled()
                self.counters["failures"] += 1
                cause = describe_error(exc)
                if self.state != "down":
                    log.warning("redis: reads failing (%s); reconnecting", cause)
                self.state, self.detail = "down", cause
                resync = True
                delays = delays or backoff(self.rng)
                await self.sleep(next(delays))
                continue
            if self.state != "up":
                if self.state == "down":
                    log.info("redis: reading again")
                self.state = "up"
            delays = None

    async def _resync(self) -> None:
        """Before the first read and after each failure: where to read each stream from. The
        first time, each state stream's newest entry is delivered and readings start at
        ``positions`` (or the backlog / the top); after a failure, a stream whose top is now
        older than the reader's last id (Redis restarted empty) is read from its start."""
        pipe = self.client.pipeline(transaction=False)
        keys = list(self._kind)
        for key in keys:
            pipe.xrevrange(key, "+", "-", count=1)
        async with round_trip():
            tops = await pipe.execute()
        for key, top in zip(keys, tops, strict=True):
            _, kind = self._kind[key]
            newest = top[0] if top else None
            top_id = _text(newest[0]) if newest else None
            known = self.positions.get(key)
            if known is not None:
                at, top_at = parse_id(known), parse_id(top_id) if top_id else None
                if at is not None and at > (0, 0) and (top_at is None or top_at < at):
                    self.positions[key] = "0-0"
                    self.counters["resets"] += 1
                    log.info("redis: %s is behind what was read; reading it from its start", key)
                continue
            if kind == "readings":
                self.positions[key] = "0-0" if self.backlog or top_id is None else top_id
            elif newest is not None:
                self.positions[key] = top_id or "0-0"
                self._deliver(key, [newest])
            else:
                self.positions[key] = "0-0"
        self._started = True

    async def read_once(self) -> None:
        """One ``XREAD BLOCK`` over every stream from its position; delivers what came."""
        if not self._started:
            await self._resync()
        streams: dict[Any, Any] = dict(self.positions)
        async with round_trip(self.block_ms / 1000):
            reply = await self.client.xread(streams, count=self.count, block=self.block_ms)
        if self.clock is not None:
            self.last_read = self.clock()
        for key, entries in _entries(reply):
            if entries:
                self._deliver(key, entries)

    def _deliver(self, key: str, entries: list[Any]) -> None:
        patient_id, kind = self._kind[key]
        self.positions[key] = _text(entries[-1][0])  # bad entries are passed over too
        if kind == "readings":
            readings = self._readings(key, entries)
            if readings:
                self.counters["readings"] += len(readings)
                self.on_readings(patient_id, readings)
            return
        callback = self.on_status if kind == "status" else self.on_alarm
        for entry_id, fields in entries:
            frame = decode_frame(kind, patient_id, entry_id, fields)
            if isinstance(frame, Rejected):
                self._reject(key, frame)
                continue
            self.counters["status" if kind == "status" else "alarms"] += 1
            if callback is not None:
                callback(patient_id, frame)

    def _reject(self, key: str, rejected: Rejected) -> None:
        self.counters["rejected"] += 1
        now = self.clock() if self.clock is not None else 0.0
        suppressed = self.rejects.add(rejected.reason, now)
        if suppressed is not None:
            extra = f" ({suppressed} more since)" if suppressed else ""
            log.warning("redis: %s: entry refused: %s%s", key, rejected.detail, extra)

    def _readings(self, key: str, entries: list[Any]) -> list[StreamReading]:
        """The good readings of ``entries``; the bad ones counted and left out."""
        out = []
        for entry_id, fields in entries:
            item = decode_reading(entry_id, fields)
            if isinstance(item, Rejected):
                self._reject(key, item)
            else:
                out.append(item)
        return out
