"""The pure alarm engine (``hrdash/alarms.py``) with a fake clock: limits, delays at their edges,
hysteresis, the life cycle (latching, acknowledging, superseding), technical alarms, limits
changes, the audio pause, and property tests against a replay of the raw history."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrdash.alarms import (
    AUDIO_PAUSE_MAX,
    DELAYS,
    EVENTS,
    HIGH_DELAY,
    KINDS,
    LATCHING,
    MARKERS,
    MEDIUM_DELAY,
    NO_SIGNAL_AFTER,
    PRIORITIES,
    PRIORITY,
    STATES,
    TECHNICAL,
    AudioPause,
    Limits,
    PatientAlarms,
)

T0 = 1_700_000_000.0  # Unix seconds; multiples of 0.25 after it are exact
P = "bed-01"
ENTRY_KEYS = {"time", "patient", "alarm", "kind", "priority", "event", "value", "limit", "origin"}
ALARM_KEYS = {"id", "patient", "kind", "priority", "state", "since", "ended", "value", "limit"}


def ms(t: float) -> int:
    return round(t * 1000)


def engine(limits: Limits | None = None, connected: bool = True) -> PatientAlarms:
    """An engine started at T0, its service connected at T0 (unless told otherwise)."""
    e = PatientAlarms(P, T0, limits)
    if connected:
        assert e.on_upstream(True, T0) == []
    return e


def feed(e: PatientAlarms, values: Iterable[float], start: float, step: float = 0.5) -> list[Any]:
    """Readings every ``step`` seconds from ``start``; the entries they produced."""
    out = []
    for i, value in enumerate(values):
        out += e.on_reading(value, start + i * step)
    return out


def ev(entries: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [(x["kind"], x["event"]) for x in entries]


def states(e: PatientAlarms) -> dict[str, str]:
    return {a["kind"]: a["state"] for a in e.alarms()}


def alarm(e: PatientAlarms, kind: str) -> dict[str, Any]:
    (found,) = [a for a in e.alarms() if a["kind"] == kind]
    return found


# -- constants and limits -------------------------------------------------------------------


def test_constants_are_the_contract() -> None:
    """Delays, no-signal time, priorities, markers, states, events and the pause bound are the
    ones of DESIGN.md's alarm defaults."""
    assert (MEDIUM_DELAY, HIGH_DELAY, NO_SIGNAL_AFTER, AUDIO_PAUSE_MAX) == (5, 2, 10, 120)
    assert PRIORITIES == ("high", "medium", "low")
    assert MARKERS == {"high": "***", "medium": "**", "low": "*"}
    assert set(KINDS) == set(PRIORITY)
    assert {k for k in KINDS if PRIORITY[k] == "high"} == LATCHING
    assert {k for k in KINDS if PRIORITY[k] == "low"} == TECHNICAL
    assert DELAYS == {"hr_low": 5, "hr_high": 5, "hr_extreme_low": 2, "hr_extreme_high": 2}
    assert STATES == ("active", "latched", "acknowledged", "ended")
    assert set(EVENTS) == {
        "raised",
        "latched",
        "acknowledged",
        "ended",
        "audio_paused",
        "limits_changed",
    }


def test_limits_defaults() -> None:
    """Adult defaults 40 < 50 < 120 < 150, valid."""
    assert Limits() == Limits(low=50, high=120, extreme_low=40, extreme_high=150)
    Limits().check()
    Limits(low=21, high=22, extreme_low=20, extreme_high=300).check()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"low": 19.5, "extreme_low": 19}, "extreme_low: expected 20-300 bpm, got 19"),
        ({"extreme_high": 301}, "extreme_high: expected 20-300 bpm, got 301"),
        ({"high": 50}, "high: expected more than low (50), got 50"),
        ({"extreme_low": 50}, "low: expected more than extreme_low (50), got 50"),
        ({"extreme_high": 110}, "extreme_high: expected more than high (120), got 110"),
        ({"low": math.nan}, "low: expected a finite number, got nan"),
        ({"high": math.inf}, "high: expected a finite number, got inf"),
        ({"high": "120"}, "high: expected a number, got str"),
        ({"low": True}, "low: expected a number, got bool"),
    ],
)
def test_limits_check_messages(fields: dict[str, Any], message: str) -> None:
    """A bad set of limits is refused with one line naming the field."""
    with pytest.raises(ValueError) as info:
        Limits(**fields).check()
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_limits_from_a_message_needs_all_four() -> None:
    """A ``limits`` message names all four (its other keys ignored); whole numbers become ints;
    a missing or bad field is named."""
    message = {"type": "limits", "patient": P, "low": 45.0, "high": 130, "extreme_low": 35}
    with pytest.raises(ValueError, match=r"^extreme_high: missing \(all four are required"):
        Limits.from_mapping(message)
    limits = Limits.from_mapping({**message, "extreme_high": 160.5})
    assert limits == Limits(low=45, high=130, extreme_low=35, extreme_high=160.5)
    assert isinstance(limits.low, int)
    with pytest.raises(ValueError, match=r"^high: expected a number, got NoneType$"):
        Limits.from_mapping({**message, "extreme_high": 160, "high": None})
    with pytest.raises(ValueError, match=r"^high: expected more than low \(45\), got 40$"):
        Limits.from_mapping({**message, "extreme_high": 160, "high": 40})


