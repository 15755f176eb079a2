"""The bridge serving a station: CPU % of one core and RSS of `hrdash bridge` reading N simulated
patients (`hrdash simulate`, HRDASH_SIMULATOR_PATIENTS=N) with V `/ws?station=1` viewers, for a
fixed time. Measured and reported, never asserted.

    python benchmarks/station_bridge.py --patients 64 --viewers 100 --seconds 60

First a window with no viewer (the ingest of N patients alone), then one with the V station
viewers. The viewers are websockets clients in this process: all but one only count frames and
bytes; the probe (one of them) parses every frame and notes, for each reading it sees first in a
patient's ``recent``, age = arrival (this machine's clock) - the reading's ``time`` (the
simulator's stamp, same clock): simulator → bridge → station frame → viewer, including the
station feed's pacing (a frame at most every 0.1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import percentile  # noqa: E402
from benchmarks.simulator_ward import free_port, wait_listening  # noqa: E402

READY_TIMEOUT = 30.0  # seconds for every patient to be live


def start(command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``hrdash COMMAND`` with ``env`` and no HRDASH_* variable from our environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HRDASH_")}
    return subprocess.Popen(
        [sys.executable, "-m", "hrdash", command],
        env={**clean, **env, "HRDASH_LOG_LEVEL": "warning"},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def api_patients(port: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/patients", timeout=5) as response:
        return list(json.loads(response.read()))


async def wait_all_live(port: int, patients: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        listing = await asyncio.to_thread(api_patients, port)
        if len(listing) == patients and all(p["state"] == "live" for p in listing):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"not every patient was live within {READY_TIMEOUT} s")


class Viewer:
    """A station viewer: counts frames and bytes; the probe also times new readings."""

    def __init__(self, probe: bool) -> None:
        self.probe = probe
        self.frames = 0
        self.bytes = 0
        self.ages: list[float] = []
        self.seen: dict[str, int] = {}  # patient → last seq seen
        self.counting = False

    async def read(self, ws: ClientConnection) -> None:
        async for message in ws:
            if not self.counting:
                if self.probe:
                    self._note(message, time.time())
                continue
            self.frames += 1
            self.bytes += len(message)
            if self.probe:
                self._note(message, time.time())

    def _note(self, message: str | bytes, arrived: float) -> None:
        frame = json.loads(message)
        for patient in frame["patients"]:
            last = self.seen.get(patient["id"])
            for reading in patient["recent"]:
                if last is not None and reading["seq"] > last and self.counting:
                    self.ages.append(1000 * arrived - reading["time"])
            if patient["recent"]:
                self.seen[patient["id"]] = max(last or 0, patient["recent"][-1]["seq"])


async def window(bridge: psutil.Process, seconds: float) -> dict[str, float]:
    """The bridge's CPU (% of one core) and RSS (sampled every second) over ``seconds``."""
    cpu0, t0 = bridge.cpu_times(), time.monotonic()
    rss: list[int] = []
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(1.0)
        rss.append(bridge.memory_info().rss)
    cpu1, t1 = bridge.cpu_times(), time.monotonic()
    busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return {
        "cpu_percent_of_a_core": 100 * busy / (t1 - t0),
        "rss_mb_max": max(rss) / 2**20,
        "rss_mb_last": rss[-1] / 2**20,
        "seconds": t1 - t0,
    }


