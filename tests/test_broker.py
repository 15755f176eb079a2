"""The Redis fan-out against a real redis-server (tests/redis_support.py): the ingest's writer,
the edges' readers, the leases and the takeover, Redis restarted, Redis nowhere."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
from redis.asyncio import Redis

from hrdash.broker import (
    BrokerError,
    Lease,
    LeaseKeeper,
    StreamReader,
    StreamReading,
    StreamWriter,
    connect,
    holder_id,
    keys_for,
)
from hrdash.broker.client import aclose_quietly
from tests.conftest import free_port, timeout, wait_for
from tests.redis_support import RedisServer

T0 = 1_700_000_000_000  # Unix ms of the first reading


def readings(run: str, first: int, count: int) -> list[StreamReading]:
    """``count`` readings of ``run`` from seq ``first``, 500 ms apart, bpm 60..99."""
    return [
        StreamReading(seq, run, T0 + 500 * seq, 60 + seq % 40)
        for seq in range(first, first + count)
    ]


class Seen:
    """What a reader delivered, in order."""

    def __init__(self) -> None:
        self.readings: dict[str, list[StreamReading]] = {}
        self.status: dict[str, list[dict[str, Any]]] = {}
        self.alarms: dict[str, list[dict[str, Any]]] = {}

    def on_readings(self, patient_id: str, items: list[StreamReading]) -> None:
        self.readings.setdefault(patient_id, []).extend(items)

    def on_status(self, patient_id: str, frame: dict[str, Any]) -> None:
        self.status.setdefault(patient_id, []).append(frame)

    def on_alarm(self, patient_id: str, frame: dict[str, Any]) -> None:
        self.alarms.setdefault(patient_id, []).append(frame)

    def seqs(self, patient_id: str) -> list[int]:
        return [r.seq for r in self.readings.get(patient_id, [])]


def reader_for(client: Redis, patients: list[str], seen: Seen, **options: Any) -> StreamReader:
    options.setdefault("block_ms", 200)
    options.setdefault("sleep", fast_sleep)
    return StreamReader(
        client,
        patients,
        on_readings=seen.on_readings,
        on_status=seen.on_status,
        on_alarm=seen.on_alarm,
        rng=random.Random(1),
        **options,
    )


async def fast_sleep(seconds: float) -> None:
    """Backoff waits cut to a tenth (the jittered delays stay what the code computes)."""
    await asyncio.sleep(seconds / 10)


@contextlib.asynccontextmanager
async def tasks(*coros: Coroutine[Any, Any, None]) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run ``coros`` as tasks for the block; cancel them after."""
    started = [asyncio.create_task(coro) for coro in coros]
    try:
        yield started
    finally:
        for task in started:
            task.cancel()
        for task in started:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client of the test's redis-server."""
    redis = await connect(redis_server.url)
    yield redis
    await aclose_quietly(redis)


async def drained(writer: StreamWriter, seconds: float = 5.0) -> None:
    async with asyncio.timeout(timeout(seconds)):
        await writer.drained()


STATUS = {"type": "status", "patient": "bed-01", "upstream": "live", "detail": ""}
ALARM = {"type": "alarm", "patient": "bed-01", "alarms": [], "sounding": None}


async def test_readings_status_and_alarms_round_trip_through_redis(client: Redis) -> None:
    """Each reading lands once as ``<seq>-0`` with seq/run/time/bpm; a reader gets every
    patient's readings in order and the newest status and alarm frames."""
    writer = StreamWriter(client, buffer=1000, rng=random.Random(1))
    seen = Seen()
    async with tasks(writer.run()):
        writer.add("bed-01", readings("r1", 1, 30))
        writer.add("bed-02", readings("r2", 1, 5))
        writer.add_status("bed-01", STATUS)
        writer.add_alarm("bed-01", ALARM)
        await drained(writer)
    raw = await client.xrange(keys_for("bed-01").readings, count=2)
    assert raw[0] == (
        b"1-0",
        {b"seq": b"1", b"run": b"r1", b"time": b"1700000000500", b"bpm": b"61"},
    )
    assert await client.xlen(keys_for("bed-01").readings) == 30
    assert writer.counters["written"] == 35 and writer.counters["duplicates"] == 0
    assert writer.counters["frames_written"] == 2
    reader = reader_for(client, ["bed-01", "bed-02"], seen)
    async with tasks(reader.run()):
        await wait_for(lambda: len(seen.seqs("bed-01")) == 30 and len(seen.seqs("bed-02")) == 5)
    assert seen.readings["bed-01"] == readings("r1", 1, 30)
    assert seen.readings["bed-02"] == readings("r2", 1, 5)
    assert seen.status == {"bed-01": [STATUS]} and seen.alarms == {"bed-01": [ALARM]}