def test_limits_from_a_file_table_takes_defaults() -> None:
    """With defaults (a sources file's ``[patient.limits]``), a missing limit is the default."""
    assert Limits.from_mapping({"high": 110}, Limits()) == Limits(high=110)
    with pytest.raises(ValueError, match=r"^high: expected 20-300 bpm, got 400$"):
        Limits.from_mapping({"high": 400, "extreme_high": 450}, Limits())


def test_engine_refuses_bad_settings() -> None:
    """Bad limits or a no-signal time that is not > 0 are refused at start."""
    with pytest.raises(ValueError, match=r"^high: expected more than low"):
        PatientAlarms(P, T0, Limits(high=40))
    with pytest.raises(ValueError, match=r"^no_signal_after: expected seconds > 0, got 0"):
        PatientAlarms(P, T0, no_signal_after=0)


# -- delays at their edges ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "bpm"),
    [("hr_high", 130), ("hr_low", 45), ("hr_extreme_high", 160), ("hr_extreme_low", 35)],
)
def test_delay_edges(kind: str, bpm: float) -> None:
    """A condition raises its alarm exactly when it has held for its delay: not a ms before,
    with ``since`` the moment the delay was reached, whenever the tick comes."""
    delay = DELAYS[kind]
    start = T0 + 1
    e = engine()
    assert e.on_reading(bpm, start) == []
    assert e.next_deadline() == start + delay
    assert e.tick(start + delay - 0.001) == []
    assert e.alarms() == []
    raised = e.tick(start + delay)
    assert ev(raised) == [(kind, "raised")]
    a = alarm(e, kind)
    assert a["state"] == "active"
    assert a["since"] == ms(start + delay)
    assert a["priority"] == PRIORITY[kind]
    assert set(a) == ALARM_KEYS
    assert set(raised[0]) == ENTRY_KEYS
    assert raised[0]["alarm"] == a["id"] == f"{P}:{kind}:{ms(start + delay)}"
    assert (a["value"], raised[0]["value"]) == (bpm, bpm)
    assert a["limit"] == getattr(Limits(), kind.removeprefix("hr_"))
    late = engine()
    late.on_reading(bpm, start)
    assert ev(late.tick(start + delay + 3.7)) == [(kind, "raised")]  # a late tick: same since
    assert alarm(late, kind)["since"] == ms(start + delay)


def test_a_spike_shorter_than_the_delay_raises_nothing() -> None:
    """130 from +1.5 to +6 (4.5 s), then back to normal: no alarm, no timer left but no_signal's."""
    e = engine()
    entries = feed(e, [130] * 9 + [100] * 20, T0 + 1.5)
    assert entries == []
    assert e.alarms() == []
    assert e.next_deadline() == T0 + 1.5 + 28 * 0.5 + NO_SIGNAL_AFTER


def test_same_instant_does_not_depend_on_order() -> None:
    """A reading at the very time a delay is reached: the timer fires first, whether the bridge
    ticked before the reading or not."""
    a, b = engine(), engine()
    for e in (a, b):
        e.on_reading(130, T0 + 1)
    first = a.tick(T0 + 6) + a.on_reading(100, T0 + 6)
    second = b.on_reading(100, T0 + 6)
    assert first == second
    assert ev(first) == [("hr_high", "raised"), ("hr_high", "ended")]


# -- life cycle -----------------------------------------------------------------------------


def test_non_latching_alarm_ends_when_the_condition_goes() -> None:
    """active → ended for a medium alarm: the entry and the ended alarm carry the end time."""
    e = engine()
    feed(e, [130] * 12, T0 + 1)  # raised at T0 + 6
    assert states(e) == {"hr_high": "active"}
    ended = e.on_reading(100, T0 + 8)
    assert ev(ended) == [("hr_high", "ended")]
    assert ended[0]["time"] == ms(T0 + 8)
    assert ended[0]["origin"] is None
    assert e.alarms() == []
    (gone,) = e.ended_alarms()
    assert (gone["state"], gone["ended"], gone["since"]) == ("ended", ms(T0 + 8), ms(T0 + 6))