async def measure(
    patients: int, viewers: int, seconds: float, idle_seconds: float, period: float
) -> dict[str, Any]:
    sim_port, bridge_port = free_port(), free_port()
    env = {
        "HRDASH_SIMULATOR_PATIENTS": str(patients),
        "HRDASH_SIMULATOR_PORT": str(sim_port),
        "HRDASH_SIMULATOR_PERIOD": str(period),
        "HRDASH_SIMULATOR_SEED": "1",
        "HRDASH_BRIDGE_PORT": str(bridge_port),
        "HRDASH_PORT": str(free_port()),
    }
    simulator = start("simulate", env)
    bridge_proc = start("bridge", env)
    try:
        await wait_listening(sim_port)
        await wait_listening(bridge_port)
        await wait_all_live(bridge_port, patients)
        bridge = psutil.Process(bridge_proc.pid)
        idle = await window(bridge, idle_seconds)
        views = [Viewer(probe=i == 0) for i in range(viewers)]
        conns = [
            await connect(f"ws://127.0.0.1:{bridge_port}/ws?station=1", max_size=None)
            for _ in views
        ]
        readers = [asyncio.create_task(v.read(ws)) for v, ws in zip(views, conns, strict=True)]
        await asyncio.sleep(2.0)  # every viewer past its snapshot
        for view in views:
            view.counting = True
        busy = await window(bridge, seconds)
        for view in views:
            view.counting = False
        health = await asyncio.to_thread(
            lambda: json.loads(
                urllib.request.urlopen(f"http://127.0.0.1:{bridge_port}/healthz", timeout=5).read()
            )
        )
        for task in readers:
            task.cancel()
        for ws in conns:
            await ws.close()
    finally:
        for proc in (bridge_proc, simulator):
            proc.terminate()
        for proc in (bridge_proc, simulator):
            proc.wait(timeout=10)
    frames = [v.frames for v in views]
    probe = views[0]
    return {
        "patients": patients,
        "viewers": viewers,
        "period": period,
        "idle": idle,
        "station": busy,
        "station_frames_per_s": probe.frames / busy["seconds"],
        "station_frame_kb_mean": probe.bytes / max(1, probe.frames) / 1024,
        "frames_per_viewer_min_max": [min(frames), max(frames)],
        "viewers_dropped_slow": health["station"]["viewers_dropped_slow"],
        "probe_age_ms": {
            "n": len(probe.ages),
            "p50": percentile(probe.ages, 50),
            "p99": percentile(probe.ages, 99),
            "max": max(probe.ages) if probe.ages else None,
        },
        "readings_expected": patients * busy["seconds"] / period,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=64)
    parser.add_argument("--viewers", type=int, default=100, help="/ws?station=1 viewers")
    parser.add_argument("--seconds", type=float, default=60.0, help="window with the viewers")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="window without")
    parser.add_argument("--period", type=float, default=0.5, help="simulator period (s)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    r = asyncio.run(
        measure(args.patients, args.viewers, args.seconds, args.idle_seconds, args.period)
    )
    idle, busy, age = r["idle"], r["station"], r["probe_age_ms"]
    print(
        f"| figure ({args.patients} patients at {1 / args.period:g} Hz, {args.viewers} station "
        f"viewers, {busy['seconds']:.0f} s) | value |"
    )
    print("|---|---|")
    print(f"| bridge CPU, no viewer ({idle['seconds']:.0f} s) (% of a core) | "
          f"{idle['cpu_percent_of_a_core']:.1f} |")  # fmt: skip
    print(f"| bridge CPU, {args.viewers} station viewers (% of a core) | "
          f"{busy['cpu_percent_of_a_core']:.1f} |")  # fmt: skip
    print(f"| bridge RSS no viewer / with viewers, max (MB) | {idle['rss_mb_max']:.1f} / "
          f"{busy['rss_mb_max']:.1f} |")  # fmt: skip
    print(f"| station frames per second (per viewer) | {r['station_frames_per_s']:.1f} |")
    print(f"| station frame size, mean (KB) | {r['station_frame_kb_mean']:.1f} |")
    print(f"| frames per viewer, min / max | {r['frames_per_viewer_min_max'][0]} / "
          f"{r['frames_per_viewer_min_max'][1]} |")  # fmt: skip
    print(f"| reading → station frame at the probe, p50 / p99 / max (ms) | "
          f"{age['p50']:.0f} / {age['p99']:.0f} / {age['max']:.0f} (n = {age['n']}) |")  # fmt: skip
    print(f"| station viewers dropped as slow | {r['viewers_dropped_slow']} |")
    if args.out is not None:
        args.out.write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
