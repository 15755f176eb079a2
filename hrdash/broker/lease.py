"""One ingest per patient across all machines: a lease in Redis, and the takeover.

A patient's lease is the string key ``hrdash:{ID}:lease`` (:func:`hrdash.broker.entries.keys_for`)
holding its holder's id, ``host:pid:random`` (:func:`holder_id`), with a ``PX`` time to live:

* :meth:`Lease.acquire` — ``SET NX PX``; or, when the key already holds this holder's id, its
  time to live is set again (a holder taking back what it had);
* :meth:`Lease.renew` / :meth:`Lease.release` — only by its holder: a Lua script compares the
  key's value with the holder's id and sets the time to live / deletes in one atomic step, so a
  holder whose lease has lapsed and been taken by another never touches the new holder's.

:class:`LeaseKeeper` is the ingest's task for many patients: it renews the leases it holds every
``every`` seconds (a third of the ttl by default) and tries, as often, to take those it does not
hold. A holder that dies stops renewing; its lease lapses ``ttl`` after its last renewal, and a
standby takes it at its next try: the takeover comes between ``ttl - every`` and ``ttl + every``
after the holder's death (plus a round trip). The new holder continues the patient's ``run``
and ``seq`` from the stream's last entry (:func:`resume_point`, :func:`continue_from`), so
viewers see one sequence, with no reading written twice.

After Redis was unreachable (or restarted empty, the leases gone), a keeper that did not hold a
patient waits until Redis has answered for ``standby_wait`` (default: the ttl) before trying to
take it, so the ingest that held it takes it back first, with the readings it held meanwhile.
The clock (monotonic seconds), the randomness of the holder id and the waits are passed in.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio import Redis

from hrdash.broker.client import (
    CONNECT_ERRORS,
    Sleep,
    describe_error,
    raise_if_cancelled,
    round_trip,
)
from hrdash.broker.entries import StreamReading, decode_reading, keys_for
from hrdash.readings import Rejected

__all__ = [
    "LEASE_TTL",
    "Lease",
    "LeaseKeeper",
    "continue_from",
    "holder_id",
    "new_run",
    "resume_point",
]

log = logging.getLogger("hrdash.broker")

LEASE_TTL = 5.0  # seconds a lease lasts without renewal: the takeover comes about this late
RESUME_SCAN = 16  # entries from the top the takeover looks through for the last good reading

# KEYS[1] the lease, ARGV[1] the holder, ARGV[2] the ttl in ms. Renew: only its holder.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# Acquire: a free lease is taken; one this holder holds already is renewed.
ACQUIRE = "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end" + RENEW
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def holder_id(rng: random.Random | None = None) -> str:
    """This process's holder id, ``host:pid:random`` (8 hex digits from ``rng``, or from the
    system's randomness): unique across machines and across restarts of one process id."""
    token = f"{rng.getrandbits(32):08x}" if rng is not None else secrets.token_hex(4)
    return f"{socket.gethostname()}:{os.getpid()}:{token}"


def new_run(rng: random.Random | None = None) -> str:
    """A new run id (8 hex digits), as the bridge makes one."""
    return f"{rng.getrandbits(32):08x}" if rng is not None else secrets.token_hex(4)


class Lease:
    """One patient's lease for ``holder``, ``ttl`` seconds long."""

    def __init__(self, client: Redis, patient_id: str, holder: str, ttl: float = LEASE_TTL):
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.client = client
        self.patient_id = patient_id
        self.key = keys_for(patient_id).lease
        self.holder = holder
        self.ttl_ms = max(1, round(ttl * 1000))
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)

    async def acquire(self) -> bool:
        """Take the lease if no one holds it (or this holder does); True if held now."""
        async with round_trip():
            return bool(await self._acquire(keys=[self.key], args=[self.holder, self.ttl_ms]))

    async def renew(self) -> bool:
        """Extend the lease by the ttl if this holder holds it; False otherwise (untouched)."""
        async with round_trip():
            return bool(await self._renew(keys=[self.key], args=[self.holder, self.ttl_ms]))

    async def release(self) -> bool:
        """Give the lease up if this holder holds it; False otherwise (untouched)."""
        async with round_trip():
            return bool(await self._release(keys=[self.key], args=[self.holder]))

    async def holder_now(self) -> str | None:
        """Who holds the lease now (None: no one)."""
        async with round_trip():
            value: Any = await self.client.get(self.key)
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