def test_extreme_alarm_latches_until_acknowledged() -> None:
    """active → latched when the condition goes; latched → ended on acknowledgement (both
    logged with who acknowledged)."""
    e = engine()
    feed(e, [160] * 6, T0 + 1)  # raised at T0 + 3
    a = alarm(e, "hr_extreme_high")
    assert a["state"] == "active"
    entries = feed(e, [100] * 4, T0 + 4)
    assert ev(entries) == [("hr_extreme_high", "latched")]
    assert states(e) == {"hr_extreme_high": "latched"}
    assert e.tick(T0 + 60) != []  # latched stays (the silence raises no_signal beside it)
    assert states(e)["hr_extreme_high"] == "latched"
    acked = e.acknowledge(a["id"], T0 + 61, "http://station")
    assert ev(acked) == [("hr_extreme_high", "acknowledged"), ("hr_extreme_high", "ended")]
    assert {x["origin"] for x in acked} == {"http://station"}
    assert "hr_extreme_high" not in states(e)


@pytest.mark.parametrize(("kind", "bpm"), [("hr_high", 130), ("hr_extreme_low", 30)])
def test_acknowledged_alarm_shows_until_its_condition_goes(kind: str, bpm: float) -> None:
    """active → acknowledged (condition still holds) → ended when it goes, never latched."""
    e = engine()
    feed(e, [bpm] * 14, T0 + 1)
    acked = e.acknowledge(alarm(e, kind)["id"], T0 + 8, "http://a")
    assert ev(acked) == [(kind, "acknowledged")]
    assert states(e) == {kind: "acknowledged"}
    assert feed(e, [bpm] * 10, T0 + 8) == []  # still holds: stays, silenced
    assert ev(e.on_reading(80, T0 + 14)) == [(kind, "ended")]
    assert e.alarms() == []


def test_acknowledging_anything_else_changes_nothing() -> None:
    """An unknown, ended or already acknowledged id: no entry, no change."""
    e = engine()
    feed(e, [130] * 12, T0 + 1)
    alarm_id = alarm(e, "hr_high")["id"]
    assert e.acknowledge("bed-01:hr_high:1", T0 + 7, "o") == []
    assert e.acknowledge(alarm_id, T0 + 7, "o") != []
    assert e.acknowledge(alarm_id, T0 + 7, "o") == []
    e.on_reading(100, T0 + 7.5)
    assert e.acknowledge(alarm_id, T0 + 8, "o") == []


def test_latched_alarm_is_raised_again_when_its_condition_returns() -> None:
    """latched → active (same id, logged raised) after the condition holds its delay again."""
    e = engine()
    feed(e, [160] * 6, T0 + 1)
    first = alarm(e, "hr_extreme_high")
    e.on_reading(100, T0 + 4)
    assert states(e) == {"hr_extreme_high": "latched"}
    assert e.on_reading(170, T0 + 5) == []
    assert e.tick(T0 + 6.999) == []
    again = e.tick(T0 + 7)
    assert ev(again) == [("hr_extreme_high", "raised")]
    a = alarm(e, "hr_extreme_high")
    assert (a["id"], a["since"], a["state"], a["value"]) == (
        first["id"],
        first["since"],
        "active",
        170,
    )


def test_extreme_supersedes_the_medium_alarm() -> None:
    """130 (medium) → 160 (the extreme raised, the medium ends) → 130 (extreme latched, the
    medium raised again at once: it held all along) → acknowledged → the medium remains."""
    e = engine()
    feed(e, [130] * 12, T0 + 1)  # hr_high raised at T0 + 6
    medium = alarm(e, "hr_high")
    entries = feed(e, [160] * 6, T0 + 7)  # extreme from T0 + 7, raised at T0 + 9
    assert ev(entries) == [("hr_extreme_high", "raised"), ("hr_high", "ended")]
    assert entries[1]["time"] == ms(T0 + 9)
    assert states(e) == {"hr_extreme_high": "active"}
    back = e.on_reading(130, T0 + 10)
    assert ev(back) == [("hr_extreme_high", "latched"), ("hr_high", "raised")]
    assert states(e) == {"hr_extreme_high": "latched", "hr_high": "active"}
    assert [a["kind"] for a in e.alarms()] == ["hr_extreme_high", "hr_high"]  # highest first
    assert alarm(e, "hr_high")["id"] != medium["id"]
    assert alarm(e, "hr_high")["value"] == 160  # the worst of the episode
    e.acknowledge(alarm(e, "hr_extreme_high")["id"], T0 + 11, "o")
    assert states(e) == {"hr_high": "active"}


