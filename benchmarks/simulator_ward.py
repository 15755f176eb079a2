"""The embedded simulator serving a ward: CPU % of one core and RSS of `hrdash simulate` with N
patients, one client each, for a fixed time. Measured and reported, never asserted.

    python benchmarks/simulator_ward.py --patients 64 --period 0.5 --seconds 30 --clients 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hrdash.simulator import patient_ids  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_listening(port: int, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"the simulator did not listen on {port} within {seconds} s")


async def count_frames(ws: ClientConnection, counts: list[int], index: int) -> None:
    async for _ in ws:
        counts[index] += 1


def start_simulator(port: int, patients: int, period: float) -> subprocess.Popen[bytes]:
    """`hrdash simulate` on ``port`` with no HRDASH_* variable from our environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HRDASH_")}
    argv = [sys.executable, "-m", "hrdash", "simulate", "--simulator-port", str(port)]
    argv += ["--simulator-patients", str(patients), "--simulator-period", str(period)]
    argv += ["--simulator-seed", "1", "--log-level", "warning"]
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)


async def measure(patients: int, period: float, seconds: float, clients: int) -> dict[str, float]:
    port = free_port()
    proc = start_simulator(port, patients, period)
    try:
        await wait_listening(port)
        sim = psutil.Process(proc.pid)
        paths = [f"/patients/{pid}" for pid in patient_ids(patients)] * clients
        conns = [await connect(f"ws://127.0.0.1:{port}{path}") for path in paths]
        counts = [0] * len(conns)
        readers = [asyncio.create_task(count_frames(ws, counts, i)) for i, ws in enumerate(conns)]
        await asyncio.sleep(2 * period)  # every client has its first frame
        start_counts = sum(counts)
        cpu0, t0 = sim.cpu_times(), time.monotonic()
        rss: list[int] = []
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(1.0)
            rss.append(sim.memory_info().rss)
        cpu1, t1 = sim.cpu_times(), time.monotonic()
        received = sum(counts) - start_counts
        for task in readers:
            task.cancel()
        for ws in conns:
            await ws.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    elapsed = t1 - t0
    return {
        "cpu_percent_of_a_core": 100 * busy / elapsed,
        "rss_mb_max": max(rss) / 2**20,
        "rss_mb_last": rss[-1] / 2**20,
        "frames_received": received,
        "frames_expected": len(conns) * elapsed / period,
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=64)
    parser.add_argument("--period", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=1, help="clients per patient")
    args = parser.parse_args()
    result = asyncio.run(measure(args.patients, args.period, args.seconds, args.clients))
    print(
        f"| figure ({args.patients} patients, {1 / args.period:g} Hz, {args.clients} client "
        f"each, {result['seconds']:.0f} s) | value |"
    )
    print("|---|---|")
    print(f"| simulator CPU (% of a core) | {result['cpu_percent_of_a_core']:.1f} |")
    print(
        f"| simulator RSS max / last (MB) | {result['rss_mb_max']:.1f} / "
        f"{result['rss_mb_last']:.1f} |"
    )
    print(
        f"| frames received / expected | {result['frames_received']} / "
        f"{result['frames_expected']:.0f} |"
    )


if __name__ == "__main__":
    main()
