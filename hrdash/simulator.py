"""The embedded heart-rate service: speaks exactly the reference format.

It serves a ward of ``patients`` simulated patients, ``bed-01`` … ``bed-NN``, one per path
``/patients/<id>``; the path ``/`` serves ``bed-01``. Every client of a patient receives that
patient, one text frame per period (0.5 s by default)::

    {"time": 1513152655902, "value": 95}

``time`` is Unix milliseconds (int) and ``value`` the heart rate in bpm (int). The patient model
(:class:`HeartModel`) is pure and seeded: a resting baseline drifting inside 60-100 bpm, respiratory
sinus variation (~0.25 Hz, a few bpm), slow trends, and now and then a tachycardia (> 120) or
bradycardia (< 50) episode lasting tens of seconds. A :class:`Profile` parametrises it per
patient (:func:`ward_profile`): baselines spread over 55-100 bpm, some patients prone to
tachycardia, some to bradycardia, some calm.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

from hrdash.settings import MAX_SIMULATOR_PATIENTS, PortInUseError
from hrdash.signals import stop_requested

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
TACHY, BRADY = "tachycardia", "bradycardia"
WARD_BASELINES = (55.0, 100.0)  # resting baselines of a ward spread over this range
MAX_PATIENTS = MAX_SIMULATOR_PATIENTS


@dataclass(frozen=True)
class Profile:
    """What makes one patient differ from another; the default is the single patient of old."""

    rest: float = 75.0  # the resting baseline drifts back towards this
    start: tuple[float, float] = (66.0, 84.0)  # the initial baseline is drawn from this range
    bounds: tuple[float, float] = (62.0, 96.0)  # the baseline never drifts outside
    episode_rate: float = EPISODE_RATE_PER_S  # episodes per second, on average
    kinds: tuple[str, ...] = (TACHY, BRADY)  # drawn uniformly: repeats weight a kind


def ward_profile(index: int) -> Profile:
    """The profile of the patient at 0-based ``index`` in a ward. Pure and seed-independent, so a
    ward of any size mixes patients: index 0 is the default patient, then patients cycle through
    tachycardia-prone, calm, bradycardia-prone and mixed, with resting baselines spread evenly
    over 55-100 bpm (a golden-ratio sequence, so neighbouring beds differ)."""
    if index == 0:
        return Profile()
    lo, hi = WARD_BASELINES
    rest = lo + 5 + (hi - lo - 10) * ((index * 0.6180339887) % 1.0)
    start = (rest - 4.0, rest + 4.0)
    bounds = (max(lo, rest - 10.0), min(hi, rest + 10.0))
    kind = index % 4
    if kind == 1:  # tachycardia-prone
        return Profile(rest, start, bounds, 1 / 100, (TACHY, TACHY, TACHY, TACHY, BRADY))
    if kind == 2:  # calm: rare episodes
        return Profile(rest, start, bounds, 1 / 900)
    if kind == 3:  # bradycardia-prone
        return Profile(rest, start, bounds, 1 / 100, (BRADY, BRADY, BRADY, BRADY, TACHY))
    return Profile(rest, start, bounds)


def patient_seed(seed: int | None, index: int) -> int | None:
    """The seed of the patient at 0-based ``index``: ``seed`` itself for the first (so one
    patient is exactly the simulator of old), a hash of both for the others; ``None`` stays
    ``None`` (every model then draws its own OS entropy, so patients still differ)."""
    if seed is None or index == 0:
        return seed
    digest = hashlib.sha256(f"hrdash-patient:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def patient_ids(count: int) -> list[str]:
    """``bed-01`` … ``bed-NN``: two digits, more when ``count`` needs them."""
    width = max(2, len(str(count)))
    return [f"bed-{i:0{width}d}" for i in range(1, count + 1)]


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

    def __init__(self, seed: int | None = None, profile: Profile | None = None) -> None:
        self.profile = profile or Profile()
        self.rng = random.Random(seed)
        self.baseline = self.rng.uniform(*self.profile.start)
        self.trend_phase = self.rng.uniform(0, 2 * math.pi)
        self.resp_phase = self.rng.uniform(0, 2 * math.pi)
        self.episode: Episode | None = None
        self.last_t = 0.0

    def _drift(self, dt: float) -> None:
        # Ornstein-Uhlenbeck drift of the resting baseline, kept inside the profile's bounds.
        rest, (lo, hi) = self.profile.rest, self.profile.bounds
        self.baseline += 0.02 * (rest - self.baseline) * dt + self.rng.gauss(0, 0.6) * math.sqrt(dt)
        self.baseline = min(hi, max(lo, self.baseline))

    def _maybe_start_episode(self, t: float, dt: float) -> None:
        if self.episode is not None and t > self.episode.start + self.episode.duration:
            self.episode = None
        if self.episode is None and self.rng.random() < self.profile.episode_rate * dt:
            kind = self.rng.choice(self.profile.kinds)
            target = self.rng.uniform(*(TACHY_TARGET if kind == TACHY else BRADY_TARGET))
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


class Patient:
    """One simulated patient of the ward: its model and the clients watching it."""

    def __init__(self, patient_id: str, model: HeartModel) -> None:
        self.id = patient_id
        self.model = model
        self.clients: set[ServerConnection] = set()


class Simulator:
    """A websockets server for ``patients`` patients: every client of a patient (its path
    ``/patients/<id>``, or ``/`` for the first) gets its frames, one per period."""

    def __init__(
        self,
        period: float = 0.5,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        patients: int = 1,
    ) -> None:
        if not 1 <= patients <= MAX_PATIENTS:
            raise ValueError(f"patients must be 1-{MAX_PATIENTS}, got {patients}")
        self.period = period
        self.clock = clock
        self.patients = [
            Patient(pid, HeartModel(patient_seed(seed, i), ward_profile(i)))
            for i, pid in enumerate(patient_ids(patients))
        ]
        self.paths = {f"/patients/{p.id}": p for p in self.patients}
        self.paths["/"] = self.patients[0]
        self.model = self.patients[0].model
        self.clients = self.patients[0].clients  # the clients of "/" (and of bed-01)
        self.sent = 0  # ticks: one frame per patient each

    def _patient(self, path: str) -> Patient | None:
        return self.paths.get(urlsplit(path).path)

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if self._patient(request.path) is None:
            return ws.respond(HTTPStatus.NOT_FOUND, "no such patient\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        patient = self._patient(ws.request.path if ws.request else "/")
        assert patient is not None  # _process_request refused every other path
        patient.clients.add(ws)
        log.info("client of %s connected (%d now)", patient.id, len(patient.clients))
        try:
            await ws.wait_closed()
        finally:
            patient.clients.discard(ws)

    def tick(self, t: float) -> None:
        """Advance every patient to ``t`` seconds and send each its frame: serialised once,
        broadcast to that patient's clients. Bounded work: one frame per patient."""
        time_ms = int(self.clock() * 1000)
        for patient in self.patients:
            bpm = patient.model.bpm(t)
            if patient.clients:
                broadcast(patient.clients, frame(time_ms, bpm))

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        step = 0
        while True:
            step += 1
            await asyncio.sleep(max(0.0, start + step * self.period - loop.time()))
            self.tick(step * self.period)
            self.sent += 1

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Server:
        """Listen and start ticking; returns the server (its port: ``server.sockets[0]``)."""
        self.server = await serve(
            self._handler, host, port, compression=None, process_request=self._process_request
        )
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
    port: int, period: float, seed: int | None, host: str = "127.0.0.1", patients: int = 1
) -> None:
    """Run until SIGINT/SIGTERM."""
    sim = Simulator(period=period, seed=seed, patients=patients)
    try:
        await sim.start(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError.for_port(host, port, "HRDASH_SIMULATOR_PORT") from None
        raise
    ids = [p.id for p in sim.patients]
    paths = f"/patients/{ids[0]}" + (f" … /patients/{ids[-1]}" if len(ids) > 1 else "")
    log.info(
        "simulator on ws://%s:%d/ and %s (one frame every %g s)",
        host,
        port,
        paths,
        period,
    )
    await stop_requested()
    await sim.close()
