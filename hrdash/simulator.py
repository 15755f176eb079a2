"""The embedded heart-rate service: speaks exactly the reference format.

Every connected client receives the same patient, one text frame per period (0.5 s by default)::

    {"time": 1513152655902, "value": 95}

``time`` is Unix milliseconds (int) and ``value`` the heart rate in bpm (int). The patient model
(:class:`HeartModel`) is pure and seeded: a resting baseline drifting inside 60-100 bpm, respiratory
sinus variation (~0.25 Hz, a few bpm), slow trends, and now and then a tachycardia (> 120) or
bradycardia (< 50) episode lasting tens of seconds.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import math
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve

from hrdash.settings import PortInUseError

log = logging.getLogger("hrdash.simulator")

RESP_FREQ_HZ = 0.25  # respiratory sinus arrhythmia
RESP_AMPLITUDE = 3.0  # bpm
TREND_PERIOD_S = 300.0  # slow trend (activity, posture) period
TREND_AMPLITUDE = 6.0  # bpm
EPISODE_RATE_PER_S = 1 / 150  # on average one episode every 2.5 minutes
EPISODE_DURATION_S = (20.0, 60.0)
EPISODE_RAMP_S = 5.0
TACHY_TARGET = (125.0, 155.0)
BRADY_TARGET = (38.0, 47.0)


@dataclass
class Episode:
    kind: str  # "tachycardia" | "bradycardia"
    start: float
    duration: float
    target: float

    def weight(self, t: float) -> float:
        """0..1: how far the episode has taken over at time ``t`` (smooth ramps in and out)."""
        into, left = t - self.start, self.start + self.duration - t
        if into < 0 or left < 0:
            return 0.0
        ramp = min(into, left, EPISODE_RAMP_S) / EPISODE_RAMP_S
        return 0.5 - 0.5 * math.cos(math.pi * ramp)


class HeartModel:
    """A plausible heart rate as a function of elapsed seconds. Pure: same seed, same numbers."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.baseline = self.rng.uniform(66.0, 84.0)
        self.trend_phase = self.rng.uniform(0, 2 * math.pi)
        self.resp_phase = self.rng.uniform(0, 2 * math.pi)
        self.episode: Episode | None = None
        self.last_t = 0.0

    def _drift(self, dt: float) -> None:
        # Ornstein-Uhlenbeck drift of the resting baseline, kept inside 60-100 bpm.
        self.baseline += 0.02 * (75.0 - self.baseline) * dt + self.rng.gauss(0, 0.6) * math.sqrt(dt)
        self.baseline = min(96.0, max(62.0, self.baseline))

    def _maybe_start_episode(self, t: float, dt: float) -> None:
        if self.episode is not None and t > self.episode.start + self.episode.duration:
            self.episode = None
        if self.episode is None and self.rng.random() < EPISODE_RATE_PER_S * dt:
            kind = self.rng.choice(("tachycardia", "bradycardia"))
            target = self.rng.uniform(*(TACHY_TARGET if kind == "tachycardia" else BRADY_TARGET))
            self.episode = Episode(kind, t, self.rng.uniform(*EPISODE_DURATION_S), target)

    def bpm(self, t: float) -> int:
        """Heart rate at ``t`` seconds since the start. Call with non-decreasing ``t``."""
        dt = max(0.0, t - self.last_t)
        self.last_t = t
        self._drift(dt)
        self._maybe_start_episode(t, dt)
        resting = (
            self.baseline
            + TREND_AMPLITUDE * math.sin(2 * math.pi * t / TREND_PERIOD_S + self.trend_phase)
            + RESP_AMPLITUDE * math.sin(2 * math.pi * RESP_FREQ_HZ * t + self.resp_phase)
            + self.rng.gauss(0, 0.8)
        )
        value = resting
        if self.episode is not None:
            w = self.episode.weight(t)
            value = (1 - w) * resting + w * (self.episode.target + self.rng.gauss(0, 1.5))
        return round(min(250.0, max(25.0, value)))


def frame(time_ms: int, bpm: int) -> str:
    """One frame in the reference format."""
    return json.dumps({"time": time_ms, "value": bpm}, separators=(",", ":"))


class Simulator:
    """A websockets server that sends every client the same patient, one frame per period."""

    def __init__(
        self,
        period: float = 0.5,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.period = period
        self.model = HeartModel(seed)
        self.clock = clock
        self.clients: set[ServerConnection] = set()
        self.sent = 0

    async def _handler(self, ws: ServerConnection) -> None:
        self.clients.add(ws)
        log.info("client connected (%d now)", len(self.clients))
        try:
            await ws.wait_closed()
        finally:
            self.clients.discard(ws)

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        step = 0
        while True:
            step += 1
            await asyncio.sleep(max(0.0, start + step * self.period - loop.time()))
            bpm = self.model.bpm(step * self.period)
            broadcast(self.clients, frame(int(self.clock() * 1000), bpm))
            self.sent += 1

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Server:
        """Listen and start ticking; returns the server (its port: ``server.sockets[0]``)."""
        self.server = await serve(self._handler, host, port, compression=None)
        self._ticker = asyncio.create_task(self._tick_forever())
        return self.server

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop ticking, close every client connection and stop listening."""
        self._ticker.cancel()
        self.server.close()
        await self.server.wait_closed()


async def run_simulator(
    port: int, period: float, seed: int | None, host: str = "127.0.0.1"
) -> None:
    """Run until SIGINT/SIGTERM."""
    sim = Simulator(period=period, seed=seed)
    try:
        await sim.start(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError.for_port(host, port, "HRDASH_SIMULATOR_PORT") from None
        raise
    log.info("simulator on ws://%s:%d/ (one frame every %g s)", host, port, period)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sim.close()
