"""``hrdash ingest`` (hrdash.broker.ingest) against a real redis-server (tests/redis_support.py)
and scripted heart-rate services (tests/support.ScriptedService): the readings, status and alarm
frames it writes, the control stream it applies, the leases between two ingests, the takeover
after a SIGKILL, Redis restarted under it, and Redis nowhere at the start."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from hrdash.broker import StreamReading, connect, decode_frame, decode_reading, keys_for
from hrdash.broker.client import aclose_quietly
from hrdash.broker.control import (
    CONTROL_KEY,
    STATION_LOG_KEY,
    decode_log,
    encode_control,
    log_key,
)
from hrdash.broker.ingest import RedisIngest
from hrdash.broker.lease import LEASE_TTL
from hrdash.readings import Rejected
from hrdash.settings import Settings
from hrdash.supervisor import STOP_GRACE
from tests.conftest import free_port, timeout, wait_for
from tests.redis_support import RedisServer
from tests.support import ROOT, ScriptedService, scaled

ORIGIN = "http://127.0.0.1:8050"
NORMAL = 70
PERIOD = 0.1  # seconds between two readings of a scripted service


@pytest.fixture
def service() -> Iterator[ScriptedService]:
    services = ScriptedService(["p1", "p2"], value=NORMAL, period=PERIOD)
    try:
        yield services
    finally:
        services.close()


def settings_for(service: ScriptedService, tmp_path: Path, redis: RedisServer) -> Settings:
    sources = tmp_path / "sources.toml"
    sources.write_text(service.sources())
    return Settings.load(
        env={},
        overrides={"sources": str(sources), "redis_url": redis.url, "db": ":memory:"},
    )


async def fast_sleep(seconds: float) -> None:
    """Backoff waits cut to a tenth (the jittered delays stay what the code computes)."""
    await asyncio.sleep(seconds / 10)


@contextlib.asynccontextmanager
async def running(settings: Settings, **options: Any) -> AsyncIterator[RedisIngest]:
    """A started RedisIngest with its own client, closed (and its client) at the end."""
    client = await connect(settings.redis_url)
    options.setdefault("sleep", fast_sleep)
    ingest = RedisIngest(settings, client, **options)
    await ingest.start()
    try:
        yield ingest
    finally:
        await ingest.close()
        await aclose_quietly(client)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client of the test's redis-server (for the test to look at the streams)."""
    client = await connect(redis_server.url)
    try:
        yield client
    finally:
        await aclose_quietly(client)


async def stream_readings(client: Redis, patient: str) -> list[StreamReading]:
    entries: Any = await client.xrange(keys_for(patient).readings, "-", "+")
    out = []
    for entry_id, fields in entries:
        item = decode_reading(entry_id, fields)
        assert not isinstance(item, Rejected), item
        out.append(item)
    return out


async def frames(client: Redis, patient: str, kind: str) -> list[dict[str, Any]]:
    keys = keys_for(patient)
    entries: Any = await client.xrange(keys.status if kind == "status" else keys.alarms)
    out = []
    for entry_id, fields in entries:
        frame = decode_frame(kind, patient, entry_id, fields)
        assert not isinstance(frame, Rejected), frame
        out.append(frame)
    return out


async def log_entries(client: Redis, key: str) -> list[tuple[str, dict[str, Any]]]:
    entries: Any = await client.xrange(key)
    out = []
    for entry_id, fields in entries:
        entry = decode_log(entry_id, fields)
        assert not isinstance(entry, Rejected), entry
        out.append((entry_id.decode(), entry))
    return out


async def control(client: Redis, request: dict[str, Any]) -> str:
    entry_id: Any = await client.xadd(CONTROL_KEY, encode_control(request, ORIGIN, "edge-1"))
    return str(entry_id.decode())


def contiguous(items: list[StreamReading]) -> bool:
    seqs = [r.seq for r in items]
    return seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True


async def until_readings(client: Redis, patient: str, count: int) -> list[StreamReading]:
    found: list[StreamReading] = []
    deadline = time.monotonic() + timeout(10)
    while len(found) < count:
        assert time.monotonic() < deadline, f"{patient}: {len(found)} readings, wanted {count}"
        await asyncio.sleep(0.05)
        found = await stream_readings(client, patient)
    return found


