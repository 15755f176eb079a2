"""Pure core: infer where the heart rate and the time live in a service's frames.

Given a few decoded frames (what ``hrdash probe`` receives, or a saved sample), find

* the **value path**: a numeric (or numeric-string) leaf, in the plausible bpm range in (nearly)
  every frame where it appears, present in most frames; preferred when it varies between frames
  and when its name looks like a heart rate (``hr``, ``bpm``, ``heart``, ``pulse``, ``value``...);
* the **time path**: a leaf holding Unix seconds / ms / µs / ns or an ISO-8601 string, preferred
  when its name looks like a time and when it does not go backwards.

Paths are dotted; a ``*`` segment stands for "every element of this list", which is how a frame
that is an array of readings (``*.value``) or holds one (``readings.*.hr``) is described.

What inference cannot decide, it says: ``confidence`` is ``"high"`` when one candidate clearly
wins, ``"medium"`` when another candidate scored close (both are listed in ``alternatives``),
``"low"`` when the winner is weak, and ``value_path`` is ``None`` when nothing fits.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hrdash.readings import BPM_MAX, BPM_MIN

VALUE_HINTS = ("heart", "hr", "bpm", "pulse", "rate", "value", "val")
TIME_HINTS = ("time", "ts", "timestamp", "date", "at", "t", "when")
MIN_PRESENCE = 0.6  # a candidate must appear in at least this share of frames
MIN_IN_RANGE = 0.9  # ... and be a plausible bpm in at least this share of its appearances


def leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, scalar) in ``obj``. Lists of objects become ``*`` segments; other list
    elements keep their index."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str) or not key or "." in key:
                continue
            yield from leaves(value, f"{prefix}{key}.")
    elif isinstance(obj, list):
        records = obj and all(isinstance(item, dict) for item in obj)
        for index, value in enumerate(obj):
            segment = "*" if records else str(index)
            yield from leaves(value, f"{prefix}{segment}.")
    else:
        yield prefix[:-1], obj


def as_number(value: Any) -> float | None:
    """A finite number from a number or a numeric string; ``None`` otherwise (booleans too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def as_epoch_ms(value: Any) -> float | None:
    """Unix ms if ``value`` looks like a time between 2001 and 2286, else ``None``."""
    number = as_number(value)
    if number is None:
        if isinstance(value, str) and len(value) >= 10 and value[:4].isdigit():
            try:
                parsed = datetime.fromisoformat(value.strip())
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.timestamp() * 1000
        return None
    for scale in (1e3, 1.0, 1e-3, 1e-6):  # seconds, ms, µs, ns
        ms = number * scale
        if 978_307_200_000 <= ms <= 9_999_999_999_000:
            return ms
    return None


def _hint_score(path: str, hints: tuple[str, ...]) -> float:
    name = path.rsplit(".", 1)[-1].lower().replace("-", "_")
    words = set(name.split("_")) | {name}
    for rank, hint in enumerate(hints):
        if hint in words or (len(hint) > 2 and hint in name):
            return 1.0 - rank * 0.05
    return 0.0


@dataclass
class Candidate:
    path: str
    score: float
    why: str


@dataclass
class Inference:
    """The result: which paths to use and how sure we are."""

    value_path: str | None
    time_path: str | None
    confidence: str  # "high" | "medium" | "low" | "none"
    frames: int
    alternatives: list[Candidate] = field(default_factory=list)
    time_unit: str | None = None  # "s" | "ms" | "us" | "ns" | "iso" | None (receive time)
    misfits: list[int] = field(default_factory=list)  # frame indices the mapping does not fit
    notes: list[str] = field(default_factory=list)

    @property
    def settings(self) -> dict[str, str]:
        """The settings to use, as environment variables."""
        out = {"HRDASH_VALUE_FIELD": self.value_path or ""}
        out["HRDASH_TIME_FIELD"] = self.time_path or ""
        return out


def _collect(frames: list[Any]) -> dict[str, list[tuple[int, Any]]]:
    seen: dict[str, list[tuple[int, Any]]] = {}
    for index, frame in enumerate(frames):
        for path, value in leaves(frame):
            if path:
                seen.setdefault(path, []).append((index, value))
    return seen


def _unit(values: list[Any]) -> str:
    sample = values[0]
    number = as_number(sample)
    if number is None:
        return "iso"
    for unit, scale in (("s", 1e3), ("ms", 1.0), ("us", 1e-3), ("ns", 1e-6)):
        if 978_307_200_000 <= number * scale <= 9_999_999_999_000:
            return unit
    return "ms"


def infer(frames: list[Any]) -> Inference:
    """Infer the mapping from decoded frames (JSON values; anything else is a misfit)."""
    usable = [f for f in frames if isinstance(f, (dict, list))]
    n = len(frames)
    if not usable:
        return Inference(None, None, "none", n, notes=["no frame is a JSON object or array"])
    seen = _collect(frames)
    frame_count = len(usable)

    value_cands: list[Candidate] = []
    time_cands: list[Candidate] = []
    for path, occurrences in seen.items():
        frames_with = {index for index, _ in occurrences}
        presence = len(frames_with) / frame_count
        if presence < MIN_PRESENCE:
            continue
        values = [value for _, value in occurrences]
        numbers = [as_number(v) for v in values]
        times = [as_epoch_ms(v) for v in values]
        if all(t is not None for t in times):
            series = [t for t in times if t is not None]
            monotone = all(b >= a for a, b in itertools.pairwise(series))
            score = presence + _hint_score(path, TIME_HINTS) + (0.5 if monotone else 0.0)
            time_cands.append(Candidate(path, score, f"epoch/ISO time in {presence:.0%} of frames"))
            continue
        plausible = [x for x in numbers if x is not None and BPM_MIN <= x <= BPM_MAX]
        if not plausible or len(plausible) < MIN_IN_RANGE * len(values):
            continue
        distinct = len(set(plausible))
        varies = 0.5 if distinct > 1 else 0.0
        integers = 0.2 if all(x == int(x) for x in plausible) else 0.0
        stringy = -0.1 if any(isinstance(v, str) for v in values) else 0.0
        steps = {b - a for a, b in itertools.pairwise(plausible)}
        counter = -0.8 if len(plausible) > 2 and len(steps) == 1 and 0 not in steps else 0.0
        score = presence + _hint_score(path, VALUE_HINTS) + varies + integers + stringy + counter
        why = f"plausible bpm in {presence:.0%} of frames, {distinct} distinct values"
        value_cands.append(Candidate(path, score, why))

    value_cands.sort(key=lambda c: (-c.score, c.path))
    time_cands.sort(key=lambda c: (-c.score, c.path))
    notes: list[str] = []
    if not value_cands:
        return Inference(
            None, None, "none", n, notes=["no field holds a plausible heart rate in most frames"]
        )
    best = value_cands[0]
    others = value_cands[1:]
    # The time must live beside the value: same list (same "*" prefix) or at the frame's top.
    prefix = best.path.rsplit("*", 1)[0] if "*" in best.path else ""
    beside = [c for c in time_cands if c.path.startswith(prefix) or "*" not in c.path]
    if "*" in best.path:  # a time in the same record beats one for the whole frame
        beside.sort(key=lambda c: "*" not in c.path)
    time_path = beside[0].path if beside else None
    time_unit = _unit([v for _, v in seen[time_path]]) if time_path else None
    if time_path is None:
        notes.append("no time field found: readings get their receive time")

    if best.score < 1.2:
        confidence = "low"
    elif others and best.score - others[0].score < 0.3:
        confidence = "medium"
        notes.append(
            f"{best.path!r} and {others[0].path!r} both look like a heart rate; "
            "set HRDASH_VALUE_FIELD to choose"
        )
    else:
        confidence = "high"

    present = {index for index, _ in seen[best.path]}
    misfits = [index for index in range(n) if index not in present]
    if misfits:
        notes.append(f"{len(misfits)} of {n} frames do not hold {best.path!r} (mixed shapes)")
    return Inference(
        best.path,
        time_path,
        confidence,
        n,
        alternatives=others[:3],
        time_unit=time_unit,
        misfits=misfits,
        notes=notes,
    )
