"""Helpers shared by the benchmark sections: statistics, process sampling, child processes."""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PY = sys.executable

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def summary(values: Sequence[float]) -> dict[str, Any]:
    """n, p50, p90, p99, max, mean of ``values`` (None when empty)."""
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": float(max(values)),
        "mean": float(sum(values) / len(values)),
    }


NOFILE_WANTED = 65536  # open files a serving or load process may need (20,000 viewers and more)


def raise_nofile() -> None:
    """Raise RLIMIT_NOFILE (preexec_fn / in-process): to ``NOFILE_WANTED`` where the hard limit
    may be raised (root, CAP_SYS_RESOURCE), else the soft limit to the hard one."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (max(hard, NOFILE_WANTED), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return
        except (ValueError, OSError):
            continue


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU seconds of ``proc`` so far (0 once it is gone)."""
    try:
        t = proc.cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0


class CpuSampler:
    """CPU% of a set of processes between :meth:`start` and :meth:`stop` (own threads only,
    children excluded; 100 % = one core), plus RSS samples taken with :meth:`sample`."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.rss: list[int] = []
        self._t0 = 0.0
        self._c0: dict[int, float] = {}

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        return cpu_seconds(proc)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._c0 = {p.pid: self._cpu(p) for p in self.procs}
        self.rss = []
        self.sample()

    def sample(self) -> None:
        total = 0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        self.rss.append(total)

    def stop(self) -> dict[str, Any]:
        self.sample()
        wall = time.monotonic() - self._t0
        used = sum(self._cpu(p) - self._c0.get(p.pid, 0.0) for p in self.procs)
        return {
            "seconds": round(wall, 2),
            "cpu_percent": 100.0 * used / wall if wall > 0 else None,
            "rss_mean_mb": sum(self.rss) / len(self.rss) / 2**20 if self.rss else None,
            "rss_max_mb": max(self.rss) / 2**20 if self.rss else None,
        }


@dataclass
class Child:
    """A child process we started (its own session, so that we can end it and its group)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    pending: bytes = b""  # stdout read but not yet returned by read_json_line

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def spawn(
    name: str,
    argv: list[str],
    env: dict[str, str] | None = None,
    *,
    stdout: int | None = None,
    stdin: int | None = None,
    raise_limit: bool = False,
) -> Child:
    """Start ``argv`` in the repo root; stderr (and stdout unless piped) go to a log file."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "wb")  # noqa: SIM115 - kept open by the child
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=stdout if stdout is not None else log_file,
        stderr=log_file,
        start_new_session=True,
        preexec_fn=raise_nofile if raise_limit else None,
    )
    log_file.close()
    return Child(name, proc, log_path)


def read_json_line(child: Child, timeout: float) -> dict[str, Any]:
    """The next JSON line the child prints on its (piped) stdout, bounded in time. Reads the pipe
    with os.read, so that two lines arriving together are both seen."""
    import json
    import select

    assert child.proc.stdout is not None
    fd = child.proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    while True:
        if b"\n" in child.pending:
            line, child.pending = child.pending.split(b"\n", 1)
            if line.strip():
                return dict(json.loads(line))
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{child.name}: no answer within {timeout} s")
        ready, _, _ = select.select([fd], [], [], min(0.5, left))
        if ready:
            chunk = os.read(fd, 1 << 20)
            if chunk:
                child.pending += chunk
                continue
        if child.proc.poll() is not None and b"\n" not in child.pending:
            raise RuntimeError(f"{child.name} exited: {child.log()[-500:]}")


def end(child: Child | None, timeout: float = 5.0) -> None:
    """SIGTERM the child, SIGKILL after ``timeout``; never raises."""
    if child is None:
        return
    proc = child.proc
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import platform

    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(Exception):
        import dash
        import websockets

        info["dash"] = dash.__version__
        info["websockets"] = websockets.__version__
    with contextlib.suppress(Exception):
        out = subprocess.run(
            ["/usr/bin/chromium", "--version"], capture_output=True, text=True, timeout=10
        )
        info["chromium"] = out.stdout.strip()
    return info