# -- one ingest ----------------------------------------------------------------------------------


async def test_readings_status_and_alarms_land_in_the_streams(
    service: ScriptedService, tmp_path: Path, redis_server: RedisServer, redis: Redis
) -> None:
    """Each patient's readings are in its stream once, seq contiguous from 1, one run (the
    hub's), with the service's times and values; status frames keep coming about every
    second with no upstream change and carry the contract's fields; an alarm frame is
    written at the start (the limits) and when a reading crosses the limits."""
    settings = settings_for(service, tmp_path, redis_server)
    async with running(settings) as ingest:
        for patient in ("p1", "p2"):
            got = await until_readings(redis, patient, 10)
            assert contiguous(got) and got[0].seq == 1, [r.seq for r in got]
            assert {r.run for r in got} == {ingest.hub[patient].run_id}
            sent = {int(t * 1000): v for t, v in service.sent[patient]}
            assert all(sent.get(r.time) == r.bpm for r in got)
        await asyncio.sleep(0.3)
        before = len(await frames(redis, "p1", "status"))
        await asyncio.sleep(2.6)  # no upstream change meanwhile: the heartbeat only
        statuses = await frames(redis, "p1", "status")
        assert len(statuses) - before in (2, 3), len(statuses) - before
        status = statuses[-1]
        assert status["run"] == ingest.hub["p1"].run_id and status["upstream"] == "live"
        assert status["source"] == "p1" and status["mapping"]["value"] == "value"
        assert status["counters"]["accepted"] >= 10 and status["counters"]["rejected"] == 0
        assert status["source_detail"]["url"] == service.url("p1")
        assert status["source_detail"]["recorder"] == {"db": ":memory:", "state": "off"}
        assert status["ingest"]["holder"] == ingest.holder
        assert status["ingest"]["writer"]["state"] == "up"
        assert status["ingest"]["lease"]["held"] == ["p1", "p2"]
        assert abs(status["now"] - time.time() * 1000) < 5000
        alarms = await frames(redis, "p1", "alarm")
        assert alarms and alarms[0]["alarms"] == [] and alarms[0]["limits"]["high"] == 120
        service.set("p1", 170)  # over extreme_high (150): a high alarm 2 s on
        await wait_for(
            lambda: any(a["kind"] == "hr_extreme_high" for a in ingest.alarms.alarms("p1")),
            6,
            "the extreme-high alarm",
        )
        await asyncio.sleep(0.3)
        last = (await frames(redis, "p1", "alarm"))[-1]
        assert [a["kind"] for a in last["alarms"]] == ["hr_extreme_high"]
        assert last["sounding"] == "high"
        assert [a["alarms"] for a in await frames(redis, "p2", "alarm")][-1] == []
        raised = [e for _, e in await log_entries(redis, log_key("p1"))]
        assert [e["event"] for e in raised] == ["raised"]