def test_medium_is_not_raised_while_the_extreme_one_is_acknowledged() -> None:
    """An acknowledged extreme alarm still holds its side: no medium alarm appears beside it;
    when the extreme condition goes the acknowledged alarm ends (not latched)."""
    e = engine()
    feed(e, [160] * 6, T0 + 1)  # extreme raised at T0 + 3, medium would be due at T0 + 6
    e.acknowledge(alarm(e, "hr_extreme_high")["id"], T0 + 4, "o")
    assert feed(e, [160] * 20, T0 + 4) == []
    assert states(e) == {"hr_extreme_high": "acknowledged"}
    assert ev(e.on_reading(125, T0 + 14)) == [("hr_extreme_high", "ended"), ("hr_high", "raised")]


def test_value_is_the_worst_reading_of_the_episode() -> None:
    """An alarm's value follows the worst reading while its condition holds (also when
    acknowledged), not a better one, and stays once latched."""
    e = engine()
    feed(e, [160] * 6, T0 + 1)
    assert alarm(e, "hr_extreme_high")["value"] == 160
    e.on_reading(175, T0 + 4)
    e.on_reading(165, T0 + 4.5)
    assert alarm(e, "hr_extreme_high")["value"] == 175
    e.acknowledge(alarm(e, "hr_extreme_high")["id"], T0 + 5, "o")
    e.on_reading(180, T0 + 5.5)
    assert alarm(e, "hr_extreme_high")["value"] == 180
    low = engine()
    feed(low, [45, 44, 46, 43, 47] * 3, T0 + 1)
    assert alarm(low, "hr_low")["value"] == 43


def test_ids_are_unique() -> None:
    """Every raise of the same kind has its own id, shown in the ALARM and the entries."""
    e = engine()
    ids = set()
    t = T0 + 1
    for _ in range(3):
        feed(e, [130] * 12, t)
        ids.add(alarm(e, "hr_high")["id"])
        e.on_reading(100, t + 6)
        t += 7
    assert len(ids) == 3


# -- hysteresis -----------------------------------------------------------------------------


def test_value_hovering_on_a_limit_raises_one_alarm() -> None:
    """119/121 alternating at 2 Hz for a minute: one alarm, raised once, never ended meanwhile;
    it ends only once the value is back inside by the margin (118)."""
    e = engine()
    entries = feed(e, [119 + 2 * (i % 2) for i in range(120)], T0 + 1)
    assert ev(entries) == [("hr_high", "raised")]
    assert entries[0]["time"] == ms(T0 + 1.5 + MEDIUM_DELAY)  # first 121 at T0 + 1.5
    assert e.on_reading(118.5, T0 + 61) == []
    assert ev(e.on_reading(118, T0 + 61.5)) == [("hr_high", "ended")]


def test_value_hovering_on_a_low_limit_raises_one_alarm() -> None:
    """The same below: 49/51 holds hr_low; 52 ends it."""
    e = engine()
    entries = feed(e, [49 + 2 * (i % 2) for i in range(120)], T0 + 1)
    assert ev(entries) == [("hr_low", "raised")]
    assert ev(e.on_reading(52, T0 + 61)) == [("hr_low", "ended")]


def test_margin_is_at_most_half_the_gap() -> None:
    """With limits 2 bpm apart a reading can never hold both sides."""
    limits = Limits(extreme_low=40, low=50, high=51, extreme_high=150)
    assert limits.margin("hr_high") == limits.margin("hr_low") == 0.5
    assert Limits().margin("hr_extreme_high") == 2
    e = engine(limits)
    feed(e, [52] * 12, T0 + 1)
    assert states(e) == {"hr_high": "active"}
    assert ev(e.on_reading(49.5, T0 + 7)) == [("hr_high", "ended")]


# -- technical alarms -----------------------------------------------------------------------


def test_no_signal_edges() -> None:
    """no_signal exactly NO_SIGNAL_AFTER after the last reading, low priority, not latching;
    the next reading ends it."""
    e = engine()
    e.on_reading(80, T0 + 1)
    assert e.next_deadline() == T0 + 11
    assert e.tick(T0 + 10.999) == []
    raised = e.tick(T0 + 11)
    assert ev(raised) == [("no_signal", "raised")]
    a = alarm(e, "no_signal")
    assert (a["priority"], a["since"], a["value"], a["limit"]) == ("low", ms(T0 + 11), None, 10)
    assert ev(e.on_reading(80, T0 + 30)) == [("no_signal", "ended")]


def test_no_signal_counts_from_the_start_without_readings() -> None:
    """A patient that never sends a reading has no signal from the engine's start on."""
    e = engine()
    assert ev(e.tick(T0 + NO_SIGNAL_AFTER)) == [("no_signal", "raised")]


