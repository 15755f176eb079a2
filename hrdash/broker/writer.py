"""The ingest's side of the fan-out: every patient's readings, status and alarm frames, each
written once to its stream (:mod:`hrdash.broker.entries`).

:meth:`StreamWriter.add` takes readings that already have their seq and run (synchronous, never
waits); the writer's task writes each once, every patient's pending readings in one pipelined
round trip per batch, each ``XADD`` with ``MAXLEN ~ buffer``. A write goes through a Lua script
that first checks the patient's lease (:mod:`hrdash.broker.lease`): a writer whose lease another
ingest holds writes nothing (counted ``fenced``; its held readings are dropped and
``on_fenced`` is called), and a lapsed lease (Redis restarted empty) is taken back. While Redis
is unreachable readings are held, at most ``hold`` per patient (the oldest dropped beyond it,
counted ``dropped``), and written in order when it returns; the writer reconnects with capped,
jittered backoff. A batch retried after a lost reply cannot store a reading twice: a reading's
entry id is its seq, and Redis refuses an id not newer than the stream's top (counted
``duplicates``). Status and alarm frames are state: a newer one replaces one not yet written.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from hrdash.broker.client import (
    CONNECT_ERRORS,
    DOWN_ERRORS,
    Sleep,
    backoff,
    describe_error,
    raise_if_cancelled,
    round_trip,
)
from hrdash.broker.entries import (
    FRAME_FIELD,
    StreamReading,
    encode_frame,
    encode_reading,
    keys_for,
)

__all__ = ["BATCH", "HOLD", "STATE_KEPT", "StreamWriter"]

log = logging.getLogger("hrdash.broker")

HOLD = 1000  # readings held per patient while Redis is unreachable (the oldest dropped beyond)
BATCH = 500  # readings per patient in one write at most
STATE_KEPT = 100  # entries a status or alarm stream keeps (MAXLEN ~): readers need the newest
LEASE_MS = 5000  # ms a lease taken back by a write lasts (the holder's keeper renews it)

# The start of both scripts below: KEYS[1] the lease, ARGV[1] the writer's holder id ('' = no
# lease), ARGV[2] the lease's ms when taken back. Another holder → -1, nothing written; no
# holder (Redis came back empty) → the writer takes the lease back.
LEASE_GUARD = """
if ARGV[1] ~= '' then
  local holder = redis.call('GET', KEYS[1])
  if not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  elseif holder ~= ARGV[1] then
    return -1
  end
end
"""

# KEYS[1] the lease, KEYS[2] the readings stream; ARGV[1] the holder ('' = no lease), ARGV[2]
# the lease's ms when taken back, ARGV[3] the MAXLEN, then five per reading: id seq run time
# bpm. Returns how many were added (the others were not newer than the top), -1 when another
# holds the lease.
APPEND_READINGS = (
    LEASE_GUARD
    + """
local added = 0
for i = 4, #ARGV, 5 do
  local r = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], ARGV[i],
    'seq', ARGV[i + 1], 'run', ARGV[i + 2], 'time', ARGV[i + 3], 'bpm', ARGV[i + 4])
  if type(r) ~= 'table' then added = added + 1 end