async def test_control_entries_are_applied_once_and_logged(
    service: ScriptedService, tmp_path: Path, redis_server: RedisServer, redis: Redis
) -> None:
    """With two ingests (one holds both patients): a ``limits`` entry is applied by the holder
    (its alarm frames carry the limits, its alarm is raised by them), an ``ack`` of that alarm
    acknowledges it, an ``audio_pause`` is applied by both; every change is in the log streams,
    the station's entry once, under the control entry's id. Bad entries are counted and
    skipped; an entry from before the start is not applied."""
    settings = settings_for(service, tmp_path, redis_server)
    old = await control(redis, {"type": "audio_pause", "seconds": 30})
    async with running(settings) as first:
        await wait_for(lambda: len(first.keeper.held) == 2, 5, "the first ingest holds both")
        async with running(settings) as second:
            await asyncio.sleep(0.5)
            assert second.keeper.held == set()
            await redis.xadd(CONTROL_KEY, {"something": "else"})
            await redis.xadd(CONTROL_KEY, {"control": "{not json"})
            await control(redis, {"type": "limits", "patient": "p1", "low": 10})  # invalid
            await control(redis, {"type": "ack", "alarm": 7})
            limits = {"extreme_low": 30, "low": 40, "high": 60, "extreme_high": 65}
            await control(redis, {"type": "limits", "patient": "p1", **limits})
            await wait_for(lambda: first.alarms.limits("p1") == limits, 5, "limits applied")
            assert first.counters["control_bad"] == 4
            assert second.counters["control_bad"] == 3  # p1's bad limits: not its patient
            await wait_for(lambda: bool(first.alarms.alarms("p1")), 6, "an alarm by the limits")
            alarm = first.alarms.alarms("p1")[0]
            assert alarm["kind"] == "hr_extreme_high" and alarm["state"] == "active"  # 70 > 65
            await control(redis, {"type": "ack", "alarm": alarm["id"]})
            await wait_for(
                lambda: first.alarms.alarms("p1")[0]["state"] == "acknowledged", 5, "acknowledged"
            )
            pause_id = await control(redis, {"type": "audio_pause", "seconds": 60})
            await wait_for(
                lambda: (
                    first.alarms.paused_until() is not None
                    and second.alarms.paused_until() is not None
                ),
                5,
                "both ingests paused",
            )
            await wait_for(
                lambda: (
                    sum(first.logs.counters.values()) >= 4
                    and sum(second.logs.counters.values()) >= 1
                ),
                5,
                f"the log entries written {first.logs.counters} {second.logs.counters}",
            )
            assert first.counters["control_applied"] == 3  # limits, ack, pause
            assert second.counters["control_applied"] == 1  # the pause (it holds no one)
            assert second.counters["control_ignored"] == 3  # both limits and the ack of p1
        await asyncio.sleep(0.3)
        frame = (await frames(redis, "p1", "alarm"))[-1]
        assert frame["limits"] == limits and frame["audio_paused_until"] is not None
        assert any(f["limits"] == limits for f in await frames(redis, "p1", "alarm"))
    station = await log_entries(redis, STATION_LOG_KEY)
    assert [(i, e["event"], e["origin"]) for i, e in station] == [
        (pause_id, "audio_paused", ORIGIN)
    ]
    assert old != pause_id
    events = [(e["event"], e.get("origin")) for _, e in await log_entries(redis, log_key("p1"))]
    assert events == [("limits_changed", ORIGIN), ("raised", None), ("acknowledged", ORIGIN)]
    assert await log_entries(redis, log_key("p2")) == []


async def test_two_ingests_hold_each_patient_once(
    tmp_path: Path, redis_server: RedisServer, redis: Redis
) -> None:
    """Two ingests started together: every patient is held by exactly one of them, and its
    stream has one run, seqs contiguous from 1."""
    patients = ["a1", "a2", "a3", "a4"]
    service = ScriptedService(patients, value=NORMAL, period=PERIOD)
    try:
        settings = settings_for(service, tmp_path, redis_server)
        async with running(settings) as one, running(settings) as two:
            await wait_for(
                lambda: len(one.keeper.held | two.keeper.held) == 4, 5, "all patients held"
            )
            await asyncio.sleep(1.0)
            assert one.keeper.held.isdisjoint(two.keeper.held)
            assert set(one.held).isdisjoint(two.held)
            assert set(one.alarms.engines) == one.keeper.held
            assert set(two.alarms.engines) == two.keeper.held
            for patient in patients:
                holder: Any = await redis.get(keys_for(patient).lease)
                owner = one if patient in one.keeper.held else two
                assert holder.decode() == owner.holder
                got = await until_readings(redis, patient, 5)
                assert contiguous(got) and got[0].seq == 1 and len({r.run for r in got}) == 1
                status = (await frames(redis, patient, "status"))[-1]
                assert status["ingest"]["holder"] == owner.holder
    finally:
        service.close()


