"""(b) Fan-out: one bridge (``python -m hrdash bridge``, its own process) fed by the simulator
(``python -m hrdash simulate`` at 0.5 s), and 100 / 1,000 (quick) and also 5,000 / 10,000 (full)
viewers opened by load processes of their own (at most 2,500 connections each). Delivery age is
measured on 5 lightly loaded probe viewers in a separate process; the bridge's CPU% and RSS are
read with psutil over the same window.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from benchmarks.common import PY, Child, CpuSampler, end, spawn, summary
from tests.support import free_port, get_json, wait_port

PER_PROCESS = 2500
PROBES = 5
SIM_PERIOD = 0.5


def _health(port: int) -> dict[str, Any]:
    return dict(get_json(f"http://127.0.0.1:{port}/healthz"))


def _read_json_line(child: Child, timeout: float) -> dict[str, Any]:
    """The next JSON line a load process prints (select on its stdout, bounded in time)."""
    import select

    assert child.proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([child.proc.stdout], [], [], 0.5)
        if ready:
            line = child.proc.stdout.readline()
            if line:
                return dict(json.loads(line))
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited: {child.log()[-500:]}")
    raise TimeoutError(f"{child.name}: no answer within {timeout} s")


def run(quick: bool) -> dict[str, Any]:
    levels = [100, 1000] if quick else [100, 1000, 5000, 10000]
    seconds = 10.0 if quick else 20.0
    sim_port, bridge_port = free_port(), free_port()
    env = {
        "HRDASH_SIMULATOR_PORT": str(sim_port),
        "HRDASH_BRIDGE_PORT": str(bridge_port),
        "HRDASH_SIMULATOR_PERIOD": str(SIM_PERIOD),
        "HRDASH_LOG_LEVEL": "warning",
    }
    url = f"ws://127.0.0.1:{bridge_port}/ws"
    out: dict[str, Any] = {
        "levels": [],
        "seconds_per_level": seconds,
        "probes": PROBES,
        "simulator_period_s": SIM_PERIOD,
    }
    children: list[Child] = []
    try:
        sim = spawn("fanout-simulator", [PY, "-m", "hrdash", "simulate"], env)
        children.append(sim)
        wait_port(sim_port, 20, sim.proc)
        bridge = spawn("fanout-bridge", [PY, "-m", "hrdash", "bridge"], env, raise_limit=True)
        children.append(bridge)
        wait_port(bridge_port, 20, bridge.proc)
        deadline = time.monotonic() + 20
        while _health(bridge_port)["last_seq"] < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        idle = CpuSampler([bridge.proc.pid])
        idle.start()
        for _ in range(4):
            time.sleep(0.5)
            idle.sample()
        base = idle.stop()
        out["idle"] = base
        base_rss = base["rss_mean_mb"]
        connected = 0
        for level in levels:
            t0 = time.monotonic()
            todo = level - connected
            loaders = []
            while todo > 0:
                n = min(PER_PROCESS, todo)
                todo -= n
                child = spawn(
                    f"fanout-load-{level}-{len(loaders)}",
                    [PY, "-m", "benchmarks._load", "load", url, str(n)],
                    stdout=subprocess.PIPE,
                    raise_limit=True,
                )
                children.append(child)
                loaders.append(child)
            ready = failed = 0
            for child in loaders:
                answer = _read_json_line(child, 180)
                ready += answer["ready"]
                failed += answer["failed"]
            connected += ready
            connect_s = time.monotonic() - t0
            time.sleep(1.0)
            before = _health(bridge_port)["counters"]
            sampler = CpuSampler([bridge.proc.pid])
            probe = spawn(
                f"fanout-probe-{level}",
                [PY, "-m", "benchmarks._load", "probe", url, str(PROBES), str(seconds)],
                stdout=subprocess.PIPE,
            )
            children.append(probe)
            time.sleep(1.0)  # the probes connect; then measure the bridge over the window
            sampler.start()
            stop_at = time.monotonic() + seconds - 1.5
            while time.monotonic() < stop_at:
                time.sleep(0.5)
                sampler.sample()
            usage = sampler.stop()
            result = _read_json_line(probe, seconds + 30)
            health = _health(bridge_port)
            after = health["counters"]
            ages = result.pop("ages_ms")
            level_out = {
                "viewers": level,
                "connected": connected,
                "connect_failed": failed,
                "connect_seconds": round(connect_s, 2),
                "bridge_viewers_reported": health["viewers"],
                "dropped_slow": after["viewers_dropped_slow"] - before["viewers_dropped_slow"],
                "age_ms": summary(ages),
                "ages_ms": ages,
                "gaps": result["gaps"],
                "duplicates": result["duplicates"],
                "probe_readings": result["readings"],
                "bridge": usage,
                "mem_per_viewer_kb": (usage["rss_mean_mb"] - base_rss) * 1024 / level
                if usage["rss_mean_mb"] is not None and base_rss is not None
                else None,
            }
            out["levels"].append(level_out)
            end(probe)
    finally:
        for child in reversed(children):
            end(child, timeout=10)
    return out


if __name__ == "__main__":
    import sys

    res = run("--quick" in sys.argv)
    for lv in res["levels"]:
        lv.pop("ages_ms")
    print(json.dumps(res, indent=1))
