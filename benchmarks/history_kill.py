"""The seconds of readings at risk when the bridge is SIGKILLed (the history, HRDASH_DB).

    python benchmarks/history_kill.py                       # 10 kills, 50 readings a second
    python benchmarks/history_kill.py --trials 20 --period 0.5 --seed 3

A heart-rate service of this script's own (127.0.0.1, a free port) stamps each reading with the
machine's clock (Unix ms) and sends one every ``--period`` s, on from one counter across
connections. Each trial starts ``python -m hrdash bridge`` on one SQLite file in a temporary
directory (the same file for every trial, as a bridge restarted by its supervisor would use),
connects a viewer (``/ws?patient=patient-1``), lets the bridge run a random time (uniform in
``--min-run``..``--max-run`` s, seeded: the kill falls anywhere in the commit cycle) and
SIGKILLs it. Then it compares the newest reading the viewer had received when the signal was
sent with the newest stored one:

* *seconds lost* = (newest received - newest stored) / 1000, the readings' own times, which are
  the machine's clock: how much of what a viewer had seen the file lacks;
* *readings lost* = readings the viewer received in that trial that are not in the file.

The bridge commits about once a second (the recorder's ``commit_interval``), so a reading waits
at most that long plus one commit; the issue's bound is 2 s. Measured, never asserted. Prints a
markdown table; every trial's numbers go to ``benchmarks/results/results-history-kill.json``
(``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import PY, RESULTS, ROOT, machine
from hrdash import store

PATIENT = "patient-1"  # the one patient of HRDASH_UPSTREAM_URL
START_TIMEOUT = 20.0  # seconds for a bridge to listen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """Readings stamped with the machine's clock, every ``period`` s, one counter for all
    connections."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.count = 0
        self.port = 0
        self.server: Any = None

    async def _handler(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        next_at = time.monotonic()
        with contextlib.suppress(ConnectionClosed):
            while True:
                self.count += 1
                frame = {"time": int(time.time() * 1000), "value": 60 + self.count % 60}
                await ws.send(json.dumps(frame))
                next_at += self.period
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def start(self) -> None:
        from websockets.asyncio.server import serve

        self.server = await serve(self._handler, "127.0.0.1", 0, compression=None)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def newest_stored(db: Path) -> tuple[int | None, set[int]]:
    """The newest stored reading's time and every stored time of the patient."""
    conn = store.connect(db, readonly=True)
    try:
        rows = conn.execute(
            "SELECT t FROM readings JOIN patients ON readings.patient = patients.key"
            " WHERE patients.id = ?",
            (PATIENT,),
        ).fetchall()
    finally:
        conn.close()
    times = {int(t) for (t,) in rows}
    return (max(times) if times else None), times


async def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the bridge exited ({proc.returncode}): see {log}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the bridge did not listen within {START_TIMEOUT} s")


def spawn_bridge(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [PY, "-m", "hrdash", "bridge"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


async def trial(service: Service, db: Path, run_s: float, log: Path) -> dict[str, Any]:
    """One bridge run of ``run_s`` seconds (from its first live reading), then SIGKILL."""
    from websockets.asyncio.client import connect

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HRDASH_")}
    env.update(
        HRDASH_UPSTREAM_URL=f"ws://127.0.0.1:{service.port}/",
        HRDASH_BRIDGE_PORT=str(port),
        HRDASH_DB=str(db),
        HRDASH_LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
    )
    proc = await asyncio.to_thread(spawn_bridge, env, log)
    received: list[int] = []
    try:
        await wait_listening(port, proc, log)
        async with connect(f"ws://127.0.0.1:{port}/ws?patient={PATIENT}") as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            preloaded = len(first["readings"])
            started: float | None = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                left = run_s - (time.monotonic() - started) if started is not None else 1.0
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    message = await asyncio.wait_for(ws.recv(), min(left, 1.0))
                    frame = json.loads(message)
                    if frame.get("type") == "readings":
                        received += [r["time"] for r in frame["readings"]]
                        if started is None and received:
                            started = time.monotonic()
            os.kill(proc.pid, signal.SIGKILL)  # what the viewer had is `received`, now
            killed_at = time.time()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    newest, times = newest_stored(db)
    viewer_newest = max(received)
    lost = [t for t in received if t not in times]
    return {
        "run_s": round(run_s, 3),
        "preloaded": preloaded,
        "received": len(received),
        "readings_lost": len(lost),
        "seconds_lost": round(
            (viewer_newest - min(newest or received[0], viewer_newest)) / 1000, 3
        ),
        "newest_received_age_s": round(killed_at - viewer_newest / 1000, 3),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    service = Service(args.period)
    await service.start()
    trials = []
    try:
        with tempfile.TemporaryDirectory(prefix="hrdash-kill-") as tmp:
            db = Path(tmp) / "history.db"
            log = RESULTS / "logs" / "history-kill-bridge.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_bytes(b"")
            for i in range(args.trials):
                run_s = rng.uniform(args.min_run, args.max_run)
                result = await trial(service, db, run_s, log)
                trials.append(result)
                print(
                    f"trial {i + 1}/{args.trials}: ran {result['run_s']} s, "
                    f"{result['seconds_lost']} s ({result['readings_lost']} readings) lost",
                    file=sys.stderr,
                )
    finally:
        await service.stop()
    seconds = [t["seconds_lost"] for t in trials]
    counts = [t["readings_lost"] for t in trials]
    return {
        "command": "python benchmarks/history_kill.py " + " ".join(sys.argv[1:]),
        "period_s": args.period,
        "trials": trials,
        "seconds_lost": {
            "max": max(seconds),
            "median": statistics.median(seconds),
            "min": min(seconds),
        },
        "readings_lost": {"max": max(counts), "median": statistics.median(counts)},
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="kills (default 10)")
    parser.add_argument(
        "--period", type=float, default=0.02, help="seconds between readings (default 0.02)"
    )
    parser.add_argument("--min-run", type=float, default=2.0, help="seconds, default 2")
    parser.add_argument("--max-run", type=float, default=6.0, help="seconds, default 6")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "results-history-kill.json")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    s, c = result["seconds_lost"], result["readings_lost"]
    print(f"SIGKILL at random moments, {args.trials} times, a reading every {args.period:g} s")
    print()
    print("| figure | max | median |")
    print("|---|---|---|")
    print(f"| seconds of received readings not in the file | {s['max']:.3f} | {s['median']:.3f} |")
    print(f"| readings received, not in the file | {c['max']} | {c['median']:g} |")
    print()
    print(f"command: {result['command']}")


if __name__ == "__main__":
    main()