async def test_a_lost_lease_stops_the_patient_and_a_regained_one_continues(
    service: ScriptedService, tmp_path: Path, redis_server: RedisServer, redis: Redis
) -> None:
    """Another holder in a patient's lease: the ingest stops that patient (no more readings
    of it written, its engine gone) and keeps the other; once the lease is free again it takes
    it back and continues the stream's run and seq."""
    settings = settings_for(service, tmp_path, redis_server)
    async with running(settings, ttl=1.5) as ingest:
        await until_readings(redis, "p1", 5)
        lease = keys_for("p1").lease
        await redis.set(lease, "elsewhere:1:0000", px=60_000)
        await wait_for(lambda: "p1" not in ingest.held, 5, "p1 stopped")
        assert "p1" not in ingest.alarms.engines and "p2" in ingest.alarms.engines
        await asyncio.sleep(0.3)
        stopped = await stream_readings(redis, "p1")
        p2_before = len(await stream_readings(redis, "p2"))
        await asyncio.sleep(1.0)
        assert await stream_readings(redis, "p1") == stopped  # nothing more written
        assert len(await stream_readings(redis, "p2")) > p2_before + 5
        await redis.delete(lease)
        await wait_for(lambda: "p1" in ingest.held, 5, "p1 taken back")
        await until_readings(redis, "p1", len(stopped) + 5)
        got = await stream_readings(redis, "p1")
        assert contiguous(got) and len({r.run for r in got}) == 1
        assert ingest.keeper.counters["lost"] >= 1


async def test_redis_restarted_under_the_ingest_loses_nothing(
    service: ScriptedService, tmp_path: Path, redis_server: RedisServer
) -> None:
    """Redis stopped, then started again (empty) on the same port: the readings accepted
    meanwhile are held and written when it is back, in order, with the same run, none
    dropped; the heartbeat goes on."""
    settings = settings_for(service, tmp_path, redis_server)
    async with running(settings) as ingest:
        client = await connect(redis_server.url)
        try:
            await until_readings(client, "p1", 10)
        finally:
            await aclose_quietly(client)
        run = ingest.hub["p1"].run_id
        redis_server.stop()
        down_at = ingest.hub["p1"].buffer.last_seq  # everything after it came while down
        await wait_for(lambda: ingest.writer.state == "down", 5, "the writer noticed")
        await asyncio.sleep(1.5)
        assert ingest.writer.held("p1") >= 10
        redis_server.start()
        back_at = ingest.hub["p1"].buffer.last_seq
        client = await connect(redis_server.url)
        try:
            got = await until_readings(client, "p1", 1)
            deadline = time.monotonic() + timeout(10)
            while got[-1].seq < back_at + 5:
                assert time.monotonic() < deadline, (got[-1].seq, back_at)
                await asyncio.sleep(0.1)
                got = await stream_readings(client, "p1")
            assert got[0].seq <= down_at + 1, (got[0].seq, down_at)
            assert contiguous(got) and {r.run for r in got} == {run}
            assert ingest.writer.counters["dropped"] == 0
            status = (await frames(client, "p1", "status"))[-1]
            assert status["run"] == run and status["ingest"]["writer"]["failures"] >= 1
        finally:
            await aclose_quietly(client)


# -- processes ----------------------------------------------------------------------------------


def ingest_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hrdash", "ingest"],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def holder_pid(value: Any) -> int | None:
    return int(value.decode().split(":")[1]) if value else None