def test_reconnect_does_not_reset_no_signal() -> None:
    """Down at +3, back at +6, no reading since +1: no_signal at +11 all the same."""
    e = engine()
    e.on_reading(80, T0 + 1)
    assert e.on_upstream(False, T0 + 3) == []
    assert e.on_upstream(True, T0 + 6) == []
    assert e.next_deadline() == T0 + 11
    assert ev(e.tick(T0 + 11)) == [("no_signal", "raised")]


def test_signal_loss_ends_heart_rate_conditions() -> None:
    """When no_signal is raised, the heart-rate conditions are no longer known: a medium alarm
    ends, an extreme one latches, pending delays stop."""
    e = engine()
    feed(e, [160] * 6, T0 + 1)  # extreme at T0 + 3; last reading T0 + 3.5
    entries = e.tick(T0 + 20)
    assert ev(entries) == [("hr_extreme_high", "latched"), ("no_signal", "raised")]
    assert {x["time"] for x in entries} == {ms(T0 + 13.5)}
    assert states(e) == {"hr_extreme_high": "latched", "no_signal": "active"}


def test_source_down() -> None:
    """source_down after the service has not been connected for NO_SIGNAL_AFTER (from the
    start, or since it went down; going down again does not restart it); connecting ends it."""
    e = engine(connected=False)
    e.on_reading(80, T0 + 5)
    assert e.tick(T0 + 9.999) == []
    assert ev(e.tick(T0 + 10)) == [("source_down", "raised")]
    assert alarm(e, "source_down")["priority"] == "low"
    assert ev(e.on_upstream(True, T0 + 10.5)) == [("source_down", "ended")]
    e.on_reading(80, T0 + 11)
    assert e.on_upstream(False, T0 + 12) == []
    assert e.on_upstream(False, T0 + 15) == []  # still down: counts from T0 + 12
    e.on_reading(80, T0 + 16)
    assert ev(e.tick(T0 + 22)) == [("source_down", "raised")]
    assert alarm(e, "source_down")["since"] == ms(T0 + 22)


def test_a_short_outage_raises_nothing() -> None:
    """Down and back within NO_SIGNAL_AFTER, readings flowing: no alarm."""
    e = engine()
    feed(e, [80] * 10, T0 + 1)
    e.on_upstream(False, T0 + 6)
    assert feed(e, [80] * 18, T0 + 6.5) == []
    assert e.on_upstream(True, T0 + 15.9) == []
    assert e.alarms() == []


# -- limits changes -------------------------------------------------------------------------


def test_limits_change_mid_condition_restarts_the_delay() -> None:
    """130 from +1 (due at +6); at +3 high goes 120 → 125: still above, so the delay counts
    from +3 (due at +8), and the change is logged with its origin."""
    e = engine()
    e.on_reading(130, T0 + 1)
    changed = e.set_limits(Limits(high=125), T0 + 3, "http://monitor")
    assert ev(changed) == [(None, "limits_changed")]
    assert changed[0]["origin"] == "http://monitor"
    assert changed[0]["limit"] == {"low": 50, "high": 125, "extreme_low": 40, "extreme_high": 150}
    assert changed[0]["value"]["high"] == 120
    assert e.next_deadline() == T0 + 8
    assert e.tick(T0 + 7.999) == []
    assert ev(e.tick(T0 + 8)) == [("hr_high", "raised")]
    assert alarm(e, "hr_high")["limit"] == 125


def test_lowering_a_limit_below_the_value_starts_a_condition_from_the_change() -> None:
    """115 is fine under 120; with high 110 it is a condition from the change."""
    e = engine()
    e.on_reading(115, T0 + 1)
    e.set_limits(Limits(high=110), T0 + 2, "o")
    assert e.next_deadline() == T0 + 7
    assert ev(e.tick(T0 + 7)) == [("hr_high", "raised")]


def test_raising_a_limit_above_the_value_ends_the_alarm_with_its_origin() -> None:
    """An active alarm whose condition no longer holds under the new limits ends (or latches),
    the entry naming who changed the limits; one that still holds stays, with the new limit."""
    e = engine()
    feed(e, [135] * 12, T0 + 1)
    e.set_limits(Limits(high=130), T0 + 7, "o1")
    assert alarm(e, "hr_high")["limit"] == 130
    ended = e.set_limits(Limits(high=140), T0 + 7.5, "o2")
    assert ev(ended) == [(None, "limits_changed"), ("hr_high", "ended")]
    assert ended[1]["origin"] == "o2"


def test_same_or_bad_limits_change_nothing() -> None:
    """The same limits again: no entry, the delay keeps counting. Bad ones: ValueError."""
    e = engine()
    e.on_reading(130, T0 + 1)
    assert e.set_limits(Limits(), T0 + 3, "o") == []
    with pytest.raises(ValueError, match=r"^high: expected more than low"):
        e.set_limits(Limits(high=45), T0 + 3, "o")
    assert e.limits == Limits()
    assert e.next_deadline() == T0 + 6


