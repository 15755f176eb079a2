"""The fan-out floor for ``benchmarks/scaleout.py``: a bare ``websockets`` server that calls
:func:`websockets.asyncio.server.broadcast` with a readings frame, and nothing else.

    python -m benchmarks._floor PORT [--patients 1] [--period 0.5]

Every viewer that connects (any path; ``?patient=ID`` picks a patient, default the first) joins
that patient's set; every ``--period`` seconds each patient's frame is built with a reading
stamped at that moment (``time`` = this machine's clock, Unix ms, as the simulator stamps its
readings) and handed to ``broadcast()``. The frame has the shape of hrdash's live readings frame
(``{"type": "readings", "run", "patient", "readings": [{"seq", "time", "bpm"}], "first_seq",
"last_seq"}``), so the load process sees the same bytes per viewer. Its best honest setup, the
same as the bridge's viewers get: ``compression=None``, the bridge's default ping interval and
timeout, the bridge's kernel send buffer per viewer (``SO_SNDBUF``), the same ``max_size`` and
``max_queue``. What it leaves out, as a floor should: no snapshot or status frame on connect, no
heartbeat status frames, no Origin check, no ring, no slow-viewer check, no ingest. RLIMIT_NOFILE
is raised by whoever starts it (``benchmarks.common.spawn(..., raise_limit=True)``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import time
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

from hrdash.edge import VIEWER_MAX_MESSAGE, VIEWER_SNDBUF
from hrdash.settings import Settings
from hrdash.simulator import patient_ids

RUN = "f1005000"  # the floor's run id (8 hex digits, like the bridge's)


class Floor:
    def __init__(self, patients: int, period: float) -> None:
        self.period = period
        self.viewers: dict[str, set[ServerConnection]] = {
            pid: set() for pid in patient_ids(patients)
        }
        self.first = next(iter(self.viewers))
        self.seq = 0
        self.capacity = Settings().buffer  # first_seq as the bridge's ring would report it
        self.rng = random.Random(1)

    async def handler(self, ws: ServerConnection) -> None:
        query = urlsplit(ws.request.path).query if ws.request else ""
        pid = parse_qs(query).get("patient", [self.first])[0]
        viewers = self.viewers.get(pid, self.viewers[self.first])
        sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, VIEWER_SNDBUF)
        viewers.add(ws)
        try:
            await ws.wait_closed()
        finally:
            viewers.discard(ws)

    def frame(self, pid: str) -> str:
        reading = {
            "seq": self.seq,
            "time": int(time.time() * 1000),
            "bpm": self.rng.randint(60, 90),
        }
        return json.dumps(
            {
                "type": "readings",
                "run": RUN,
                "patient": pid,
                "readings": [reading],
                "first_seq": max(1, self.seq - self.capacity + 1),
                "last_seq": self.seq,
            },
            separators=(",", ":"),
        )

    async def tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            self.seq += 1
            await asyncio.sleep(max(0.0, start + self.seq * self.period - loop.time()))
            for pid, viewers in self.viewers.items():
                if viewers:
                    broadcast(viewers, self.frame(pid))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--patients", type=int, default=1)
    parser.add_argument("--period", type=float, default=0.5)
    args = parser.parse_args()
    floor = Floor(args.patients, args.period)
    settings = Settings()
    async with serve(
        floor.handler,
        "127.0.0.1",
        args.port,
        compression=None,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        max_size=VIEWER_MAX_MESSAGE,
        max_queue=4,
    ):
        await floor.tick_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
