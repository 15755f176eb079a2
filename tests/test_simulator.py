"""hrdash.simulator: the patient model (pure, seeded) and the service that speaks the reference
format on a real socket."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time

import numpy as np
import pytest
from websockets.asyncio.client import connect

from hrdash.simulator import HeartModel, Simulator, frame
from tests.conftest import server_port, timeout

STEP = 0.5  # seconds, the reference service's period
TWO_HOURS = int(2 * 3600 / STEP)


def run_model(seed: int, samples: int = TWO_HOURS, step: float = STEP) -> np.ndarray:
    model = HeartModel(seed)
    return np.array([model.bpm(i * step) for i in range(1, samples + 1)])


def runs_longer_than(mask: np.ndarray, seconds: float, step: float = STEP) -> int:
    """How many maximal runs of True last at least ``seconds``."""
    count, length = 0, 0
    for flag in [*mask.tolist(), False]:
        if flag:
            length += 1
        else:
            count += length * step >= seconds
            length = 0
    return count


@pytest.fixture(scope="module", params=[1, 2, 3])
def two_hours(request: pytest.FixtureRequest) -> np.ndarray:
    """Two hours of one seeded patient at 0.5 s (pure: no sockets, no clock)."""
    return run_model(request.param)


def test_same_seed_same_patient() -> None:
    """Two models with one seed give the same numbers; another seed gives others."""
    assert run_model(7, 2000).tolist() == run_model(7, 2000).tolist()
    assert run_model(7, 2000).tolist() != run_model(8, 2000).tolist()


def test_values_are_integer_bpm_in_range(two_hours: np.ndarray) -> None:
    """Every value is an integer bpm that the bridge accepts (20-300)."""
    assert two_hours.dtype.kind == "i"
    assert two_hours.min() >= 20 and two_hours.max() <= 300


def test_resting_rate_stays_mostly_within_60_100(two_hours: np.ndarray) -> None:
    """Outside episodes (50-120 bpm) at least 95 % of values lie in 60-100; the median too."""
    resting = two_hours[(two_hours >= 50) & (two_hours <= 120)]
    assert len(resting) >= 0.6 * len(two_hours)
    share = np.mean((resting >= 60) & (resting <= 100))
    assert share >= 0.95, share
    assert 60 <= np.median(two_hours) <= 100


def test_tachycardia_and_bradycardia_episodes(two_hours: np.ndarray) -> None:
    """Two hours hold several tachycardia (>120) and bradycardia (<50) episodes of 10 s or more,
    and they stay episodes: most of the time the rate is neither."""
    assert runs_longer_than(two_hours > 120, 10.0) >= 3
    assert runs_longer_than(two_hours < 50, 10.0) >= 3
    assert np.mean((two_hours > 120) | (two_hours < 50)) < 0.4


def test_respiratory_component_near_quarter_hertz(two_hours: np.ndarray) -> None:
    """The strongest oscillation between 0.1 and 1 Hz is the breathing one, near 0.25 Hz."""
    x = two_hours - two_hours.mean()
    freqs = np.fft.rfftfreq(len(x), STEP)
    power = np.abs(np.fft.rfft(x)) ** 2
    band = (freqs >= 0.1) & (freqs <= 1.0)
    peak = freqs[band][np.argmax(power[band])]
    assert abs(peak - 0.25) <= 0.02, peak
    assert power[band].max() > 20 * np.median(power[band])


def test_frame_is_the_reference_format() -> None:
    """frame() writes exactly {"time": ms, "value": bpm}, compact."""
    assert frame(1513152655902, 95) == '{"time":1513152655902,"value":95}'


async def test_frames_over_a_socket() -> None:
    """Every client gets the same frames: only "time" (int ms, now) and "value" (int bpm),
    about one period apart."""
    period = 0.05
    sim = Simulator(period=period, seed=3)
    server = await sim.start(port=0)
    url = f"ws://127.0.0.1:{server_port(server)}/"
    try:
        async with asyncio.timeout(timeout(10)):
            async with connect(url) as a, connect(url) as b:
                frames_a = [json.loads(await a.recv()) for _ in range(12)]
                now_ms = time.time() * 1000
                frames_b = [json.loads(await b.recv()) for _ in range(12)]
    finally:
        server.close()
        await server.wait_closed()
    for f in frames_a + frames_b:
        assert set(f) == {"time", "value"}
        assert type(f["time"]) is int and type(f["value"]) is int
        assert 20 <= f["value"] <= 300
        assert abs(f["time"] - now_ms) < 60_000  # Unix ms, not seconds or some other epoch
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(frames_a)]
    assert all(gap >= 0 for gap in gaps)
    assert 0.5 * period * 1000 <= statistics.median(gaps) <= 2 * period * 1000, gaps
    common = [f for f in frames_b if f in frames_a]
    assert common, "two clients should see the same patient"
    assert frames_b[: len(common)] == common


async def test_time_comes_from_the_clock() -> None:
    """A frame's time is the simulator's clock in Unix ms at the moment it is sent."""
    ticks = iter(range(1_700_000_000, 1_700_001_000))
    sim = Simulator(period=0.02, seed=3, clock=lambda: float(next(ticks)) + 0.5)
    server = await sim.start(port=0)
    try:
        async with asyncio.timeout(timeout(5)):
            async with connect(f"ws://127.0.0.1:{server_port(server)}/") as ws:
                times = [json.loads(await ws.recv())["time"] for _ in range(3)]
    finally:
        server.close()
        await server.wait_closed()
    assert all(t % 1000 == 500 for t in times)
    assert [b - a for a, b in itertools.pairwise(times)] == [1000, 1000]
    assert 1_700_000_000_500 <= times[0] <= 1_700_001_000_000