async def test_a_retried_batch_stores_no_reading_twice(client: Redis) -> None:
    """The same readings written again (a batch retried after a lost reply) are refused by
    Redis as not newer than the top, and counted as duplicates."""
    writer = StreamWriter(client, buffer=1000)
    writer.add("bed-01", readings("r", 1, 10))
    await writer.write_once()
    writer.add("bed-01", readings("r", 5, 10))  # 5..10 again, 11..14 new
    await writer.write_once()
    ids = [entry_id for entry_id, _ in await client.xrange(keys_for("bed-01").readings)]
    assert ids == [f"{seq}-0".encode() for seq in range(1, 15)]
    assert writer.counters["written"] == 14 and writer.counters["duplicates"] == 6


async def test_streams_are_capped_with_an_approximate_maxlen(client: Redis) -> None:
    """``MAXLEN ~ buffer``: the stream keeps at least the newest ``buffer`` readings and not
    many more (Redis trims whole nodes of up to 100 entries)."""
    writer = StreamWriter(client, buffer=150, batch=100)
    for first in range(1, 2001, 100):
        writer.add("bed-01", readings("r", first, 100))
        await writer.write_once()
    length = await client.xlen(keys_for("bed-01").readings)
    assert 150 <= length <= 150 + 100
    newest = await client.xrevrange(keys_for("bed-01").readings, count=1)
    assert newest[0][0] == b"2000-0"


async def test_two_readers_see_the_same_seqs(client: Redis) -> None:
    """Two edges reading the same streams deliver the same readings, seq for seq."""
    writer = StreamWriter(client, buffer=1000)
    first, second = Seen(), Seen()
    readers = [reader_for(client, ["bed-01"], seen) for seen in (first, second)]
    async with tasks(writer.run(), *(reader.run() for reader in readers)):
        for start in range(1, 101, 10):
            writer.add("bed-01", readings("r", start, 10))
            await asyncio.sleep(0.005)
        await wait_for(lambda: len(first.seqs("bed-01")) == len(second.seqs("bed-01")) == 100)
    assert first.seqs("bed-01") == second.seqs("bed-01") == list(range(1, 101))


async def test_a_restarted_reader_resumes_from_its_last_id(client: Redis) -> None:
    """A reader started with another's positions goes on after the last reading that one saw:
    no gap, no duplicate; a reader without backlog starts at the top."""
    writer = StreamWriter(client, buffer=1000)
    first = Seen()
    reader = reader_for(client, ["bed-01"], first)
    async with tasks(writer.run(), reader.run()):
        writer.add("bed-01", readings("r", 1, 40))
        await wait_for(lambda: len(first.seqs("bed-01")) == 40)
    positions = dict(reader.positions)
    assert positions[keys_for("bed-01").readings] == "40-0"
    writer.add("bed-01", readings("r", 41, 25))  # written while no reader runs
    await writer.write_once()
    second, fresh = Seen(), Seen()
    resumed = reader_for(client, ["bed-01"], second, positions=positions)
    tail = reader_for(client, ["bed-01"], fresh, backlog=False)
    async with tasks(resumed.run(), tail.run(), writer.run()):
        await wait_for(lambda: len(second.seqs("bed-01")) == 25)
        await wait_for(lambda: resumed.state == "up" and tail.state == "up")
        writer.add("bed-01", readings("r", 66, 5))
        await wait_for(lambda: len(second.seqs("bed-01")) == 30 and len(fresh.seqs("bed-01")) == 5)
    assert first.seqs("bed-01") + second.seqs("bed-01") == list(range(1, 71))
    assert fresh.seqs("bed-01") == list(range(66, 71))