async def test_holder_killed_another_takes_over_and_continues(
    service: ScriptedService, tmp_path: Path, redis_server: RedisServer, redis: Redis
) -> None:
    """Two ``hrdash ingest`` processes; the holder SIGKILLed: the other takes the patient over
    within the lease's ttl (plus a renewal period and a margin), continues the stream's run and
    seq (no duplicate, no seq gap); the readings missing are only those the service sent in
    the dead window. A SIGTERM stops the survivor cleanly (exit 0) and releases the lease."""
    sources = tmp_path / "sources.toml"
    sources.write_text(service.sources())
    env = {"HRDASH_SOURCES": str(sources), "HRDASH_REDIS_URL": redis_server.url}
    lease = keys_for("p1").lease
    first = ingest_process(env, tmp_path / "first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        await wait_for(lambda: first.poll() is None, 1)
        deadline = time.monotonic() + timeout(15)
        while holder_pid(await redis.get(lease)) != first.pid:
            assert time.monotonic() < deadline, (tmp_path / "first.log").read_text()
            await asyncio.sleep(0.05)
        await until_readings(redis, "p1", 10)
        second = ingest_process(env, tmp_path / "second.log")
        await asyncio.sleep(scaled(2.0))  # started, standing by
        assert holder_pid(await redis.get(lease)) == first.pid
        killed_at = time.time()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout(5))
        while holder_pid(await redis.get(lease)) != second.pid:
            assert time.monotonic() < deadline + timeout(15), (tmp_path / "second.log").read_text()
            await asyncio.sleep(0.02)
        took_over = time.time() - killed_at
        assert took_over <= LEASE_TTL + LEASE_TTL / 3 + scaled(1.0), took_over
        got = await stream_readings(redis, "p1")
        count = len(got)
        got = await until_readings(redis, "p1", count + 10)
        assert contiguous(got) and len({r.run for r in got}) == 1
        assert len({r.time for r in got}) == len(got)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout(6)) == 0, (tmp_path / "second.log").read_text()
        assert await redis.get(lease) is None  # released at the stop
        got = await stream_readings(redis, "p1")
        stored = {r.time for r in got}
        first_after = min(r.time for r in got if r.time / 1000 > killed_at)
        gap = max(b.time - a.time for a, b in itertools.pairwise(got)) / 1000
        assert gap <= took_over + scaled(1.0), (gap, took_over)
        missing = [
            t
            for t, _ in service.sent["p1"]
            if int(t * 1000) not in stored and int(t * 1000) < got[-1].time
        ]
        # (A service that sends only to a connected client, as this one does, sends nothing
        # while no ingest holds the patient: then none is missing.)
        assert all(killed_at - 0.5 <= t <= first_after / 1000 for t in missing), (
            killed_at,
            first_after,
            missing[:3],
            missing[-3:],
        )
        text = (tmp_path / "second.log").read_text()
        assert f"on {redis_server.url} for 2 patients: p1, p2" in text
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.mark.parametrize("userinfo", ["", "user:s3cret@"])
def test_ingest_with_redis_nowhere_says_so_in_one_line(userinfo: str) -> None:
    """``hrdash ingest`` with a Redis URL where nothing answers: one line naming the setting
    and the cause (the password redacted), exit status 2."""
    url = f"redis://{userinfo}127.0.0.1:{free_port()}/0"
    proc = subprocess.run(
        [sys.executable, "-m", "hrdash", "ingest", "--redis-url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout(30),
        env={**os.environ, "HRDASH_SIMULATOR_PATIENTS": "2"},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    shown = f"redis://{'***@' if userinfo else ''}127.0.0.1:{url.rsplit(':', 1)[1]}"
    assert lines == [
        f"hrdash: error: HRDASH_REDIS_URL: cannot reach Redis at {shown!r}: connection refused"
    ]
    assert "s3cret" not in proc.stderr and "user" not in proc.stderr


def test_ingest_without_a_redis_url_says_so_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hrdash", "ingest"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout(30),
        env={k: v for k, v in os.environ.items() if k != "HRDASH_REDIS_URL"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "hrdash: error: hrdash ingest needs HRDASH_REDIS_URL (the Redis that hrdash edge reads)"
    ]


async def test_stops_within_the_grace_with_redis_down(
    service: ScriptedService, tmp_path: Path, redis_server: RedisServer, redis: Redis
) -> None:
    """SIGTERM while Redis is unreachable: the ingest gives up on what it holds after its flush
    bound and exits 0 well within the supervisor's grace, its history committed."""
    sources = tmp_path / "sources.toml"
    sources.write_text(service.sources())
    db = tmp_path / "history.db"
    env = {
        "HRDASH_SOURCES": str(sources),
        "HRDASH_REDIS_URL": redis_server.url,
        "HRDASH_DB": str(db),
    }
    proc = ingest_process(env, tmp_path / "ingest.log")
    try:
        await until_readings(redis, "p1", 10)
        redis_server.stop()
        await asyncio.sleep(1.0)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout(10)) == 0, (tmp_path / "ingest.log").read_text()
        took = time.monotonic() - started
        assert took < STOP_GRACE, took
        text = (tmp_path / "ingest.log").read_text()
        assert "readings not written at the stop" in text and "stopped" in text
        sent = {int(t * 1000) for t, _ in service.sent["p1"]}
        with contextlib.closing(sqlite3.connect(db)) as conn:
            rows = conn.execute(
                "SELECT t FROM readings JOIN patients ON patients.key = readings.patient"
                " WHERE patients.id = 'p1'"
            ).fetchall()
        recorded = {t for (t,) in rows}
        assert len(sent - recorded) <= 1, len(sent - recorded)  # (one in flight at the stop)
        assert recorded <= sent and len(recorded) >= 20  # with those of Redis's outage
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