async def resume_point(client: Redis, patient_id: str) -> StreamReading | None:
    """The last good reading of the patient's stream (None: the stream is empty or holds none
    among its newest ``RESUME_SCAN`` entries)."""
    entries: Any = await client.xrevrange(
        keys_for(patient_id).readings, "+", "-", count=RESUME_SCAN
    )
    for entry_id, fields in entries or []:
        item = decode_reading(entry_id, fields)
        if not isinstance(item, Rejected):
            return item
    return None


def continue_from(last: StreamReading | None, run: str) -> tuple[str, int]:
    """``(run, next seq)`` for an ingest taking a patient over: the stream's run and the seq after
    its last reading; for an empty stream, ``run`` (a new one) from seq 1."""
    if last is None:
        return run, 1
    return last.run, last.seq + 1


class LeaseKeeper:
    """Holds what it can of ``patients``' leases for ``holder`` (see the module's docstring).
    Run :meth:`run` as a task; :meth:`close` releases what it holds.

    ``on_gained(patient_id, run, next_seq)`` is called when a lease is taken (run and next seq
    from the stream: :func:`continue_from`, a new run from ``rng`` for an empty stream) and
    ``on_lost(patient_id)`` when another holder has it; both from the keeper's task."""

    def __init__(
        self,
        client: Redis,
        holder: str,
        patients: Iterable[str],
        *,
        on_gained: Callable[[str, str, int], None],
        on_lost: Callable[[str], None],
        ttl: float = LEASE_TTL,
        every: float | None = None,
        standby_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.client = client
        self.holder = holder
        self.leases = {pid: Lease(client, pid, holder, ttl) for pid in patients}
        self.on_gained, self.on_lost = on_gained, on_lost
        self.ttl = ttl
        self.every = ttl / 3 if every is None else every
        self.standby_wait = ttl if standby_wait is None else standby_wait
        self.clock, self.rng, self.sleep = clock, rng, sleep
        self.held: set[str] = set()
        self.reachable_since: float | None = None  # None: unknown yet (first start: no wait)
        self._failed = False
        self.state = "connecting"
        self.detail = ""
        self.counters: dict[str, int] = {"gained": 0, "lost": 0, "failures": 0}

    def status(self) -> dict[str, Any]:
        """The keeper's state for ``/healthz``."""
        return {
            "holder": self.holder,
            "state": self.state,
            "detail": self.detail,
            "held": sorted(self.held),
            **self.counters,
        }

    async def run(self) -> None:
        """Renew and take leases every ``every`` seconds, forever."""
        while True:
            await self.tick()
            await self.sleep(self.every)

    async def tick(self) -> None:
        """One round: renew each lease held, try to take each not held (a standby waits for
        ``standby_wait`` of reachable Redis after a failure)."""
        try:
            for patient_id, lease in self.leases.items():
                if patient_id in self.held:
                    if not await lease.renew() and not await lease.acquire():
                        self.held.discard(patient_id)
                        self.counters["lost"] += 1
                        log.warning("redis: lease of %s lost to another ingest", patient_id)
                        self.on_lost(patient_id)
                    continue
                if not self._may_take():
                    continue
                if await lease.acquire():
                    last = await resume_point(self.client, patient_id)
                    run, next_seq = continue_from(last, new_run(self.rng))
                    self.held.add(patient_id)
                    self.counters["gained"] += 1
                    log.info("redis: took %s (run %s from seq %d)", patient_id, run, next_seq)
                    self.on_gained(patient_id, run, next_seq)
        except CONNECT_ERRORS as exc:
            raise_if_cancelled()
            self.counters["failures"] += 1
            self.state, self.detail = "down", describe_error(exc)
            self._failed = True
            self.reachable_since = None
            return
        if self.reachable_since is None:
            self.reachable_since = self.clock()
        self.state = "up"

    def _may_take(self) -> bool:
        """A standby takes a lease at once on the first start; after a failure, only once Redis
        has answered for ``standby_wait`` (its holder takes it back first)."""
        if not self._failed:
            return True
        return (
            self.reachable_since is not None
            and self.clock() - self.reachable_since >= self.standby_wait
        )

    async def close(self) -> None:
        """Release every lease held (a clean stop: a standby takes over at its next try)."""
        for patient_id in sorted(self.held):
            try:
                await self.leases[patient_id].release()
            except CONNECT_ERRORS:
                break
        self.held.clear()