async def test_bad_entries_are_counted_and_passed_over(client: Redis) -> None:
    """Entries no ingest of ours wrote are refused by reason; the good ones around them are
    delivered and the reader keeps reading."""
    keys = keys_for("bed-01")
    writer = StreamWriter(client, buffer=1000)
    writer.add("bed-01", readings("r", 1, 3))
    await writer.write_once()
    await client.xadd(keys.readings, {"seq": "4", "run": "r", "time": "x", "bpm": "70"}, id="4-0")
    await client.xadd(keys.readings, {"junk": "1"}, id="5-0")
    await client.xadd(keys.status, {"frame": "not json"})
    writer.add("bed-01", readings("r", 6, 2))
    writer.add_status("bed-01", STATUS)
    await writer.write_once()
    seen = Seen()
    reader = reader_for(client, ["bed-01"], seen)
    async with tasks(reader.run()):
        await wait_for(lambda: len(seen.seqs("bed-01")) == 5 and reader.state == "up")
        await client.xadd(keys.status, {"frame": '{"type":"status","patient":"bed-02"}'})
        writer.add_status("bed-01", {**STATUS, "upstream": "down"})
        await writer.write_once()
        await wait_for(lambda: len(seen.status.get("bed-01", [])) == 2)
    assert seen.seqs("bed-01") == [1, 2, 3, 6, 7]
    assert [f["upstream"] for f in seen.status["bed-01"]] == ["live", "down"]
    assert reader.counters["rejected"] == 3
    assert dict(reader.rejects) == {"bad_time": 1, "missing_field": 1, "bad_frame": 1}


async def test_a_lease_is_exclusive_and_only_its_holder_renews_or_releases(
    client: Redis,
) -> None:
    """SET NX PX: one holder at a time; another's renew and release leave it alone; once
    released, the other takes it."""
    a = Lease(client, "bed-01", "host:1:aaaaaaaa", ttl=5)
    b = Lease(client, "bed-01", "host:2:bbbbbbbb", ttl=5)
    assert await a.acquire() and await a.acquire()  # taking back one's own lease: held
    assert not await b.acquire()
    assert not await b.renew() and not await b.release()
    assert await a.holder_now() == "host:1:aaaaaaaa"
    assert 0 < await client.pttl(a.key) <= 5000
    assert await a.renew()
    assert await a.release()
    assert not await a.renew()
    assert await b.acquire() and await b.holder_now() == "host:2:bbbbbbbb"


async def test_a_writer_whose_lease_another_holds_writes_nothing(client: Redis) -> None:
    """Writes are fenced by the lease: a stale holder's readings are dropped and counted, and
    it is told; the holder's writes go through."""
    fenced: list[str] = []
    stale = StreamWriter(client, buffer=100, holder="host:1:old", on_fenced=fenced.append)
    holder = StreamWriter(client, buffer=100, holder="host:2:new")
    assert await Lease(client, "bed-01", "host:2:new").acquire()
    stale.add("bed-01", readings("r", 1, 5))
    stale.add_status("bed-01", STATUS)
    await stale.write_once()
    assert await client.xlen(keys_for("bed-01").readings) == 0
    assert await client.exists(keys_for("bed-01").status) == 0
    assert stale.counters["fenced"] == 5 and stale.held() == 0 and fenced == ["bed-01"] * 2
    holder.add("bed-01", readings("r", 1, 5))
    await holder.write_once()
    assert await client.xlen(keys_for("bed-01").readings) == 5


