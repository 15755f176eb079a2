"""StationAlarms (the bridge's alarms at run time) without sockets, on a fake clock: the log and
the limits go to their sinks (the recorder) as well as memory, stored ones are put back without
being logged again, ``sounding`` follows the audio pause, and the pause's end is announced by the
timer with no message coming."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hrdash.alarms import AUDIO_PAUSE_MAX, MEDIUM_DELAY, Limits
from hrdash.station_alarms import LOG_KEPT, StationAlarms

T0 = 1_795_000_000.0  # Unix s
ORIGIN = "http://127.0.0.1:8050"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Sinks:
    """What StationAlarms hands out: changes announced, log entries, limits changes."""

    def __init__(self) -> None:
        self.changes: list[str | None] = []
        self.logged: list[dict[str, Any]] = []
        self.limits: list[tuple[str, Limits, int, str | None]] = []

    def station(self, clock: Clock, patients: tuple[str, ...] = ("a", "b")) -> StationAlarms:
        return StationAlarms(
            [(p, Limits()) for p in patients],
            no_signal_after=10.0,
            clock=clock,
            on_change=self.changes.append,
            on_log=self.logged.extend,
            on_limits=lambda *change: self.limits.append(change),
        )


def raise_high(alarms: StationAlarms, clock: Clock, patient: str = "a") -> None:
    alarms.upstream(patient, True)
    alarms.reading(patient, 130)
    clock.now += MEDIUM_DELAY + 0.1
    alarms.reading(patient, 131)


def test_log_entries_and_limits_go_to_the_sinks_and_memory() -> None:
    """Every new entry (the station's pause too) goes to on_log as well as the in-memory log;
    a limits change to on_limits with its time and origin, and it is announced even though no
    alarm changed; the same limits again do nothing."""
    clock, sinks = Clock(), Sinks()
    alarms = sinks.station(clock)
    raise_high(alarms, clock)
    alarms.pause(60, ORIGIN)
    new = Limits(low=45, high=140)
    sinks.changes.clear()
    alarms.set_limits("b", new, ORIGIN)
    assert sinks.changes == ["b"]
    assert sinks.limits == [("b", new, round(clock.now * 1000), ORIGIN)]
    alarms.set_limits("b", new, ORIGIN)
    assert len(sinks.limits) == 1 and sinks.changes == ["b"]
    events = [(e["patient"], e["event"]) for e in sinks.logged]
    assert events == [("a", "raised"), (None, "audio_paused"), ("b", "limits_changed")]
    in_memory = list(reversed(alarms.log(None, 10)))
    assert in_memory == sinks.logged
    assert alarms.alarm_frame("b")["limits"] == new.as_dict()


def test_preload_and_restore_are_not_logged_again() -> None:
    """Stored entries go back into memory (oldest first, a patient the station does not have
    left out, at most LOG_KEPT each) without reaching on_log; restored limits are in effect
    without a log entry or on_limits."""
    clock, sinks = Clock(), Sinks()
    alarms = sinks.station(clock)
    stored = [
        {"time": i, "patient": ("a", "b", None, "gone")[i % 4], "event": "raised"}
        for i in range(4 * (LOG_KEPT + 5))
    ]
    assert alarms.preload_log(stored) == 3 * (LOG_KEPT + 5)
    assert [e["time"] for e in alarms.log("a", 3)] == [stored[-4]["time"] - 4 * i for i in range(3)]
    assert len(alarms.log("b", LOG_KEPT + 10)) == LOG_KEPT
    page = Limits(low=45)
    alarms.restore_limits("a", page)
    assert alarms.engines["a"].limits == page and alarms.limits("a")["low"] == 45
    assert sinks.logged == [] and sinks.limits == []
    raise_high(alarms, clock)  # the restored engine runs as any other
    assert alarms.log("a", 1)[0]["event"] == "raised"
    assert sinks.logged == alarms.log("a", 1)
    with pytest.raises(ValueError):
        alarms.restore_limits("a", Limits(low=10))


def test_sounding_and_the_pause_end_with_a_fake_clock() -> None:
    """``sounding`` is should_sound over the patient's alarms (station: every patient's), the
    pause respected; when the pause ends the next tick announces every patient
    (on_change(None)), once."""
    clock, sinks = Clock(), Sinks()
    alarms = sinks.station(clock)
    raise_high(alarms, clock)
    assert alarms.sounding("a") == "medium" and alarms.sounding("b") is None
    assert alarms.sounding() == "medium"
    alarms = sinks.station(clock, ("a",))  # b's service never connects: keep it out below
    raise_high(alarms, clock)
    alarms.pause(AUDIO_PAUSE_MAX, ORIGIN)
    end = clock.now + AUDIO_PAUSE_MAX
    frame = alarms.alarm_frame("a")
    assert frame["sounding"] is None and frame["audio_paused_until"] == round(end * 1000)
    sinks.changes.clear()
    for _ in range(12):  # readings keep the signal; the pause runs
        clock.now += 9.9
        alarms.reading("a", 131)
        alarms.tick()
    assert sinks.changes == [] and clock.now < end
    clock.now = end
    alarms.tick()
    assert sinks.changes == [None]
    frame = alarms.alarm_frame("a")
    assert frame["sounding"] == "medium" and frame["audio_paused_until"] is None
    alarms.tick()
    assert sinks.changes == [None]  # once


async def test_the_timer_announces_the_pause_end_with_no_message() -> None:
    """run() wakes at the pause's end by itself (a real short pause on the real clock)."""
    changes: list[str | None] = []
    second = asyncio.Event()

    def on_change(patient: str | None) -> None:
        changes.append(patient)
        if len(changes) == 2:
            second.set()

    alarms = StationAlarms([("a", Limits())], no_signal_after=10.0, on_change=on_change)
    timer = asyncio.create_task(alarms.run())
    try:
        await asyncio.sleep(0.01)
        alarms.pause(0.2, ORIGIN)
        assert changes == [None]
        async with asyncio.timeout(5):
            await second.wait()
        assert changes == [None, None] and alarms.paused_until() is None
    finally:
        timer.cancel()


def test_add_and_remove_a_patient() -> None:
    """add_patient runs an engine from now with the limits given (announced, not logged, not
    handed to on_limits); remove_patient stops it: no timer of it fires, nothing of it is
    announced, an ack or limits for it are refused; the other patients go on."""
    clock, sinks = Clock(), Sinks()
    alarms = sinks.station(clock, ("a",))
    limits = Limits(low=45, high=140)
    alarms.add_patient("b", limits)
    assert sinks.changes == ["b"] and sinks.logged == [] and sinks.limits == []
    assert alarms.alarm_frame("b")["limits"] == limits.as_dict()
    with pytest.raises(ValueError):
        alarms.add_patient("b", limits)
    due = alarms.next_deadline()
    assert due is not None and due <= clock.now + 10.0  # b's (and a's) no-signal timers
    alarms.remove_patient("b")
    assert "b" not in alarms.engines
    clock.now += 60  # far past every no-signal deadline
    sinks.changes.clear()
    alarms.tick()
    assert sinks.changes == ["a"]  # only a's no_signal / source_down, nothing of b
    assert {e["patient"] for e in sinks.logged} == {"a"}
    assert not alarms.acknowledge("b:no_signal:1", ORIGIN)
    assert all(alarm["patient"] == "a" for alarm in alarms.all_alarms())
    alarms.remove_patient("b")  # again: nothing
    alarms.add_patient("b", Limits())  # taken back: a fresh engine
    assert alarms.alarms("b") == []
