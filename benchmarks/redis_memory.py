"""What the fan-out costs in Redis memory: every patient's readings stream filled to
``HRDASH_BUFFER`` (``MAXLEN ~``) by the ingest's writer, measured with ``MEMORY USAGE`` on a real
redis-server. Measured and reported, never asserted.

    python benchmarks/redis_memory.py [--patients 64] [--buffer 3600]

A redis-server of its own on a free port of 127.0.0.1 (``--save '' --appendonly no``). Each
patient gets ``buffer`` + 10 % readings at 2 Hz (simulator-like bpm with one decimal, a run id
as the ingest makes them), so that the cap has trimmed; then ``MEMORY USAGE key SAMPLES 0``
(every entry counted) per readings stream, and the server's ``used_memory`` before and after.
Status and alarm streams keep ``STATE_KEPT`` frames each: one patient's are measured too, after
``STATE_KEPT`` + 10 status frames of the size an ingest writes.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hrdash.broker import StreamReading, StreamWriter, connect, keys_for  # noqa: E402
from hrdash.broker.client import aclose_quietly  # noqa: E402
from hrdash.broker.writer import STATE_KEPT  # noqa: E402
from tests.redis_support import RedisServer  # noqa: E402

T0 = 1_700_000_000_000


def status_frame(pid: str, run: str, now: int) -> dict[str, Any]:
    """A status frame about the size an ingest writes (counters, detail, writer, lease)."""
    counters = {name: 0 for name in ("received", "accepted", "duplicates", "reconnects")}
    return {
        "type": "status",
        "patient": pid,
        "run": run,
        "upstream": "live",
        "detail": "",
        "first_seq": 1,
        "last_seq": 4000,
        "counters": {**counters, "not_json": 0, "bad_value": 0, "bad_time": 0},
        "source_detail": {"url": "ws://127.0.0.1:8766/patients/" + pid, "recorder": {}},
        "ingest": {
            "holder": "host-1234-abcd",
            "writer": {"state": "up", "detail": "", "held": 0, "written": 4000},
            "lease": {"held": 64, "state": "up"},
        },
        "now": now,
    }


async def measure(url: str, patients: int, buffer: int) -> dict[str, Any]:
    client = await connect(url)
    before = int((await client.info("memory"))["used_memory"])
    writer = StreamWriter(client, buffer=buffer, hold=buffer * 2, batch=500)
    task = asyncio.create_task(writer.run())
    rng = random.Random(1)
    ids = [f"bed-{i:02d}" for i in range(1, patients + 1)]
    count = buffer + buffer // 10
    run = secrets.token_hex(4)
    for pid in ids:
        bpm = 75.0
        for start in range(0, count, 500):
            batch = []
            for seq in range(start + 1, min(count, start + 500) + 1):
                bpm = min(180.0, max(40.0, bpm + rng.uniform(-1.5, 1.5)))
                batch.append(StreamReading(seq, run, T0 + 500 * seq, round(bpm, 1)))
            writer.add(pid, batch)
            await writer.drained()
    for n in range(STATE_KEPT + 10):
        writer.add_status(ids[0], status_frame(ids[0], run, T0 + 1000 * n))
        await writer.drained()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    after = int((await client.info("memory"))["used_memory"])
    per_stream = []
    lengths = []
    for pid in ids:
        key = keys_for(pid).readings
        per_stream.append(int(await client.memory_usage(key, samples=0)))
        lengths.append(int(await client.xlen(key)))
    status_key = keys_for(ids[0]).status
    status_bytes = int(await client.memory_usage(status_key, samples=0))
    status_len = int(await client.xlen(status_key))
    await aclose_quietly(client)
    entries = sum(lengths)
    return {
        "patients": patients,
        "buffer": buffer,
        "written_per_patient": count,
        "kept_per_patient_min_max": (min(lengths), max(lengths)),
        "stream_bytes_mean": sum(per_stream) / len(per_stream),
        "bytes_per_reading": sum(per_stream) / entries,
        "status_stream_bytes": status_bytes,
        "status_entries": status_len,
        "used_memory_delta": after - before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=64)
    parser.add_argument("--buffer", type=int, default=3600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hrdash-redis-mem-") as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            result = asyncio.run(measure(server.url, args.patients, args.buffer))
        finally:
            server.stop()
    mib = 1024 * 1024
    low, high = result["kept_per_patient_min_max"]
    print(f"| figure | value ({args.patients} patients, HRDASH_BUFFER={args.buffer}) |")
    print("|---|---|")
    print(f"| readings kept per patient (MAXLEN ~) | {low}-{high} |")
    print(f"| readings stream, MEMORY USAGE | {result['stream_bytes_mean'] / 1024:.0f} KiB |")
    print(f"| bytes per reading kept | {result['bytes_per_reading']:.1f} |")
    print(
        f"| status stream ({result['status_entries']} frames) | "
        f"{result['status_stream_bytes'] / 1024:.0f} KiB |"
    )
    print(f"| redis used_memory, before → after | +{result['used_memory_delta'] / mib:.1f} MiB |")


if __name__ == "__main__":
    main()
