"""How long a new edge (``hrdash edge``) takes to open its port: it reads what the streams hold
first (every patient's readings, up to HRDASH_BUFFER each), so that its rings hold them and a
viewer's ``since`` resumes on it with no gap. Measured and reported, never asserted.

    python benchmarks/edge_start.py [--patients 1,16,64] [--buffer 3600] [--repeat 3]

A redis-server of its own on a free port of 127.0.0.1 (``--save '' --appendonly no``). For each
patient count: every patient's readings stream filled with ``--buffer`` readings (and a status
and an alarm frame), then :meth:`RedisEdge.start` timed from the call until the port is open
(median of ``--repeat``), with the readings its rings hold then (all of them unless the start
hit BACKLOG_WAIT) and the edge process's peak memory growth is not separated from the run's.
"""

from __future__ import annotations

import argparse
import asyncio
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

from hrdash.broker import StreamReading, StreamWriter, connect  # noqa: E402
from hrdash.broker.client import aclose_quietly  # noqa: E402
from hrdash.broker.edge_node import BACKLOG_WAIT, RedisEdge  # noqa: E402
from hrdash.settings import Settings  # noqa: E402
from hrdash.store import MEMORY  # noqa: E402
from tests.redis_support import RedisServer  # noqa: E402

T0 = 1_700_000_000_000
CHUNK = 900  # readings added at once (under the writer's hold)


async def fill(url: str, patients: int, buffer: int) -> None:
    """Every patient's streams as an ingest leaves them after ``buffer`` readings."""
    client = await connect(url)
    writer = StreamWriter(client, buffer=buffer, rng=random.Random(1))
    task = asyncio.create_task(writer.run())
    try:
        for index in range(patients):
            pid = f"bed-{index + 1:02d}"
            for first in range(1, buffer + 1, CHUNK):
                count = min(CHUNK, buffer + 1 - first)
                writer.add(
                    pid,
                    [
                        StreamReading(s, "run1", T0 + 500 * s, 60 + s % 40)
                        for s in range(first, first + count)
                    ],
                )
                await writer.drained()
            writer.add_status(pid, {"type": "status", "patient": pid, "upstream": "live"})
            writer.add_alarm(pid, {"type": "alarm", "patient": pid, "alarms": []})
        await writer.drained()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await aclose_quietly(client)


async def start_once(settings: Settings) -> tuple[float, int]:
    client = await connect(settings.redis_url)
    edge = RedisEdge(settings, client)
    began = time.perf_counter()
    await edge.start()
    took = time.perf_counter() - began
    held = sum(len(edge.hub[pid].buffer) for pid in edge.hub)
    await edge.close()
    await aclose_quietly(client)
    return took, held


async def measure(url: str, patients: int, buffer: int, repeat: int) -> dict[str, Any]:
    client = await connect(url)
    await client.flushall()
    await aclose_quietly(client)
    await fill(url, patients, buffer)
    settings = Settings.load(env={}).replace(
        redis_url=url, bridge_port=0, db=MEMORY, simulator_patients=patients, buffer=buffer
    )
    runs = [await start_once(settings) for _ in range(repeat)]
    return {
        "patients": patients,
        "readings": patients * buffer,
        "start_s": statistics.median(t for t, _ in runs),
        "held": min(h for _, h in runs),
    }


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="hrdash-bench-") as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            print(f"edge start (backlog read before the port opens; bound {BACKLOG_WAIT:g} s)")
            print(f"{'patients':>8} {'readings':>9} {'start s':>8} {'held':>9}")
            for patients in args.patients:
                row = await measure(server.url, patients, args.buffer, args.repeat)
                print(
                    f"{row['patients']:>8} {row['readings']:>9} {row['start_s']:>8.2f}"
                    f" {row['held']:>9}"
                )
        finally:
            server.stop()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--patients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64]
    )
    parser.add_argument("--buffer", type=int, default=3600)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
