"""Failover of Redis + 2 edges under viewers: an edge killed, the ingest killed, Redis restarted.

    python benchmarks/run.py --only failover [--quick]

Each part starts its own ``benchmarks/scaleout.RedisSetup`` (a real ``redis-server``, the
simulator at 2 Hz, ``python -m hrdash ingest``, two ``python -m hrdash edge`` on one port) and
``VIEWERS`` raw viewers (``benchmarks/_load.py``, quick ``QUICK_VIEWERS``) in ``reconnect`` mode:
a viewer the server closes comes back as the page does (after 0.5 s, doubling per failed
attempt, with ``?since=<its last seq>&run=<its run>``; all at once, no cap on the handshakes in
flight), so a reading it misses is a gap and one it
gets twice a duplicate. Their arrival window opens ``BEFORE_S`` before the fault and closes
``AFTER_S`` after the recovery (bounded by ``RECOVER_S``). A thread in this process watches the
patient's readings stream in Redis (``XREVRANGE`` of the newest ``WATCH_COUNT`` entries every
``WATCH_EVERY`` s; it rides a Redis outage out) and notes when each entry first appeared.

* **edge** — ``edge-1`` SIGKILLed: the viewers it held (``ss``-style count of its established
  connections just before) are closed by the kernel and reconnect through the shared port to the
  edge left. Reconnect time per viewer = its new handshake's response - the kill; first reading
  = the kernel arrival of its first new reading - the kill (p50 / p99 / max); gaps and
  duplicates over every viewer and the whole window (goal 0).
* **ingest** — a standby ``python -m hrdash ingest`` runs too; the one holding the patient (the
  lease key's holder id names its pid) is SIGKILLed. Takeover = the first entry in the stream
  stamped after the kill (only the new holder can have it) seen by the watcher - the kill; also
  when that reading was stamped and when it reached the viewers. Readings lost = seqs missing in
  the stream (and at the viewers); the stream's time hole (largest interval between consecutive
  readings' times) says how long no ingest read the patient.
* **redis** — ``redis-server`` stopped (SIGTERM; no persistence: it comes back empty) and started
  again on the same port after ``DOWN_S`` s. Readings lost = seqs missing at the viewers and in the
  stream (goal 0: the ingest holds what arrives meanwhile, ``hrdash.broker.writer``, 1000 per
  patient); back = the first reading stamped after the stop reaching a viewer - Redis answering
  again; live = the first reading stamped after Redis answered reaching a viewer - the same.

Measured and reported, never asserted.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from benchmarks.common import summary
from benchmarks.fanout import LoadGroup
from benchmarks.scaleout import DRAIN_S, SIM_PERIOD, SOURCES, RedisSetup
from hrdash.broker.entries import StreamReading, decode_reading, keys_for

VIEWERS = 2_000
QUICK_VIEWERS = 300
PATIENT = "bed-01"  # the simulator's first patient: /ws serves it
SETTLE_S = 2.0
BEFORE_S = 3.0  # of the window before the fault
AFTER_S = 5.0  # of the window after the recovery
RECOVER_S = 30.0  # the recovery is waited for this long at most
DOWN_S = 2.0  # Redis stays down this long
WATCH_EVERY = 0.02
WATCH_COUNT = 50  # 25 s of readings at 2 Hz: more than a restart's held backlog


class StreamWatch:
    """A thread noting every entry of a readings stream with when it was first seen (wall s)."""

    def __init__(self, url: str, patient: str) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True
        )
        self.key = keys_for(patient).readings
        self.seen: dict[tuple[str, int], tuple[int, float]] = {}  # (run, seq) → (time ms, seen)
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-watch", daemon=True)

    def start(self) -> StreamWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(WATCH_EVERY):
            try:
                entries = self.client.xrevrange(self.key, "+", "-", count=WATCH_COUNT)
            except redis.RedisError:
                self.errors += 1
                continue
            now = time.time()
            for entry_id, fields in entries or []:
                r = decode_reading(entry_id or "", fields or {})
                if isinstance(r, StreamReading):
                    self.seen.setdefault((r.run, r.seq), (r.time, now))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()

    def first_after(self, ms: float) -> tuple[str, int, int, float] | None:
        """The first-seen entry stamped after ``ms``: (run, seq, time ms, seen)."""
        later = [(seen, run, seq, t) for (run, seq), (t, seen) in self.seen.items() if t > ms]
        if not later:
            return None
        seen, run, seq, t = min(later)
        return run, seq, t, seen

    def continuity(self) -> dict[str, Any]:
        """Seqs missing in the stream, per run, and the largest interval between readings."""
        runs: dict[str, list[tuple[int, int]]] = {}
        for (run, seq), (t, _seen) in self.seen.items():
            runs.setdefault(run, []).append((seq, t))
        missing = 0
        hole = 0
        for items in runs.values():
            items.sort()
            seqs = [s for s, _ in items]
            missing += seqs[-1] - seqs[0] + 1 - len(seqs)
            hole = max([hole, *(b[1] - a[1] for a, b in itertools.pairwise(items))])
        return {
            "entries": len(self.seen),
            "runs": len(runs),
            "missing_seqs": missing,
            "time_hole_ms": hole,
            "not_read": max(0, round(hole / (SIM_PERIOD * 1000)) - 1),
            "errors": self.errors,
        }


def _wait(until: Callable[[], bool], bound: float) -> float | None:
    """Seconds until ``until()`` held (polled every 0.1 s), None past ``bound``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < bound:
        if until():
            return round(time.monotonic() - t0, 2)
        time.sleep(0.1)
    return None


