"""Scale-out: the same viewers at 2 Hz against three setups, side by side in one run.

    python benchmarks/run.py --only scaleout [--quick] [--scaleout-setups floor,bridge,redis]

* **floor** — ``benchmarks/_floor.py``: a bare ``websockets`` server calling ``broadcast()`` with a
  frame shaped like hrdash's readings frame every 0.5 s, timestamped at send (its own process,
  RLIMIT_NOFILE raised; compression off, the bridge's ping settings and viewer send buffer).
* **bridge** — one process: ``python -m hrdash simulate`` (0.5 s) and ``python -m hrdash bridge``,
  as ``benchmarks/fanout.py`` runs them (its history in a file in a temp dir, as deployed).
* **redis** — Redis + 2 edges: a real ``redis-server`` (``tests/redis_support.RedisServer``), the
  simulator, one ``python -m hrdash ingest`` and two ``python -m hrdash edge`` on ONE bridge port
  (``SO_REUSEPORT``), all with ``HRDASH_REDIS_URL``.

For each level (5,000 / 10,000 / 20,000 viewers; quick: 500 / 1,000) each setup is started
fresh, alone on the machine (the others are stopped), in an order rotated per level so that a
slow spell of this shared machine does not always hit the same one. The viewers are
``benchmarks/_load.py`` raw-socket load processes (one per ``VIEWERS_PER_LOAD`` viewers, each from
its own source address 127.0.0.2, 127.0.0.3, ...), all on ``/ws`` (the first patient), connected
before the window. Over a window of ``WINDOW_S`` seconds (quick ``QUICK_WINDOW_S``):

* delivery age at every viewer: the kernel's arrival time of each reading at each socket
  (``SO_TIMESTAMPNS``) - the reading's ``time`` (stamped by the simulator, or by the floor at
  send, on this machine's clock): p50 / p99 / max over all viewers and readings stamped in the
  window; gaps (seqs a viewer skipped) and the viewers that had any; viewers connected (the load's
  open sockets, and each serving process's established connections on the port);
* CPU % of one core per process (psutil user + system over the window): each serving process
  (floor; bridge; each edge, the ingest, redis-server), the simulator, each load process, and the
  whole machine (of all cores);
* memory per viewer: (RSS of the serving processes during the window - their RSS before any
  viewer) / viewers connected.

Measured and reported, never asserted. The load processes share the machine's 2 cores with the
setup they measure: compare ratios within one run (ours / floor at each level), not runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import PY, Child, CpuSampler, end, spawn
from benchmarks.fanout import LoadGroup, _health
from tests.redis_support import RedisServer
from tests.support import free_port, wait_port

SETUPS = ("floor", "bridge", "redis")
LABELS = {"floor": "floor (broadcast)", "bridge": "one process", "redis": "Redis + 2 edges"}
LEVELS = (5_000, 10_000, 20_000)
QUICK_LEVELS = (500, 1_000)
WINDOW_S = 20.0
QUICK_WINDOW_S = 8.0
IDLE_S = 2.0  # the serving processes' RSS and CPU before any viewer
SETTLE_S = 2.0  # after the last viewer connected, before the window
DRAIN_S = 1.5  # after the window, for readings stamped in it to reach every viewer
SIM_PERIOD = 0.5  # the real 2 Hz
EDGES = 2
VIEWERS_PER_LOAD = 10_000  # one load process (one epoll loop) per this many viewers
IN_FLIGHT = 100  # handshakes in flight over all load processes: the servers' listen backlog
SOURCES = tuple(f"127.0.0.{i}" for i in range(2, 10))  # load process i connects from SOURCES[i]
START_S = 30.0  # a setup's processes may take this long to serve readings


def _listening(pid: int, port: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == port
            for c in psutil.Process(pid).net_connections(kind="tcp")
        )
    return False


def _established(pid: int, port: int) -> int | None:
    """Connections the process ``pid`` has accepted on ``port`` and still holds."""
    with contextlib.suppress(psutil.Error):
        return sum(
            1
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
        )
    return None


class Setup:
    """The processes of one setup on fresh ports: ``serving`` (what the viewers cost: CPU,
    memory) and ``feed`` (the simulator) by name → pid."""

    name = ""

    def __init__(self, tmp: Path, tag: str) -> None:
        self.tmp, self.tag = tmp, tag
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.children: list[Child] = []
        self.serving: dict[str, int] = {}
        self.feed: dict[str, int] = {}
        self.sim_port = free_port()
        self.env = {
            "HRDASH_SIMULATOR_PORT": str(self.sim_port),
            "HRDASH_BRIDGE_PORT": str(self.port),
            "HRDASH_SIMULATOR_PERIOD": str(SIM_PERIOD),
            "HRDASH_LOG_LEVEL": "warning",
            "HRDASH_DB": str(tmp / "history.db"),  # the history records, as deployed
        }

    def spawn(self, name: str, argv: list[str], *, serving: bool = True) -> Child:
        child = spawn(f"{self.tag}-{name}", argv, self.env, raise_limit=True)
        self.children.append(child)
        (self.serving if serving else self.feed)[name] = child.proc.pid
        return child

    def simulator(self) -> None:
        sim = self.spawn("simulator", [PY, "-m", "hrdash", "simulate"], serving=False)
        wait_port(self.sim_port, 20, sim.proc)

    def start(self) -> None:
        raise NotImplementedError

    def listeners(self) -> dict[str, int]:
        """The processes viewers connect to, by name → pid."""
        return dict(self.serving)

    def wait_readings(self) -> None:
        """Until the port serves readings (last_seq >= 3 in /healthz)."""
        deadline = time.monotonic() + START_S
        while True:
            with contextlib.suppress(Exception):
                if _health(self.port)["last_seq"] >= 3:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no readings on port {self.port} in {START_S} s")
            time.sleep(0.2)

    def viewers_held(self) -> dict[str, int | None]:
        return {name: _established(pid, self.port) for name, pid in self.listeners().items()}

    def stop(self) -> None:
        for child in reversed(self.children):
            end(child, timeout=10)


class FloorSetup(Setup):
    name = "floor"

    def start(self) -> None:
        floor = self.spawn(
            "floor",
            [PY, "-m", "benchmarks._floor", str(self.port), "--period", str(SIM_PERIOD)],
        )
        wait_port(self.port, 20, floor.proc)
        time.sleep(SIM_PERIOD * 2)


class BridgeSetup(Setup):
    name = "bridge"

    def start(self) -> None:
        self.simulator()
        bridge = self.spawn("bridge", [PY, "-m", "hrdash", "bridge"])
        wait_port(self.port, 20, bridge.proc)
        self.wait_readings()


class RedisSetup(Setup):
    name = "redis"

    def __init__(self, tmp: Path, tag: str, ingests: int = 1) -> None:
        super().__init__(tmp, tag)
        self.redis = RedisServer(tmp)
        self.ingests = ingests  # the first holds the patients; the others stand by
        self.env["HRDASH_REDIS_URL"] = self.redis.url

    def start(self) -> None:
        self.redis.start()
        assert self.redis.proc is not None
        self.serving["redis-server"] = self.redis.proc.pid
        self.simulator()
        self.spawn("ingest", [PY, "-m", "hrdash", "ingest"])
        edges = [self.spawn(f"edge-{i}", [PY, "-m", "hrdash", "edge"]) for i in range(1, EDGES + 1)]
        deadline = time.monotonic() + START_S
        while not all(_listening(e.proc.pid, self.port) for e in edges):
            for e in edges:
                if e.proc.poll() is not None:
                    raise RuntimeError(f"{e.name} exited: {e.log()[-500:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the edges did not all listen on {self.port} in {START_S} s")
            time.sleep(0.2)
        self.wait_readings()
        for i in range(2, self.ingests + 1):  # started once the first holds every patient
            self.spawn(f"ingest-{i}", [PY, "-m", "hrdash", "ingest"])

    def listeners(self) -> dict[str, int]:
        return {k: v for k, v in self.serving.items() if k.startswith("edge-")}

    def stop(self) -> None:
        super().stop()
        self.redis.stop()


KINDS: dict[str, type[Setup]] = {"floor": FloorSetup, "bridge": BridgeSetup, "redis": RedisSetup}


def limits() -> dict[str, Any]:
    """The machine's limits that bound the viewers one run can open."""
    out: dict[str, Any] = {"nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE))}
    for key in (
        "net/core/somaxconn",
        "net/ipv4/ip_local_port_range",
        "net/ipv4/tcp_max_syn_backlog",
        "fs/nr_open",
    ):
        with contextlib.suppress(OSError):
            out[key.rsplit("/", 1)[-1]] = Path("/proc/sys", key).read_text().split()
    return out


def measure(kind: str, level: int, seconds: float) -> dict[str, Any]:
    """One setup, started fresh, with ``level`` viewers over one window."""
    with tempfile.TemporaryDirectory(prefix=f"hrdash-scaleout-{kind}-") as tmp:
        setup = KINDS[kind](Path(tmp), f"scaleout-{kind}-{level}")
        loads = LoadGroup(setup.tag, setup.url, SOURCES)
        out: dict[str, Any] = {"setup": kind, "viewers": level}
        try:
            setup.start()
            idle = CpuSampler(setup.serving.values())
            idle.start()
            for _ in range(int(IDLE_S / 0.5)):
                time.sleep(0.5)
                idle.sample()
            base = idle.stop()
            out["idle"] = base
            processes = math.ceil(level / VIEWERS_PER_LOAD)
            setup.children += loads.start_loads(processes, IN_FLIGHT // processes)
            out["connect"] = loads.add(level)
            time.sleep(SETTLE_S)
            closed_before = loads.load_stats()["closed"]
            samplers = {
                name: CpuSampler([pid]) for name, pid in {**setup.serving, **setup.feed}.items()
            }
            for i, child in enumerate(loads.loaders):
                samplers[f"load-{i}"] = CpuSampler([child.proc.pid])
            serving = CpuSampler(setup.serving.values())
            psutil.cpu_percent(None)
            out["load_avg_before"] = [round(x, 2) for x in os.getloadavg()]
            loads.mark()
            for s in (*samplers.values(), serving):
                s.start()
            stop_at = time.monotonic() + seconds
            while time.monotonic() < stop_at:
                time.sleep(0.5)
                serving.sample()
            machine = psutil.cpu_percent(None)
            usage = {name: s.stop() for name, s in samplers.items()}
            total = serving.stop()
            loads.end()
            time.sleep(DRAIN_S)
            viewers = loads.arrivals()
            stats = loads.load_stats()
            held = setup.viewers_held()
            connected = stats["open"]
            grown = (
                total["rss_mean_mb"] - base["rss_mean_mb"]
                if total["rss_mean_mb"] is not None and base["rss_mean_mb"] is not None
                else None
            )
            out.update(
                all_viewers=viewers,
                connected=connected,
                closed_by_server=stats["closed"] - closed_before,
                held=held,
                cpu_percent={name: u["cpu_percent"] for name, u in usage.items()},
                rss_mb={name: u["rss_mean_mb"] for name, u in usage.items()},
                serving_cpu_percent=sum(usage[n]["cpu_percent"] or 0 for n in setup.serving),
                load_cpu_percent=sum(
                    u["cpu_percent"] or 0 for n, u in usage.items() if n.startswith("load-")
                ),
                machine_cpu_percent=machine,
                serving_rss_mb=total["rss_mean_mb"],
                mem_per_viewer_kb=grown * 1024 / connected
                if grown is not None and connected
                else None,
            )
        except Exception as exc:  # reported in its cell; the other setups and levels go on
            out["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            setup.stop()
    return out


def run(quick: bool, setups: tuple[str, ...] = SETUPS) -> dict[str, Any]:
    levels = QUICK_LEVELS if quick else LEVELS
    seconds = QUICK_WINDOW_S if quick else WINDOW_S
    out: dict[str, Any] = {
        "setups": list(setups),
        "levels": [],
        "seconds_per_window": seconds,
        "simulator_period_s": SIM_PERIOD,
        "edges": EDGES,
        "viewers_per_load_process": VIEWERS_PER_LOAD,
        "limits": limits(),
    }
    for i, level in enumerate(levels):
        order = [setups[(i + k) % len(setups)] for k in range(len(setups))]
        row: dict[str, Any] = {"viewers": level, "order": order, "setups": {}}
        for kind in order:
            print(f"[scaleout] {level} viewers: {kind}", flush=True)
            row["setups"][kind] = measure(kind, level, seconds)
        out["levels"].append(row)
    return out


if __name__ == "__main__":
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