def test_a_clock_that_steps_back_is_held() -> None:
    """A time before the latest seen counts as the latest."""
    e = engine()
    e.on_reading(130, T0 + 5)
    e.on_reading(130, T0 + 4)  # stepped back: taken at T0 + 5
    assert e.next_deadline() == T0 + 10


# -- audio pause ----------------------------------------------------------------------------


def a_(priority: str, state: str = "active") -> dict[str, Any]:
    return {"id": f"x:{priority}:{state}", "priority": priority, "state": state}


@pytest.mark.parametrize("seconds", [0, -1, 120.001, math.nan, math.inf, "60", True, None])
def test_pause_bounds(seconds: Any) -> None:
    """0 < seconds ≤ 120, a finite number; otherwise one line and no pause."""
    pause = AudioPause()
    with pytest.raises(ValueError) as info:
        pause.pause(seconds, T0, "o", [])
    assert str(info.value).startswith("seconds: expected")
    assert "\n" not in str(info.value)
    assert pause.remaining(T0) == 0


def test_pause_is_logged_and_expires_by_itself() -> None:
    """A 120 s pause: logged as audio_paused, counts down, silences, then ends by itself."""
    pause = AudioPause()
    alarms = [a_("medium")]
    assert pause.should_sound(alarms, T0) == "medium"
    (entry,) = pause.pause(AUDIO_PAUSE_MAX, T0, "http://station", alarms)
    assert set(entry) == ENTRY_KEYS
    assert (entry["event"], entry["value"], entry["origin"]) == (
        "audio_paused",
        120,
        "http://station",
    )
    assert entry["time"] == ms(T0)
    assert pause.remaining(T0 + 30) == 90
    assert pause.should_sound(alarms, T0 + 119.999) is None
    assert pause.remaining(T0 + 120) == 0
    assert pause.should_sound(alarms, T0 + 120) == "medium"


def test_higher_priority_sounds_through_a_pause() -> None:
    """Paused over a medium alarm: another medium or a low one stays silent, a high one sounds;
    paused over a high one, nothing sounds."""
    pause = AudioPause()
    pause.pause(60, T0, "o", [a_("medium"), a_("low")])
    assert pause.should_sound([a_("medium"), a_("low"), a_("medium", "latched")], T0 + 1) is None
    assert pause.should_sound([a_("medium"), a_("high")], T0 + 1) == "high"
    assert pause.should_sound([a_("medium"), a_("high", "latched")], T0 + 1) == "high"
    pause.pause(60, T0 + 2, "o", [a_("high")])  # a new pause replaces the running one
    assert pause.remaining(T0 + 2) == 60
    assert pause.should_sound([a_("high"), a_("high")], T0 + 3) is None


def test_acknowledged_alarms_never_sound() -> None:
    """Acknowledged alarms neither sound nor count as sounding when a pause begins."""
    pause = AudioPause()
    assert pause.should_sound([a_("high", "acknowledged"), a_("low")], T0) == "low"
    assert pause.should_sound([a_("high", "acknowledged")], T0) is None
    pause.pause(60, T0, "o", [a_("high", "acknowledged"), a_("low")])
    assert pause.should_sound([a_("high", "acknowledged"), a_("low")], T0 + 1) is None
    assert pause.should_sound([a_("medium")], T0 + 1) == "medium"


# -- properties -----------------------------------------------------------------------------

LIMIT_CHOICES = [Limits(), Limits(low=55, high=110), Limits(low=45, high=130, extreme_high=160)]
BPMS = [30, 38, 39, 40, 41, 45, 48, 49, 50, 51, 52, 70, 100, 117, 118, 119, 120, 121, 122, 130]
BPMS += [147, 148, 149, 150, 151, 152, 158, 159, 160, 161, 170]
STEPS = [0, 0.25, 0.5, 0.5, 0.5, 1, 1.75, 2, 3, 5, 10, 12.5]

action = st.one_of(
    st.tuples(st.just("reading"), st.sampled_from(BPMS)),
    st.tuples(st.just("reading"), st.sampled_from(BPMS)),
    st.tuples(st.just("reading"), st.sampled_from(BPMS)),
    st.tuples(st.just("upstream"), st.booleans()),
    st.tuples(st.just("limits"), st.integers(0, len(LIMIT_CHOICES) - 1)),
    st.tuples(st.just("ack"), st.integers(0, 3)),
    st.tuples(st.just("tick"), st.just(0)),
)
single = st.tuples(st.sampled_from(STEPS), action).map(lambda step: [step])
# A value hovering on a limit (one above, one below, at 2 Hz) for 2-7 s.
hover = st.tuples(st.sampled_from([40, 50, 120, 150]), st.integers(4, 14)).map(
    lambda h: [(0.5, ("reading", h[0] - 1 + 2 * (i % 2))) for i in range(h[1])]
)
script = st.lists(st.one_of(single, single, single, hover), max_size=50).map(
    lambda parts: [step for part in parts for step in part]
)