def _arrival(viewers: dict[str, Any], watch: StreamWatch, seq: int) -> tuple[float, float] | None:
    """When reading ``seq`` reached the first and the last viewer (wall s)."""
    ages = viewers["by_seq_raw"].get(str(seq))
    stamped = next((t for (_r, s), (t, _) in watch.seen.items() if s == seq), None)
    if ages is None or stamped is None:
        return None
    return (stamped + ages[0]) / 1000, (stamped + ages[1]) / 1000


class _Part:
    """One failover part: a Redis setup, viewers in reconnect mode, the stream watcher."""

    def __init__(self, tmp: Path, name: str, viewers: int, ingests: int = 1) -> None:
        self.setup = RedisSetup(tmp, f"failover-{name}", ingests=ingests)
        self.loads = LoadGroup(self.setup.tag, self.setup.url, SOURCES)
        self.viewers = viewers
        self.watch: StreamWatch | None = None

    def __enter__(self) -> _Part:
        try:
            self.setup.start()
            self.setup.children += self.loads.start_loads(1)
            self.loads.ask("reconnect")
            self.connect = self.loads.add(self.viewers)
            self.loads.ask(f"window {self.viewers}")  # reconnects all at once, as pages do
            time.sleep(SETTLE_S)
            self.watch = StreamWatch(self.setup.redis.url, PATIENT).start()
            self.loads.mark()
            time.sleep(BEFORE_S)
        except BaseException:
            self.__exit__()
            raise
        return self

    def finish(self) -> dict[str, Any]:
        """Close the window: the viewers' arrivals (+ raw by_seq), counters, reconnects."""
        time.sleep(AFTER_S)
        self.loads.end()
        time.sleep(DRAIN_S)
        arrivals: dict[str, Any] = {}
        by_seq: dict[str, list[float]] = {}
        kernel: list[float] = []
        keys = ("gaps", "duplicates", "viewers", "viewers_with_readings", "viewers_with_gaps")
        for answer in self.loads.ask("arrivals", 60):  # one load process
            for key in keys:
                arrivals[key] = arrivals.get(key, 0) + answer[key]
            by_seq.update(answer["by_seq"])
            kernel += answer["kernel_ms"]
        arrivals["age_ms"] = summary(kernel)
        arrivals["by_seq_raw"] = by_seq
        stats = self.loads.load_stats()
        return {
            "viewers": self.viewers,
            "connect": self.connect,
            "arrivals": arrivals,
            "load": {k: stats[k] for k in ("open", "closed", "failed_total", "run_changes")},
            "held_after": self.setup.viewers_held(),
        }

    def __exit__(self, *_: Any) -> None:
        if self.watch is not None:
            self.watch.stop()
        self.setup.stop()


def _resumes(loads: LoadGroup) -> list[list[float | None]]:
    return [r for answer in loads.ask("reconnects") for r in answer["resumes"]]


