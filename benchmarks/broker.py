"""The Redis Streams groundwork (``hrdash.broker``) against a real redis-server: what a reading
costs on its way through Redis, how long a takeover takes, what a Redis restart loses.
Measured and reported, never asserted.

    python benchmarks/broker.py [--patients 64] [--seconds 10] [--takeovers 5]

A redis-server of its own on a free port of 127.0.0.1 (``--save '' --appendonly no``), in this
one process (writer, reader, lease keepers share its event loop, as an ingest and an edge would
not: the ages include both sides' CPU):

* *throughput*: ``--patients`` x 500 readings added at once, drained by the writer: readings/s
  and round trips;
* *live*: every patient at 2 Hz for ``--seconds``, one reader: the age of each reading from
  :meth:`StreamWriter.add` to the reader's callback, p50 / p99 / max, and this process's CPU;
* *takeover*: a holder stops renewing (ttl 1 s, renewed every 1/3 s, a standby trying as often):
  seconds from its last renewal's task ending to the standby's ``on_gained``, ``--takeovers``
  times;
* *restart*: Redis stopped for 1 s and started again (empty) under the live load: readings lost
  (goal 0 within the hold) and the seconds from Redis answering again until the reader has had
  every reading held meanwhile (the writer's and the reader's backoff included; the load
  waits meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hrdash.broker import (  # noqa: E402
    LeaseKeeper,
    StreamReader,
    StreamReading,
    StreamWriter,
    connect,
    holder_id,
)
from hrdash.broker.client import aclose_quietly  # noqa: E402
from tests.redis_support import RedisServer  # noqa: E402

T0 = 1_700_000_000_000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def throughput(url: str, patients: list[str]) -> dict[str, Any]:
    client = await connect(url)
    await client.flushall()
    writer = StreamWriter(client, buffer=1000)
    task = asyncio.create_task(writer.run())
    start = time.perf_counter()
    for pid in patients:
        writer.add(pid, [StreamReading(s, "r", T0 + s, 70) for s in range(1, 501)])
    await writer.drained()
    took = time.perf_counter() - start
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await aclose_quietly(client)
    count = 500 * len(patients)
    return {
        "readings": count,
        "seconds": round(took, 3),
        "per_s": round(count / took),
        "round_trips": writer.counters["batches"],
    }


async def live(
    url: str, patients: list[str], seconds: float, server: RedisServer | None = None
) -> dict[str, Any]:
    """Every patient at 2 Hz; with ``server``, Redis is restarted (1 s down) halfway."""
    client = await connect(url)
    await client.flushall()
    sent: dict[tuple[str, int], float] = {}
    ages: list[float] = []
    got: dict[str, list[int]] = {pid: [] for pid in patients}
    wanted = {"seq": 0}  # the reader is waited for until every patient has this seq
    arrived = asyncio.Event()

    def on_readings(pid: str, items: list[StreamReading]) -> None:
        now = time.perf_counter()
        for item in items:
            got[pid].append(item.seq)
            at = sent.pop((pid, item.seq), None)
            if at is not None:
                ages.append(now - at)
        if wanted["seq"] and all(v and v[-1] >= wanted["seq"] for v in got.values()):
            arrived.set()

    writer = StreamWriter(client, buffer=1000, rng=random.Random(1))
    reader = StreamReader(client, patients, on_readings=on_readings, rng=random.Random(2))
    tasks = [asyncio.create_task(writer.run()), asyncio.create_task(reader.run())]
    cpu0 = time.process_time()
    start = time.perf_counter()
    step = 0.5 / len(patients)
    seq = 0
    restarted_at = caught_up = None
    while time.perf_counter() - start < seconds:
        seq += 1
        for pid in patients:
            sent[(pid, seq)] = time.perf_counter()
            writer.add(pid, [StreamReading(seq, "r", T0 + 500 * seq, 70)])
            await asyncio.sleep(step)
        if (
            server is not None
            and restarted_at is None
            and time.perf_counter() - start > seconds / 2
        ):
            restarted_at = time.perf_counter()
            await asyncio.to_thread(server.stop)
            down_until = time.perf_counter() + 1.0
            while time.perf_counter() < down_until:
                seq += 1
                for pid in patients:
                    sent[(pid, seq)] = time.perf_counter()
                    writer.add(pid, [StreamReading(seq, "r", T0 + 500 * seq, 70)])
                    await asyncio.sleep(step)
            await asyncio.to_thread(server.start)
            back = time.perf_counter()
            wanted["seq"] = seq  # the last seq held while Redis was down
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await arrived.wait()
            caught_up = time.perf_counter() - back
    wanted["seq"] = seq
    arrived.clear()
    if not all(v and v[-1] >= seq for v in got.values()):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await arrived.wait()
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - start
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await aclose_quietly(client)
    lost = sum(seq - len(set(v)) for v in got.values())
    dupes = sum(len(v) - len(set(v)) for v in got.values())
    result: dict[str, Any] = {
        "readings": sum(len(v) for v in got.values()),
        "age_ms_p50": round(1000 * pct(ages, 0.5), 1),
        "age_ms_p99": round(1000 * pct(ages, 0.99), 1),
        "age_ms_max": round(1000 * max(ages), 1),
        "cpu_percent": round(100 * cpu / wall, 1),
        "lost": lost,
        "duplicates": dupes,
        "writer": {k: writer.counters[k] for k in ("dropped", "failures", "duplicates")},
    }
    if caught_up is not None:
        result["caught_up_s"] = round(caught_up, 2)
    return result


async def takeover(url: str, times: int) -> dict[str, Any]:
    client = await connect(url)
    ttl = 1.0
    results = []
    for n in range(times):
        await client.flushall()
        gained: list[float] = []
        taken = asyncio.Event()

        def on_gained(*_: Any, gained: list[float] = gained, taken: asyncio.Event = taken) -> None:
            gained.append(time.perf_counter())
            taken.set()

        a = LeaseKeeper(
            client,
            holder_id(random.Random(2 * n)),
            ["bed-01"],
            on_gained=lambda *_: None,
            on_lost=lambda _: None,
            ttl=ttl,
        )
        b = LeaseKeeper(
            client,
            holder_id(random.Random(2 * n + 1)),
            ["bed-01"],
            on_gained=on_gained,
            on_lost=lambda _: None,
            ttl=ttl,
        )
        await a.tick()
        ta = asyncio.create_task(a.run())
        tb = asyncio.create_task(b.run())
        await asyncio.sleep(1.0 + random.random() * 0.33)
        ta.cancel()
        died = time.perf_counter()
        await taken.wait()
        results.append(gained[0] - died)
        tb.cancel()
        for task in (ta, tb):
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await aclose_quietly(client)
    return {
        "ttl_s": ttl,
        "every_s": round(ttl / 3, 3),
        "takeover_s": [round(t, 3) for t in results],
        "median_s": round(statistics.median(results), 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--takeovers", type=int, default=5)
    args = parser.parse_args()
    patients = [f"bed-{i:02d}" for i in range(1, args.patients + 1)]
    with tempfile.TemporaryDirectory(prefix="hrdash-bench-redis-") as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            print("throughput", await throughput(server.url, patients), flush=True)
            print("live", await live(server.url, patients, args.seconds), flush=True)
            print("takeover", await takeover(server.url, args.takeovers), flush=True)
            print("restart", await live(server.url, patients, args.seconds, server), flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