def run(
    e: PatientAlarms,
    steps: list[tuple[float, tuple[str, Any]]],
    check: Callable[[PatientAlarms, list[Any], float], None] | None = None,
) -> list[Any]:
    """Play a script: a list of (time, action, argument, entries); ``check`` after each step."""
    out: list[Any] = []
    t = T0
    for dt, (name, arg) in steps:
        t += dt
        if name == "reading":
            entries = e.on_reading(arg, t)
        elif name == "upstream":
            entries = e.on_upstream(arg, t)
        elif name == "limits":
            entries = e.set_limits(LIMIT_CHOICES[arg], t, "o")
        elif name == "ack":
            current = e.alarms()
            target = current[arg]["id"] if arg < len(current) else "none"
            entries = e.acknowledge(target, t, "o")
        else:
            entries = e.tick(t)
        out.append((t, name, arg, entries))
        if check is not None:
            check(e, out, t)
    return out


INNER = {"low": "high", "high": "low", "extreme_low": "low", "extreme_high": "high"}


def margin(limits: Limits, kind: str) -> float:
    """2 bpm, or half the gap to the next limit inwards when less (written out again here)."""
    name = kind.removeprefix("hr_")
    return min(2.0, abs(getattr(limits, name) - getattr(limits, INNER[name])) / 2)


def replay(history: list[Any], kind: str, at: float, after: bool = False) -> float | None:
    """From the raw history alone: when the delay of ``kind``'s condition started if it holds
    at ``at`` (just before what happened at ``at``, or just ``after`` it), else None. A
    condition begins with a reading strictly beyond the limit, ends with one back inside by the
    margin, ends when no reading came for NO_SIGNAL_AFTER, and is judged afresh on the last
    reading at a change of limits (its delay then counting from the change)."""
    limits, last_t, last_v = Limits(), T0, None
    on, start = False, 0.0
    name = kind.removeprefix("hr_")
    side = 1 if name.endswith("high") else -1
    for t, action, arg, _ in history:
        if t > at or (t == at and not after):
            break
        if t >= last_t + NO_SIGNAL_AFTER:
            on = False
        if action == "reading":
            limit = getattr(limits, name)
            if not on and side * (arg - limit) > 0:
                on, start = True, t
            elif on and side * (limit - arg) >= margin(limits, kind):
                on = False
            last_t, last_v = t, arg
        elif action == "limits" and LIMIT_CHOICES[arg] != limits:
            limits = LIMIT_CHOICES[arg]
            fresh = last_v is not None and t < last_t + NO_SIGNAL_AFTER
            on = fresh and last_v is not None and side * (last_v - getattr(limits, name)) > 0
            start = t
    if at >= last_t + NO_SIGNAL_AFTER:
        on = False
    return start if on else None


def technical_since(history: list[Any], kind: str, at: float, after: bool = False) -> float:
    """Since when no reading came (no_signal) or the service was not connected (source_down)
    at ``at`` (before or ``after`` what happened then); ``at`` itself when it is connected."""
    last, connected, down = T0, False, T0
    for t, action, arg, _ in history:
        if t > at or (t == at and not after):
            break
        if action == "reading":
            last = t
        elif action == "upstream":
            if connected and not arg:
                down = t
            connected = arg
    if kind == "no_signal":
        return last
    return at if connected else down


@settings(max_examples=300, deadline=None)
@given(script)
def test_no_alarm_without_its_condition_held_for_its_delay(steps: list[Any]) -> None:
    """Every ``raised`` entry's condition, replayed from the raw history, held continuously
    for at least its delay before that moment."""
    history = run(PatientAlarms(P, T0), steps)
    for _, _, _, entries in history:
        for entry in entries:
            if entry["event"] != "raised":
                continue
            at = entry["time"] / 1000
            kind = entry["kind"]
            if kind in TECHNICAL:
                assert at - technical_since(history, kind, at) >= NO_SIGNAL_AFTER
            else:
                start = replay(history, kind, at)
                assert start is not None, entry
                assert at - start >= DELAYS[kind], entry


ALLOWED = {  # (state, event) → next state, as the module's docstring table says
    (None, "raised"): "active",
    ("active", "ended"): "ended",  # not for a latching kind
    ("active", "latched"): "latched",  # only for a latching kind
    ("active", "acknowledged"): "acknowledged",
    ("acknowledged", "ended"): "ended",
    ("latched", "acknowledged"): "latched-acknowledged",
    ("latched-acknowledged", "ended"): "ended",
    ("latched", "raised"): "active",
}
SIDE_EXTREME = {"hr_low": "hr_extreme_low", "hr_high": "hr_extreme_high"}


