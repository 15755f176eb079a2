"""The station snapshot's size: the first frame a ``/ws?station=1`` viewer gets.

No sockets: a :class:`hrdash.hub.Hub` of ``--patients`` patients (default 64), each fed with
the simulator's heart model (:class:`hrdash.simulator.HeartModel`, the ward's profiles) at
``--hz`` readings a second (default 2, the simulator's rate) for ``--seconds`` of the readings'
own times (default 300: more than the sparkline's 120 s, and seqs of the size a running ward
has), then the snapshot and a live frame encoded as the edge encodes them (compact strict
JSON). Prints bytes and readings per patient. Uses only the hub's API, so it measures any
version of it (``PYTHONPATH=<another checkout>``).

    python benchmarks/snapshot_size.py [--patients 64] [--hz 2] [--seconds 300]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from hrdash.hub import Hub, UpstreamState
from hrdash.readings import Reading
from hrdash.settings import Settings
from hrdash.simulator import HeartModel, patient_ids, patient_seed, ward_profile

T0 = 1_764_324_000_000  # Unix ms of the first reading


def _encode(frame: dict[str, Any]) -> bytes:
    return json.dumps(frame, separators=(",", ":"), allow_nan=False).encode()


def measure(patients: int, hz: float, seconds: float) -> dict[str, Any]:
    settings = Settings.load(env={})
    hub = Hub(settings.buffer, settings.window, "cafe0123")
    period_ms = 1000 / hz
    count = int(seconds * hz)
    for index, pid in enumerate(patient_ids(patients)):
        model = HeartModel(patient_seed(1, index), ward_profile(index))
        patient = hub.add(pid, f"Bed {index + 1}")
        batch = [
            Reading(T0 + round(i * period_ms), model.bpm(i * period_ms / 1000))
            for i in range(count)
        ]
        patient.accept(batch, now=T0 / 1000 + seconds)
        patient.flush()
    live = dict.fromkeys(hub, UpstreamState("live", live_since=T0 / 1000))
    now = T0 / 1000 + seconds
    snapshot = hub.station_frame(live, now, settings.stale_after, snapshot=True)
    frame = hub.station_frame(live, now, settings.stale_after)
    per_patient = [len(p["recent"]) for p in snapshot["patients"]]
    return {
        "patients": patients,
        "hz": hz,
        "seconds": seconds,
        "snapshot_bytes": len(_encode(snapshot)),
        "live_frame_bytes": len(_encode(frame)),
        "snapshot_readings_per_patient": max(per_patient),
        "viewer_buffer": settings.viewer_buffer,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=64)
    parser.add_argument("--hz", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=300.0)
    args = parser.parse_args()
    print(json.dumps(measure(args.patients, args.hz, args.seconds)))


if __name__ == "__main__":
    main()
