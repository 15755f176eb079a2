"""(b) Fan-out: one bridge (``python -m hrdash bridge``, its own process, RLIMIT_NOFILE raised)
fed by the simulator (``python -m hrdash simulate`` at 0.5 s, the real 2 Hz), and 100 / 1,000
(quick) and also 5,000 / 10,000 (full) viewers opened by ONE load process of raw sockets
(``benchmarks/_load.py``: one epoll loop, bytes drained, no frame parsing, pings answered).
Delivery age is measured at EVERY load viewer: the load process notes the kernel's arrival time of
each reading at each socket (``SO_TIMESTAMPNS``) and reports age = arrival - reading ``time``
over all viewers and readings of the window (p50/p99/max, gaps, how far apart the first and the
last viewer got each reading). 5 probe viewers (websockets clients parsing every frame, in a
separate process) are kept as a cross-check. The bridge's CPU% and RSS, the load process's and
the probe's CPU%, and the whole machine's CPU% (psutil.cpu_percent, per core too) are read over
the same window.

Then the *slow viewer* measurement, on a bridge of its own with the simulator at 100 Hz
(``HRDASH_SIMULATOR_PERIOD=0.01``) and ``HRDASH_VIEWER_BUFFER=65536`` so that a viewer that never
reads is dropped within seconds: 100 viewers + 5 probes, delivery age at every viewer (and the
probes) for a window without a slow viewer, then for a window starting when one viewer that never
reads (SO_RCVBUF 4096, set before connect) has connected; when the bridge's
``viewers_dropped_slow`` counter moves (polled every 0.1 s) is the drop time.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

import psutil

from benchmarks.common import (
    PY,
    Child,
    CpuSampler,
    end,
    percentile,
    read_json_line,
    spawn,
    summary,
)
from tests.support import free_port, get_json, wait_port

LOAD_PROCESSES = 1  # raw-socket load processes (one epoll loop each); each "add" is split evenly
PROBES = 5
SIM_PERIOD = 0.5
SLOW_SIM_PERIOD = 0.01
SLOW_VIEWER_BUFFER = 65536
SLOW_RCVBUF = 4096
SLOW_VIEWERS = 100


def _health(port: int) -> dict[str, Any]:
    return dict(get_json(f"http://127.0.0.1:{port}/healthz"))


def _read_json_line(child: Child, timeout: float) -> dict[str, Any]:
    return read_json_line(child, timeout)


def _command(child: Child, line: str) -> None:
    assert child.proc.stdin is not None
    child.proc.stdin.write((line + "\n").encode())
    child.proc.stdin.flush()


class LoadGroup:
    """Raw-socket load processes (``benchmarks/_load.py``) viewing ``url``, driven as one: each
    ``add`` is split evenly over them, their answers summed, their arrivals merged. Process i
    connects from ``sources[i % len(sources)]`` when ``sources`` is given (127.0.0.2, ...: more
    ephemeral ports per destination)."""

    def __init__(self, tag: str, url: str, sources: Sequence[str] = ()) -> None:
        self.tag, self.url, self.sources = tag, url, tuple(sources)
        self.loaders: list[Child] = []

    def start_loads(self, processes: int, window: int | None = None) -> list[Child]:
        """Start ``processes`` load processes with no viewer yet (``window``: handshakes in flight
        in each at most; default the load's own); returns them."""
        started = []
        for i in range(processes):
            argv = [PY, "-m", "benchmarks._load", "load", self.url, "0"]
            source = self.sources[i % len(self.sources)] if self.sources else "-"
            argv += [source, str(window)] if window else [source] if self.sources else []
            child = spawn(
                f"{self.tag}-load-{len(self.loaders)}",
                argv,
                stdout=subprocess.PIPE,
                stdin=subprocess.PIPE,
                raise_limit=True,
            )
            self.loaders.append(child)
            started.append(child)
        for child in started:
            read_json_line(child, 30)  # {"ready": 0, ...}: it is listening for commands
        return started

    def ask(self, line: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Send one command to every load process; their answers, in order."""
        for child in self.loaders:
            _command(child, line)
        return [read_json_line(child, timeout) for child in self.loaders]

    def add(self, n: int, timeout: float = 300) -> dict[str, Any]:
        """Open n more viewers across the load processes; their summed answers."""
        t0 = time.monotonic()
        share = [
            n // len(self.loaders) + (i < n % len(self.loaders)) for i in range(len(self.loaders))
        ]
        for child, k in zip(self.loaders, share, strict=True):
            _command(child, f"add {k}")
        total: dict[str, Any] = {"ready": 0, "failed": 0, "retried": 0, "open": 0, "closed": 0}
        for child in self.loaders:
            answer = read_json_line(child, timeout)
            for key in total:
                total[key] += answer.get(key, 0)
        total["connect_s"] = round(time.monotonic() - t0, 2)
        return total

    def load_stats(self) -> dict[str, Any]:
        total: dict[str, Any] = {}
        for answer in self.ask("stats"):
            for key, value in answer.items():
                total[key] = total.get(key, 0) + value
        return total

    def mark(self) -> None:
        """Start an arrival window in every load process (readings stamped from now on)."""
        self.ask("mark")

    def end(self) -> None:
        """Close the arrival window to readings stamped from now on."""
        self.ask("end")

    def arrivals(self) -> dict[str, Any]:
        """End the arrival window: delivery age of every reading at every load viewer."""
        kernel: list[float] = []
        read: list[float] = []
        by_seq: dict[str, list[float]] = {}
        out: dict[str, Any] = {
            "gaps": 0,
            "duplicates": 0,
            "viewers": 0,
            "viewers_with_readings": 0,
            "viewers_with_gaps": 0,
        }
        for answer in self.ask("arrivals", 60):
            kernel += answer["kernel_ms"]
            read += answer["read_ms"]
            for key in out:
                out[key] += answer.get(key, 0)
            for seq, (lo, hi, n) in answer["by_seq"].items():
                old = by_seq.get(seq)
                by_seq[seq] = [min(old[0], lo), max(old[1], hi), old[2] + n] if old else [lo, hi, n]
        readings = len(by_seq)
        out.update(
            age_ms=summary(kernel),
            read_age_ms=summary(read),
            arrivals=len(kernel),
            readings=readings,
            missing=sum(out["viewers_with_readings"] - v[2] for v in by_seq.values()),
            per_reading_spread_ms=summary([v[1] - v[0] for v in by_seq.values()]),
            per_reading_max_ms=summary([v[1] for v in by_seq.values()]),
            age_quantiles_ms=[round(percentile(kernel, q) or 0.0, 2) for q in range(101)]
            if kernel
            else [],
        )
        return out

    def stop_loads(self) -> None:
        for child in self.loaders:
            end(child, timeout=10)
        self.loaders = []


class _Stack(LoadGroup):
    """A simulator + bridge pair on fresh ports, and the raw-socket load processes."""

    def __init__(self, tag: str, extra_env: dict[str, str], period: float) -> None:
        self.sim_port, self.port = free_port(), free_port()
        super().__init__(tag, f"ws://127.0.0.1:{self.port}/ws")
        self.env = {
            "HRDASH_SIMULATOR_PORT": str(self.sim_port),
            "HRDASH_BRIDGE_PORT": str(self.port),
            "HRDASH_SIMULATOR_PERIOD": str(period),
            "HRDASH_LOG_LEVEL": "warning",
            **extra_env,
        }
        self.children: list[Child] = []
        self.sim: Child | None = None
        self.bridge: Child | None = None

    def start(self) -> None:
        self.sim = spawn(f"{self.tag}-simulator", [PY, "-m", "hrdash", "simulate"], self.env)
        self.children.append(self.sim)
        wait_port(self.sim_port, 20, self.sim.proc)
        self.bridge = spawn(
            f"{self.tag}-bridge", [PY, "-m", "hrdash", "bridge"], self.env, raise_limit=True
        )
        self.children.append(self.bridge)
        wait_port(self.port, 20, self.bridge.proc)
        deadline = time.monotonic() + 20
        while self.health()["last_seq"] < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        self.children += self.start_loads(LOAD_PROCESSES)

    def health(self) -> dict[str, Any]:
        return _health(self.port)

    def probe(self, name: str, seconds: float) -> Child:
        child = spawn(
            f"{self.tag}-probe-{name}",
            [PY, "-m", "benchmarks._load", "probe", self.url, str(PROBES), str(seconds)],
            stdout=subprocess.PIPE,
        )
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            end(child, timeout=10)


def _window(
    stack: _Stack, name: str, seconds: float, on_tick: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Run a probe process for ``seconds``; measure bridge / load / probe / machine CPU over it.
    ``on_tick`` (if any) is called every 0.1 s during the window."""
    assert stack.bridge is not None
    before = stack.health()
    probe = stack.probe(name, seconds)
    time.sleep(1.0)  # the probes connect; then measure over the rest of the window
    pids = {"bridge": stack.bridge.proc.pid, "probe": probe.proc.pid}
    samplers = {k: CpuSampler([pid]) for k, pid in pids.items()}
    samplers["load"] = CpuSampler([c.proc.pid for c in stack.loaders])
    psutil.cpu_percent(None)
    psutil.cpu_percent(None, percpu=True)
    stack.mark()
    for s in samplers.values():
        s.start()
    stop_at = time.monotonic() + seconds - 1.5
    while time.monotonic() < stop_at:
        time.sleep(0.1 if on_tick else 0.5)
        samplers["bridge"].sample()
        if on_tick is not None:
            on_tick()
    machine_total = psutil.cpu_percent(None)
    machine_cores = psutil.cpu_percent(None, percpu=True)
    usage = {k: s.stop() for k, s in samplers.items()}
    stack.end()
    time.sleep(1.0)  # the readings stamped before the end reach every viewer
    viewers = stack.arrivals()
    result = read_json_line(probe, seconds + 30)
    end(probe)
    after = stack.health()
    ages = result.pop("ages_ms")
    out = {
        "all_viewers": viewers,
        "age_ms": summary(ages),
        "ages_ms": ages,
        "at_ms": result.pop("at_ms"),
        "gaps": result["gaps"],
        "duplicates": result["duplicates"],
        "probe_readings": result["readings"],
        "probes_connected": result["connected"],
        "probes_closed": result.get("closed", 0),
        "dropped_slow": after["counters"]["viewers_dropped_slow"]
        - before["counters"]["viewers_dropped_slow"],
        "bridge_viewers_reported": after["viewers"],
        "bridge": usage["bridge"],
        "load_cpu_percent": usage["load"]["cpu_percent"],
        "probe_cpu_percent": usage["probe"]["cpu_percent"],
        "machine_cpu_percent": machine_total,
        "machine_cpu_percent_per_core": machine_cores,
    }
    return out


def levels(quick: bool) -> dict[str, Any]:
    sizes = [100, 1000] if quick else [100, 1000, 5000, 10000]
    seconds = 8.0 if quick else 20.0
    out: dict[str, Any] = {
        "levels": [],
        "seconds_per_level": seconds,
        "probes": PROBES,
        "simulator_period_s": SIM_PERIOD,
        "load_processes": LOAD_PROCESSES,
    }
    stack = _Stack("fanout", {}, SIM_PERIOD)
    try:
        stack.start()
        assert stack.bridge is not None
        idle = CpuSampler([stack.bridge.proc.pid])
        idle.start()
        for _ in range(4):
            time.sleep(0.5)
            idle.sample()
        base = idle.stop()
        out["idle"] = base
        base_rss = base["rss_mean_mb"]
        connected = failed = retried = 0
        for level in sizes:
            added = stack.add(level - connected)
            connected = added["open"]
            failed += added["failed"]
            retried += added["retried"]
            time.sleep(1.0)
            closed_before = stack.load_stats()["closed"]
            w = _window(stack, str(level), seconds)
            stats = stack.load_stats()
            usage = w["bridge"]
            w.update(
                viewers=level,
                connected=connected,
                connect_failed=failed,
                connect_retried=retried,
                connect_seconds=added["connect_s"],
                load_closed_by_bridge=stats["closed"] - closed_before,
                load_open_after=stats["open"],
                load_pongs=stats["pongs"],
                mem_per_viewer_kb=(usage["rss_mean_mb"] - base_rss) * 1024 / level
                if usage["rss_mean_mb"] is not None and base_rss is not None
                else None,
            )
            w.pop("at_ms", None)
            out["levels"].append(w)
    finally:
        stack.stop()
    return out


def _send_queue(bridge_port: int, peer_port: int) -> dict[str, Any] | None:
    """The bridge side's kernel send queue towards one peer (``ss -tmn``): Send-Q bytes and the
    socket's send buffer size (skmem tb), or None when the connection is gone."""
    try:
        text = subprocess.run(
            ["ss", "-tmnH", f"( sport = :{bridge_port} and dport = :{peer_port} )"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = text.split()
    if len(lines) < 3:
        return None
    out: dict[str, Any] = {"state": lines[0], "send_q": int(lines[2])}
    for word in lines:
        if word.startswith("skmem:("):
            for item in word[7:].rstrip(")").split(","):
                key = "".join(c for c in item if c.isalpha())
                if key in ("tb", "w"):
                    out[{"tb": "sndbuf", "w": "queued_mem"}[key]] = int(item[len(key) :])
    return out


def slow_viewer(quick: bool) -> dict[str, Any]:
    base_s = 5.0 if quick else 10.0
    slow_s = 6.0 if quick else 30.0  # full: long enough to see how it leaves (keepalive: ~20 s)
    out: dict[str, Any] = {
        "viewers": SLOW_VIEWERS,
        "probes": PROBES,
        "simulator_period_s": SLOW_SIM_PERIOD,
        "viewer_buffer": SLOW_VIEWER_BUFFER,
        "rcvbuf": SLOW_RCVBUF,
        "seconds_baseline": base_s,
        "seconds_with_slow": slow_s,
    }
    stack = _Stack("slow", {"HRDASH_VIEWER_BUFFER": str(SLOW_VIEWER_BUFFER)}, SLOW_SIM_PERIOD)
    slow: Child | None = None
    try:
        stack.start()
        out["load"] = stack.add(SLOW_VIEWERS)
        time.sleep(1.0)
        out["baseline"] = _window(stack, "baseline", base_s)
        slow = spawn(
            "slow-viewer",
            [PY, "-m", "benchmarks._load", "slow", stack.url, str(SLOW_RCVBUF)],
            stdout=subprocess.PIPE,
        )
        stack.children.append(slow)
        hello = read_json_line(slow, 20)
        out["slow_connected"] = hello
        t_conn = hello["at"]
        first = stack.health()
        dropped0 = first["counters"]["viewers_dropped_slow"]
        viewers0 = first["viewers"]  # load + slow (the probes are not connected yet)
        events: dict[str, float] = {}
        queue: list[dict[str, Any]] = []
        last_ss = [0.0]

        def tick() -> None:
            now = time.time()
            h = stack.health()
            if "dropped_slow" not in events and h["counters"]["viewers_dropped_slow"] > dropped0:
                events["dropped_slow"] = round(now - t_conn, 2)
            if now - last_ss[0] >= 1.0:
                last_ss[0] = now
                q = _send_queue(stack.port, hello["port"])
                if q is None and "tcp_gone" not in events:
                    events["tcp_gone"] = round(now - t_conn, 2)
                queue.append({"t": round(now - t_conn, 1), **(q or {})})
            # bridge viewer count below (load + slow + probes): someone left.
            left = h["viewers"] < viewers0 + PROBES
            if "viewer_count_fell" not in events and left and now - t_conn > 1.5:
                events["viewer_count_fell"] = round(now - t_conn, 2)  # probes are in by 1.5 s

        with_slow = _window(stack, "with-slow", slow_s, on_tick=tick)
        out["with_slow"] = with_slow
        out["events_s_after_connect"] = events
        out["bridge_send_queue"] = queue
        out["dropped_slow"] = "dropped_slow" in events
        out["dropped_after_s"] = events.get("dropped_slow")
        # The readings the probes received while the slow viewer was attached.
        left = min(
            (v for k, v in events.items() if k in ("dropped_slow", "tcp_gone")), default=None
        )
        until_ms = (t_conn + left) * 1000 if left is not None else float("inf")
        attached = [
            age
            for age, at in zip(with_slow["ages_ms"], with_slow["at_ms"], strict=True)
            if at <= until_ms
        ]
        out["age_ms_while_attached"] = summary(attached)
        b99 = out["baseline"]["age_ms"]["p99"]
        s99 = with_slow["age_ms"]["p99"]
        a99 = out["age_ms_while_attached"]["p99"]
        out["p99_delta_ms"] = s99 - b99 if None not in (s99, b99) else None
        ab99 = out["baseline"]["all_viewers"]["age_ms"]["p99"]
        as99 = with_slow["all_viewers"]["age_ms"]["p99"]
        out["all_p99_delta_ms"] = as99 - ab99 if None not in (as99, ab99) else None
        out["p99_delta_while_attached_ms"] = a99 - b99 if None not in (a99, b99) else None
        slow.proc.terminate()  # it prints whether the bridge closed it, then exits
        try:
            out["slow_state_at_end"] = read_json_line(slow, 10).get("state")
        except Exception:
            out["slow_state_at_end"] = None
    finally:
        stack.stop()
    for key in ("baseline", "with_slow"):
        if key in out:
            out[key].pop("at_ms", None)
    return out


def run(quick: bool) -> dict[str, Any]:
    out = levels(quick)
    try:
        out["slow_viewer"] = slow_viewer(quick)
    except Exception as exc:  # reported, not fatal to the levels measured above
        out["slow_viewer"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


if __name__ == "__main__":
    import sys

    res = run("--quick" in sys.argv)
    for lv in res["levels"]:
        lv.pop("ages_ms")
        lv.pop("at_ms", None)
    for key in ("baseline", "with_slow"):
        res.get("slow_viewer", {}).get(key, {}).pop("ages_ms", None)
    print(json.dumps(res, indent=1))