def edge_kill(viewers: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="hrdash-failover-") as tmp,
        _Part(Path(tmp), "edge", viewers) as part,
    ):
        held = part.setup.viewers_held()
        victim = "edge-1"
        killed_at = time.time()
        os.kill(part.setup.serving[victim], signal.SIGKILL)
        expected = held.get(victim) or 0

        def back() -> bool:
            rs = _resumes(part.loads)
            return len(rs) >= expected and all(r[2] is not None for r in rs)

        waited = _wait(back, RECOVER_S)
        out = part.finish()
        rs = _resumes(part.loads)
        out.update(
            victim=victim,
            held_before=held,
            recovered_in_s=waited,
            closed=len(rs),
            reopened=sum(1 for r in rs if r[1] is not None),
            reading_again=sum(1 for r in rs if r[2] is not None),
            reconnect_s=summary([r[1] - killed_at for r in rs if r[1] is not None]),
            first_reading_s=summary([r[2] - killed_at for r in rs if r[2] is not None]),
            noticed_s=summary([r[0] - killed_at for r in rs if r[0] is not None]),
        )
        out["arrivals"].pop("by_seq_raw")
        return out


def _holder_pid(part: _Part) -> int | None:
    client = redis.Redis.from_url(part.setup.redis.url, decode_responses=True)
    try:
        holder = client.get(keys_for(PATIENT).lease)
    finally:
        client.close()
    with contextlib.suppress(AttributeError, IndexError, ValueError):
        return int(str(holder).split(":")[-2])
    return None


def ingest_kill(viewers: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="hrdash-failover-") as tmp,
        _Part(Path(tmp), "ingest", viewers, ingests=2) as part,
    ):
        assert part.watch is not None
        pid = _holder_pid(part)
        names = {v: k for k, v in part.setup.serving.items()}
        if pid not in names:
            raise RuntimeError(f"the lease names pid {pid}, not one of the ingests {names}")
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        watch = part.watch
        waited = _wait(lambda: watch.first_after(killed_at * 1000) is not None, RECOVER_S)
        out = part.finish()
        first = watch.first_after(killed_at * 1000)
        new_pid = _holder_pid(part)
        out.update(
            killed=names[pid],
            new_holder=names.get(new_pid or -1, str(new_pid)),
            recovered_in_s=waited,
            stream=watch.continuity(),
        )
        if first is not None:
            _run, seq, stamped, seen = first
            out["takeover_s"] = round(seen - killed_at, 3)
            out["first_new_reading_stamped_s"] = round(stamped / 1000 - killed_at, 3)
            reached = _arrival(out["arrivals"], watch, seq)
            if reached is not None:
                out["first_new_reading_at_viewers_s"] = [round(t - killed_at, 3) for t in reached]
        out["arrivals"].pop("by_seq_raw")
        return out


def redis_restart(viewers: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="hrdash-failover-") as tmp,
        _Part(Path(tmp), "redis", viewers) as part,
    ):
        assert part.watch is not None
        server = part.setup.redis
        stopped_at = time.time()
        server.stop()
        time.sleep(DOWN_S)
        server.start()  # waits until it answers PING
        up_at = time.time()
        assert server.proc is not None
        part.setup.serving["redis-server"] = server.proc.pid
        watch = part.watch
        waited = _wait(lambda: watch.first_after(up_at * 1000 + 1000) is not None, RECOVER_S)
        out = part.finish()
        out.update(down_s=round(up_at - stopped_at, 2), recovered_in_s=waited)
        out["stream"] = watch.continuity()
        for key, since in (("back", stopped_at), ("live", up_at)):
            first = watch.first_after(since * 1000)
            reached = _arrival(out["arrivals"], watch, first[1]) if first is not None else None
            if reached is not None:
                out[f"{key}_after_up_s"] = [round(t - up_at, 3) for t in reached]
        out["arrivals"].pop("by_seq_raw")
        return out


def run(quick: bool) -> dict[str, Any]:
    viewers = QUICK_VIEWERS if quick else VIEWERS
    out: dict[str, Any] = {
        "viewers": viewers,
        "simulator_period_s": SIM_PERIOD,
        "before_s": BEFORE_S,
        "after_s": AFTER_S,
        "redis_down_s": DOWN_S,
    }
    for name, part in (("edge", edge_kill), ("ingest", ingest_kill), ("redis", redis_restart)):
        print(f"[failover] {name}", flush=True)
        try:
            out[name] = part(viewers)
        except Exception as exc:  # reported; the other parts go on
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