async def test_a_standby_takes_over_after_the_holder_stops_renewing(client: Redis) -> None:
    """The holder dies (stops renewing, releases nothing): a standby takes the patient once the
    lease lapses, no sooner, and continues the stream's run and seq; a reader sees one
    sequence."""
    ttl, every = 0.6, 0.1
    gained: dict[str, list[tuple[str, str, int]]] = {"a": [], "b": []}

    def keeper(name: str) -> LeaseKeeper:
        return LeaseKeeper(
            client,
            holder_id(random.Random(name)),
            ["bed-01"],
            on_gained=lambda pid, run, seq: gained[name].append((pid, run, seq)),
            on_lost=lambda pid: None,
            ttl=ttl,
            every=every,
            rng=random.Random(name),
        )

    a, b = keeper("a"), keeper("b")
    await a.tick()
    assert gained["a"] and gained["a"][0][2] == 1
    run = gained["a"][0][1]
    writer_a = StreamWriter(client, buffer=1000, holder=a.holder)
    writer_a.add("bed-01", readings(run, 1, 20))
    await writer_a.write_once()
    seen = Seen()
    reader = reader_for(client, ["bed-01"], seen)
    async with tasks(reader.run(), b.run()):
        async with tasks(a.run()):
            await asyncio.sleep(2 * ttl)  # a renews; b cannot take it meanwhile
            assert not gained["b"]
        died = time.monotonic()  # a's task is gone: no more renewals
        await wait_for(lambda: bool(gained["b"]), 5, "the standby's takeover")
        took = time.monotonic() - died
        assert took >= ttl - every - 0.05  # not before the lease lapsed
        assert gained["b"] == [("bed-01", run, 21)]
        writer_b = StreamWriter(client, buffer=1000, holder=b.holder)
        writer_b.add("bed-01", readings(run, 21, 10))
        await writer_b.write_once()
        await wait_for(lambda: len(seen.seqs("bed-01")) == 30)
    print(f"takeover {took:.3f} s after the holder died (ttl {ttl} s, renew every {every} s)")
    assert seen.seqs("bed-01") == list(range(1, 31))
    assert {r.run for r in seen.readings["bed-01"]} == {run}
    writer_a.add("bed-01", readings(run, 21, 1))  # the old holder, come back, is fenced
    await writer_a.write_once()
    assert writer_a.counters["fenced"] == 1


async def test_readings_held_while_redis_restarts_are_written_after(
    redis_server: RedisServer, client: Redis
) -> None:
    """Redis restarted empty mid-write: readings accepted meanwhile are held and written when
    it returns (the lapsed lease taken back), none lost; the running reader finds its stream
    behind, reads it from its start and ends with every seq once."""
    holder = "host:1:aaaaaaaa"
    assert await Lease(client, "bed-01", holder).acquire()
    writer = StreamWriter(client, buffer=1000, holder=holder, sleep=fast_sleep)
    seen = Seen()
    reader = reader_for(client, ["bed-01"], seen)
    next_seq = 1

    def produce(count: int) -> None:
        nonlocal next_seq
        writer.add("bed-01", readings("r", next_seq, count))
        next_seq += count

    async with tasks(writer.run(), reader.run()):
        for _ in range(10):
            produce(5)
            await asyncio.sleep(0.01)
        await wait_for(lambda: len(seen.seqs("bed-01")) == 50, what="the first 50 read")
        await asyncio.to_thread(redis_server.stop)
        for _ in range(10):  # accepted while Redis is down
            produce(5)
            await asyncio.sleep(0.02)
        await wait_for(lambda: writer.state == "down", what="the writer noticing")
        assert writer.held() == 50
        await asyncio.to_thread(redis_server.start)
        produce(5)
        await wait_for(lambda: len(seen.seqs("bed-01")) == 105, 10, "every reading read")
        await drained(writer)
    assert seen.seqs("bed-01") == list(range(1, 106))
    assert writer.counters["dropped"] == 0 and writer.counters["failures"] >= 1
    assert writer.state == "up" and writer.held() == 0
    assert reader.counters["failures"] >= 1
    assert [e[0] for e in await client.xrange(keys_for("bed-01").readings, count=1)] == [b"51-0"]
    assert await Lease(client, "bed-01", holder).holder_now() == holder