end
return added
"""
)

# KEYS[1] the lease, KEYS[2] a status or alarm stream; ARGV[1] holder, ARGV[2] lease ms,
# ARGV[3] MAXLEN, ARGV[4] the frame's JSON. Returns 1, or -1 when another holds the lease.
APPEND_FRAME = (
    LEASE_GUARD
    + """
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'frame', ARGV[4])
return 1
"""
)


class _Held(NamedTuple):
    """A reading waiting to be written: its seq and its script arguments, encoded once (id,
    seq, run, time, bpm)."""

    seq: int
    args: tuple[str, str, str, str, str]


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


class StreamWriter:
    """The ingest's writer of every patient's readings, status and alarm frames (see the
    module's docstring). Run :meth:`run` as a task; :meth:`add`, :meth:`add_status` and
    :meth:`add_alarm` never wait.

    ``buffer`` is the readings streams' ``MAXLEN ~`` (``HRDASH_BUFFER``); ``hold`` the readings
    held per patient at most while they cannot be written; ``holder`` the lease holder's id
    (``""``: write without a lease); ``lease_ms`` how long a lease taken back by a write lasts;
    ``on_fenced(patient_id)`` is called when a write found the patient's lease held by another
    ingest (its held readings are dropped then). ``rng`` jitters the backoff; ``sleep`` waits."""

    def __init__(
        self,
        client: Redis,
        *,
        buffer: int,
        hold: int = HOLD,
        holder: str = "",
        lease_ms: int = LEASE_MS,
        batch: int = BATCH,
        on_fenced: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if buffer < 1 or hold < 1 or batch < 1:
            raise ValueError("buffer, hold and batch must be at least 1")
        self.client = client
        self.buffer, self.hold, self.batch = buffer, hold, batch
        self.holder, self.lease_ms = holder, lease_ms
        self.on_fenced = on_fenced
        self.rng = rng
        self.sleep = sleep
        self._held: dict[str, deque[_Held]] = {}
        self._frames: dict[tuple[str, str], str] = {}  # (patient, kind) → the newest's JSON
        self._scripts = {APPEND_READINGS: _sha(APPEND_READINGS), APPEND_FRAME: _sha(APPEND_FRAME)}
        self._load_scripts = True  # before the first write, and when Redis has lost them
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.state = "connecting"  # "up" once a write went through; "down" while failing
        self.detail = ""  # the last failure's cause
        self.counters: dict[str, int] = {
            "written": 0,  # readings added to their stream
            "duplicates": 0,  # readings the stream had already (a retried batch)
            "dropped": 0,  # readings dropped from a full hold (Redis unreachable too long)
            "fenced": 0,  # readings not written: another ingest holds the patient's lease
            "frames_written": 0,  # status and alarm frames written
            "frames_replaced": 0,  # held frames replaced by a newer one before being written
            "batches": 0,  # round trips that went through
            "failures": 0,  # round trips that failed (Redis unreachable)
        }

    # -- in (synchronous) ------------------------------------------------------------------

    def add(self, patient_id: str, readings: Iterable[StreamReading]) -> None:
        """Hold ``readings`` (seq increasing) until written; beyond ``hold`` the oldest held are
        dropped and counted. Raises ValueError for a reading no reader would accept."""
        keys_for(patient_id)  # a bad id fails here, not in the writer's task
        held = self._held.setdefault(patient_id, deque())
        for reading in readings:
            entry_id, f = encode_reading(reading)  # checked now: the task must not fail later
            held.append(_Held(reading.seq, (entry_id, f["seq"], f["run"], f["time"], f["bpm"])))
            if len(held) > self.hold:
                held.popleft()
                self.counters["dropped"] += 1
        self._pending()

    def add_status(self, patient_id: str, frame: Mapping[str, Any]) -> None:
        """Write the patient's status frame; an older one not yet written is replaced."""
        self._add_frame(patient_id, "status", frame)

    def add_alarm(self, patient_id: str, frame: Mapping[str, Any]) -> None:
        """Write the patient's alarm frame; an older one not yet written is replaced."""
        self._add_frame(patient_id, "alarm", frame)

    def _add_frame(self, patient_id: str, kind: str, frame: Mapping[str, Any]) -> None:
        keys_for(patient_id)
        if frame.get("type") != kind or frame.get("patient") != patient_id:
            raise ValueError(f"expected a {kind} frame of patient {patient_id!r}")
        text = encode_frame(frame)[FRAME_FIELD]  # checked now, written as it is
        if (patient_id, kind) in self._frames:
            self.counters["frames_replaced"] += 1
        self._frames[(patient_id, kind)] = text
        self._pending()

    def _pending(self) -> None:
        self._idle.clear()
        self._wake.set()

    def held(self, patient_id: str | None = None) -> int:
        """Readings not written yet: the patient's, or (None) everyone's."""
        if patient_id is not None:
            return len(self._held.get(patient_id, ()))
        return sum(len(h) for h in self._held.values())

    def status(self) -> dict[str, Any]:
        """The writer's state for ``/healthz``."""
        return {
            "state": self.state,
            "detail": self.detail,
            "held": self.held(),
            **self.counters,
        }

    async def drained(self) -> None:
        """Wait until everything added so far is written (or dropped)."""
        await self._idle.wait()

    # -- the task --------------------------------------------------------------------------

    async def run(self) -> None:
        """Write what is held, forever; on a failure, back off and write it again."""
        delays: Generator[float] | None = None
        while True:
            if not self.held() and not self._frames:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            try:
                await self.write_once()
            except CONNECT_ERRORS as exc:
                raise_if_cancelled()
                self.counters["failures"] += 1
                cause = describe_error(exc)
                if self.state != "down" or cause != self.detail:
                    log.warning("redis: writes failing (%s); holding readings", cause)
                self.state, self.detail = "down", cause
                delays = delays or backoff(self.rng)
                await self.sleep(next(delays))
                continue
            if self.state != "up":
                if self.state == "down":
                    log.info("redis: writing again (%d readings held)", self.held())
                self.state = "up"
            delays = None

    async def write_once(self) -> None:
        """One round trip: up to ``batch`` held readings of every patient and every held frame,
        pipelined. Raises one of DOWN_ERRORS when Redis cannot be reached (everything stays
        held)."""
        if self._load_scripts:
            async with round_trip():
                for script in self._scripts:
                    await self.client.script_load(script)
            self._load_scripts = False
        taken: list[tuple[str, list[_Held]]] = []
        frames = list(self._frames.items())
        sha_readings, sha_frame = self._scripts[APPEND_READINGS], self._scripts[APPEND_FRAME]
        pipe = self.client.pipeline(transaction=False)
        for patient_id, held in self._held.items():
            if not held:
                continue
            chunk = [held[i] for i in range(min(self.batch, len(held)))]
            keys = keys_for(patient_id)
            args: list[str | int] = [self.holder, self.lease_ms, self.buffer]
            for item in chunk:
                args += item.args
            pipe.evalsha(sha_readings, 2, keys.lease, keys.readings, *args)
            taken.append((patient_id, chunk))
        for (patient_id, kind), frame in frames:
            keys = keys_for(patient_id)
            stream = keys.status if kind == "status" else keys.alarms
            args = [self.holder, self.lease_ms, STATE_KEPT, frame]
            pipe.evalsha(sha_frame, 2, keys.lease, stream, *args)
        if not taken and not frames:
            return
        async with round_trip():
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, DOWN_ERRORS):
                raise result
        self.counters["batches"] += 1
        for (patient_id, chunk), result in zip(taken, results, strict=False):
            self._written(patient_id, chunk, result)
        for ((patient_id, kind), frame), result in zip(frames, results[len(taken) :], strict=True):
            if isinstance(result, NoScriptError):  # Redis restarted: load, then write again
                self._load_scripts = True
                continue
            if self._frames.get((patient_id, kind)) is frame:
                del self._frames[(patient_id, kind)]
            if result == -1:
                self._fenced(patient_id)
            elif isinstance(result, Exception):
                log.warning("redis: %s frame of %s not written: %s", kind, patient_id, result)
            else:
                self.counters["frames_written"] += 1

    def _written(self, patient_id: str, chunk: list[_Held], result: Any) -> None:
        if isinstance(result, NoScriptError):  # Redis restarted: load, then write again
            self._load_scripts = True
            return
        held = self._held[patient_id]
        last = chunk[-1].seq
        while held and held[0].seq <= last:  # (add() may have dropped some meanwhile)
            held.popleft()
        if result == -1:
            self.counters["fenced"] += len(chunk)
            self._fenced(patient_id)
        elif isinstance(result, Exception):  # refused by Redis (e.g. the key is not a stream)
            self.counters["dropped"] += len(chunk)
            log.warning("redis: readings of %s not written: %s", patient_id, result)
        else:
            added = int(result)
            self.counters["written"] += added
            self.counters["duplicates"] += len(chunk) - added

    def _fenced(self, patient_id: str) -> None:
        held = self._held.get(patient_id)
        if held:
            self.counters["fenced"] += len(held)
            held.clear()
        log.warning("redis: patient %s is held by another ingest; not writing it", patient_id)
        if self.on_fenced is not None:
            self.on_fenced(patient_id)
