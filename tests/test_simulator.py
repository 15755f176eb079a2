"""hrdash.simulator: the patient model (pure, seeded), the ward of patients, and the service that
speaks the reference format on a real socket."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hrdash.settings import SettingError, Settings
from hrdash.simulator import (
    HeartModel,
    Simulator,
    frame,
    patient_ids,
    patient_seed,
    ward_profile,
)
from tests.conftest import free_port, server_port, timeout
from tests.test_cli import (
    assert_one_line_error,
    clean_env,
    hrdash,
    spawn,
    stop_with_sigterm,
    wait_until_listening,
)

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


# --- a ward of patients ------------------------------------------------------------------------


def ward_series(
    seed: int | None, index: int, samples: int = TWO_HOURS, step: float = STEP
) -> list[int]:
    """The values patient ``index`` of a ward seeded ``seed`` sends, tick by tick (pure)."""
    model = HeartModel(patient_seed(seed, index), ward_profile(index))
    return [model.bpm(i * step) for i in range(1, samples + 1)]


def is_contiguous_part(part: list[int], whole: list[int]) -> bool:
    return any(whole[i : i + len(part)] == part for i in range(len(whole) - len(part) + 1))


def test_patient_ids() -> None:
    """bed-01 … bed-NN with two digits, more when N needs them."""
    assert patient_ids(1) == ["bed-01"]
    assert patient_ids(12) == [f"bed-{i:02d}" for i in range(1, 13)]
    assert patient_ids(100)[0] == "bed-001" and patient_ids(256)[-1] == "bed-256"


# Seed 7 of the single-patient simulator before wards existed: its first and last 12 values of
# 3000 at 0.5 s, and a weighted sum of all of them. A ward must not change this patient.
SEED_7_HEAD = [75, 76, 78, 80, 81, 78, 78, 76, 75, 76, 79, 80]
SEED_7_TAIL = [83, 84, 81, 79, 80, 82, 86, 88, 87, 87, 84, 82]
SEED_7_CHECKSUM = 10772483


def test_one_patient_is_the_simulator_of_old() -> None:
    """Patient bed-01 of any ward is exactly the single patient of old, value for value."""
    series = ward_series(7, 0, 3000)
    assert series[:12] == SEED_7_HEAD and series[-12:] == SEED_7_TAIL
    assert sum(v * (i % 97 + 1) for i, v in enumerate(series)) == SEED_7_CHECKSUM
    assert run_model(7, 3000).tolist() == series
    assert patient_seed(7, 0) == 7 and patient_seed(None, 0) is None


async def test_patients_served_at_their_paths() -> None:
    """Each /patients/<id> serves that patient (values from its own seeded model) in the
    reference format; / serves bed-01."""
    period, n = 0.02, 3
    sim = Simulator(period=period, seed=11, patients=n)
    server = await sim.start(port=0)
    base = f"ws://127.0.0.1:{server_port(server)}"
    paths = ["/", *[f"/patients/{pid}" for pid in patient_ids(n)]]
    try:
        async with asyncio.timeout(timeout(10)):
            clients = [await connect(base + path) for path in paths]
            got: dict[str, list[dict[str, int]]] = {path: [] for path in paths}
            for _ in range(15):
                for path, ws in zip(paths, clients, strict=True):
                    got[path].append(json.loads(await ws.recv()))
            for ws in clients:
                await ws.close()
    finally:
        await sim.close()
    now_ms = time.time() * 1000
    for frames in got.values():
        for f in frames:
            assert set(f) == {"time", "value"}
            assert type(f["time"]) is int and type(f["value"]) is int
            assert abs(f["time"] - now_ms) < 60_000
    expected = [ward_series(11, i, 2000, period) for i in range(n)]
    for index, path in enumerate(paths[1:]):
        values = [f["value"] for f in got[path]]
        assert is_contiguous_part(values, expected[index]), path
        others = [e for i, e in enumerate(expected) if i != index]
        assert not any(is_contiguous_part(values, e) for e in others), path
    root, bed01 = got["/"], got["/patients/bed-01"]
    assert is_contiguous_part([f["value"] for f in root], expected[0])
    common = [f for f in root if f in bed01]
    assert len(common) >= 10, "/ and bed-01 should be the same patient"


@pytest.mark.parametrize(
    "path", ["/patients/bed-04", "/patients/bed-1", "/patients/bed-01/", "/patients", "/x"]
)
async def test_unknown_path_is_404(path: str) -> None:
    """A path that names no patient is refused with HTTP 404 at the handshake."""
    sim = Simulator(period=0.05, seed=1, patients=3)
    server = await sim.start(port=0)
    try:
        async with asyncio.timeout(timeout(5)):
            with pytest.raises(InvalidStatus) as info:
                await connect(f"ws://127.0.0.1:{server_port(server)}{path}")
            async with connect(f"ws://127.0.0.1:{server_port(server)}/patients/bed-03") as ws:
                assert set(json.loads(await ws.recv())) == {"time", "value"}
    finally:
        await sim.close()
    assert info.value.response.status_code == 404


@pytest.fixture(scope="module")
def ward() -> list[np.ndarray]:
    """Two hours of each of 8 patients of a ward seeded 5 (pure: no sockets, no clock)."""
    return [np.array(ward_series(5, i)) for i in range(8)]


def test_ward_patients_differ(ward: list[np.ndarray]) -> None:
    """Patients are not copies: every series differs, and their medians spread over 55-100 bpm
    (at least 20 bpm between the lowest and the highest of 8)."""
    assert len({tuple(x.tolist()) for x in ward}) == len(ward)
    medians = [float(np.median(x)) for x in ward]
    assert all(55 <= m <= 100 for m in medians), medians
    assert max(medians) - min(medians) >= 20, medians


def test_ward_has_tachycardia_and_bradycardia_prone_patients(ward: list[np.ndarray]) -> None:
    """Some patients have mostly tachycardia episodes (>120 bpm for 10 s or more), some mostly
    bradycardia (<50), and some few of either."""
    tachy = [runs_longer_than(x > 120, 10.0) for x in ward]
    brady = [runs_longer_than(x < 50, 10.0) for x in ward]
    pairs = list(zip(tachy, brady, strict=True))
    assert any(t >= 10 and t >= 3 * b for t, b in pairs), pairs
    assert any(b >= 10 and b >= 3 * t for t, b in pairs), pairs
    assert min(t + b for t, b in pairs) * 3 <= max(t + b for t, b in pairs), pairs


def test_same_seed_same_ward() -> None:
    """One seed gives the same ward twice; another seed gives others; unseeded patients of one
    ward still differ from each other."""
    assert [ward_series(5, i, 500) for i in range(4)] == [ward_series(5, i, 500) for i in range(4)]
    for i in range(4):
        assert ward_series(5, i, 500) != ward_series(6, i, 500)
    assert len({patient_seed(5, i) for i in range(256)}) == 256
    unseeded = Simulator(patients=4)
    series = [[p.model.bpm(k * STEP) for k in range(1, 500)] for p in unseeded.patients]
    assert len({tuple(s) for s in series}) == 4


def test_patients_setting() -> None:
    """HRDASH_SIMULATOR_PATIENTS defaults to 1 and accepts 1-256; anything else is one line
    naming the setting."""
    assert Settings.load(env={}).simulator_patients == 1
    env = {"HRDASH_SIMULATOR_PATIENTS": "64"}
    assert Settings.load(env=env).simulator_patients == 64
    assert Settings.load(env={"HRDASH_SIMULATOR_PATIENTS": "256"}).simulator_patients == 256
    for bad in ("0", "257", "many", ""):
        with pytest.raises(SettingError, match=r"^HRDASH_SIMULATOR_PATIENTS: ") as info:
            Settings.load(env={"HRDASH_SIMULATOR_PATIENTS": bad})
        assert "\n" not in str(info.value)


def test_bad_patients_setting_exits_2() -> None:
    """`hrdash simulate` with a bad patient count exits 2 with one line naming the setting."""
    assert_one_line_error(hrdash("simulate", "--simulator-patients", "0"), "--simulator-patients")
    result = hrdash("simulate", env=clean_env(HRDASH_SIMULATOR_PATIENTS="300"))
    assert_one_line_error(result, "HRDASH_SIMULATOR_PATIENTS")


def test_simulate_serves_its_patients() -> None:
    """`hrdash simulate --simulator-patients 3` serves bed-03 and refuses bed-04."""
    from websockets.sync.client import connect as sync_connect

    port = free_port()
    proc = spawn(
        "simulate",
        "--simulator-port",
        str(port),
        "--simulator-period",
        "0.05",
        "--simulator-patients",
        "3",
        "--simulator-seed",
        "4",
    )
    try:
        wait_until_listening(proc, port)
        url = f"ws://127.0.0.1:{port}/patients/"
        with sync_connect(url + "bed-03", open_timeout=timeout(5)) as ws:
            values = [json.loads(ws.recv(timeout=timeout(5)))["value"] for _ in range(5)]
        assert is_contiguous_part(values, ward_series(4, 2, 2000, 0.05))
        with pytest.raises(InvalidStatus):
            sync_connect(url + "bed-04", open_timeout=timeout(5))
    finally:
        if proc.poll() is None:
            stop_with_sigterm(proc)