def check_state(e: PatientAlarms, history: list[Any], t: float) -> None:
    """The alarms shown at ``t`` against the conditions replayed from the raw history: one per
    kind; active or acknowledged only while the condition holds; raised whenever it has held
    for its delay (unless the extreme alarm of its side holds it); a medium alarm never beside
    an active or acknowledged extreme one; technical alarms exactly when their time is up."""
    shown = {a["kind"]: a for a in e.alarms()}
    assert len(shown) == len(e.alarms())
    for kind, delay in DELAYS.items():
        start = replay(history, kind, t, after=True)
        a = shown.get(kind)
        up = a is not None and a["state"] in ("active", "acknowledged")
        assert not up or start is not None, (kind, a)
        assert a is None or a["state"] != "latched" or kind in LATCHING
        extreme = SIDE_EXTREME.get(kind)
        held = extreme is not None and shown.get(extreme, {}).get("state") in (
            "active",
            "acknowledged",
        )
        assert not (held and up), shown
        if start is not None and t >= start + delay and not held:
            assert up, (kind, t - start, a)
    for kind in sorted(TECHNICAL):
        since = technical_since(history, kind, t, after=True)
        assert (kind in shown) == (t - since >= NO_SIGNAL_AFTER), (kind, t - since)


@settings(max_examples=300, deadline=None)
@given(script)
def test_life_cycle_is_consistent(steps: list[Any]) -> None:
    """After every step the alarms agree with the conditions replayed from the raw history
    (check_state); each alarm's log follows the life cycle and ends in the state shown; after
    a long silence and acknowledging every latched alarm, every heart-rate alarm has ended."""
    e = PatientAlarms(P, T0)
    history = run(e, steps, check_state)
    t = history[-1][0] + 100 if history else T0 + 100
    history.append((t, "tick", 0, e.tick(t)))
    check_state(e, history, t)
    for a in e.alarms():
        if a["state"] == "latched":
            history.append((t, "ack", 0, e.acknowledge(a["id"], t, "o")))
    assert {a["kind"] for a in e.alarms()} <= TECHNICAL
    assert "no_signal" in {a["kind"] for a in e.alarms()}
    state: dict[str, str | None] = {}
    for _, _, _, entries in history:
        for entry in entries:
            if entry["alarm"] is None:
                continue
            key = (state.get(entry["alarm"]), entry["event"])
            assert key in ALLOWED, (entry, state.get(entry["alarm"]))
            if key == ("active", "ended"):
                assert entry["kind"] not in LATCHING, entry
            if key == ("active", "latched"):
                assert entry["kind"] in LATCHING, entry
            state[entry["alarm"]] = ALLOWED[key]
    shown = {a["id"]: a["state"] for a in e.alarms()}
    assert shown == {i: s for i, s in state.items() if s != "ended"}


@settings(max_examples=200, deadline=None)
@given(script)
def test_next_deadline_is_never_late(steps: list[Any]) -> None:
    """Ticking only at next_deadline() gives the very log that ticking on a dense grid gives,
    every tick at a deadline changes something, and on the grid a tick before the deadline
    never does."""
    at_deadlines, on_grid = PatientAlarms(P, T0), PatientAlarms(P, T0)
    log_a: list[Any] = []
    log_b: list[Any] = []
    t = T0
    grid = T0
    for dt, (name, arg) in [*steps, (30.0, ("tick", 0))]:
        t += dt
        while (due := at_deadlines.next_deadline()) is not None and due <= t:
            fired = at_deadlines.tick(due)
            assert fired and all(x["time"] == ms(due) for x in fired)
            log_a += fired
        while grid + 0.25 <= t:
            grid += 0.25
            before = on_grid.alarms()
            due = on_grid.next_deadline()
            fired = on_grid.tick(grid)
            if due is None or due > grid:
                assert fired == [] and on_grid.alarms() == before
            log_b += fired
        for e, log in ((at_deadlines, log_a), (on_grid, log_b)):
            if name == "reading":
                log += e.on_reading(arg, t)
            elif name == "upstream":
                log += e.on_upstream(arg, t)
            elif name == "limits":
                log += e.set_limits(LIMIT_CHOICES[arg], t, "o")
            elif name == "ack":
                current = e.alarms()
                log += e.acknowledge(current[arg]["id"] if arg < len(current) else "-", t, "o")
            else:
                log += e.tick(t)
    assert log_a == log_b
    assert at_deadlines.alarms() == on_grid.alarms()