async def test_a_reader_reads_a_stream_restarted_empty_from_its_start(
    redis_server: RedisServer, client: Redis
) -> None:
    """Redis restarted empty and a new ingest starts a new run at seq 1: the reader, whose last
    id is far ahead, finds the stream behind it and reads it from its start (counted)."""
    writer = StreamWriter(client, buffer=1000)
    writer.add("bed-01", readings("old", 1, 40))
    await writer.write_once()
    seen = Seen()
    reader = reader_for(client, ["bed-01"], seen)
    async with tasks(reader.run()):
        await wait_for(lambda: len(seen.seqs("bed-01")) == 40)
        await asyncio.to_thread(redis_server.restart)
        await wait_for(lambda: reader.counters["failures"] >= 1, what="the reader noticing")
        fresh = StreamWriter(client, buffer=1000)
        fresh.add("bed-01", readings("new", 1, 5))
        async with asyncio.timeout(timeout(5)):
            while True:  # the first attempts may meet the restart's closed connections
                with contextlib.suppress(ConnectionError, OSError):
                    await fresh.write_once()
                    break
                await asyncio.sleep(0.05)
        await wait_for(lambda: len(seen.seqs("bed-01")) == 45, what="the new run read")
    assert [(r.run, r.seq) for r in seen.readings["bed-01"][40:]] == [
        ("new", s) for s in range(1, 6)
    ]
    assert reader.counters["resets"] == 1


async def test_the_hold_is_bounded_and_keeps_the_newest_in_order(
    redis_server: RedisServer, client: Redis
) -> None:
    """Past ``hold`` readings per patient while Redis is down, the oldest are dropped and
    counted; the rest are written in order when it returns."""
    await asyncio.to_thread(redis_server.stop)
    writer = StreamWriter(client, buffer=1000, hold=20, sleep=fast_sleep)
    async with tasks(writer.run()):
        writer.add("bed-01", readings("r", 1, 35))
        await wait_for(lambda: writer.counters["failures"] >= 1)
        assert writer.counters["dropped"] == 15 and writer.held("bed-01") == 20
        await asyncio.to_thread(redis_server.start)
        await drained(writer, 10)
    ids = [entry_id for entry_id, _ in await client.xrange(keys_for("bed-01").readings)]
    assert ids == [f"{seq}-0".encode() for seq in range(16, 36)]


async def test_the_backoff_is_jittered_by_the_rng_and_sleep_passed_in(
    redis_server: RedisServer, client: Redis
) -> None:
    """While Redis is unreachable the writer waits the jittered, growing delays of the ingest's
    backoff, drawn from its rng, through its sleep."""
    await asyncio.to_thread(redis_server.stop)
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    writer = StreamWriter(client, buffer=10, rng=random.Random(3), sleep=record)
    async with tasks(writer.run()):
        writer.add("bed-01", readings("r", 1, 1))
        await wait_for(lambda: len(waits) >= 4)
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0 and 1.0 <= waits[2] <= 2.0
    again: list[float] = []
    first = StreamWriter(client, buffer=10, rng=random.Random(3), sleep=record)
    assert first.rng is not None
    again = [first.rng.uniform(d / 2, d) for d in (0.5, 1.0, 2.0)]
    assert waits[:3] == again
    assert writer.state == "down" and writer.detail == "connection refused"


async def test_a_redis_url_pointing_nowhere_is_one_line() -> None:
    """No Redis there, or not a Redis URL: one line naming the URL, its password redacted."""
    port = free_port()
    with pytest.raises(BrokerError) as err:
        await connect(f"redis://:s3cret@127.0.0.1:{port}/0", connect_timeout=1)
    message = str(err.value)
    assert "\n" not in message and "s3cret" not in message
    assert message == (
        f"HRDASH_REDIS_URL: cannot reach Redis at 'redis://***@127.0.0.1:{port}/0': "
        "connection refused"
    )
    with pytest.raises(BrokerError) as err:
        await connect("http://127.0.0.1:1/")
    assert "\n" not in str(err.value) and str(err.value).startswith(
        "HRDASH_REDIS_URL: cannot use 'http://"
    )
