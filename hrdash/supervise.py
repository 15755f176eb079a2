"""The supervisor in a process of its own, for gunicorn (``gunicorn_conf``).

gunicorn's master reaps every child it has (``os.waitpid(-1, WNOHANG)`` in
``Arbiter.reap_workers`` on SIGCHLD), so a :class:`~hrdash.supervisor.Supervisor` running inside
it would read a wrong exit status for the bridge: 0 for a SIGKILL, 0 for a usage error. The
master therefore starts one small process, ``python -m hrdash supervise``, which is the parent of
the simulator and the bridge (with ``HRDASH_REDIS_URL``: the ingest and the edges, see
:func:`hrdash.supervisor.children_for`): it reaps them, logs their true exit causes and restarts
them. The master holds :class:`SupervisorProcess`, which watches that process through a pipe:

- the supervising process writes ``ready`` once every child's port is open, and
  ``fatal <status> <message>`` when it gave a child up (a usage error, or ``MAX_UNREADY_STARTS``
  deaths before the port opened); it then stops the other child and exits with that status;
- end of file without ``fatal`` means it died (killed): if it had been ready it is started again
  once its children's ports are free, otherwise that is fatal too.

The supervising process receives SIGTERM when the master dies (PR_SET_PDEATHSIG, as its own
children do when it dies), and stops its children on SIGTERM. It runs in a process group of its
own, so that a Ctrl-C at the terminal reaches only gunicorn, which then stops it in order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import IO

from hrdash.settings import PortInUseError, Settings
from hrdash.supervisor import (
    GAVE_UP,
    STOP_GRACE,
    Supervisor,
    die_with_parent,
)

log = logging.getLogger("hrdash.supervisor")

READY = "ready"
FATAL = "fatal"
START_TIMEOUT = 40.0  # seconds the master waits for the first report before serving anyway
PORTS_FREE_TIMEOUT = STOP_GRACE + 2.0  # seconds to wait for a dead supervisor's ports


class SupervisorFailed(Exception):
    """The supervising process gave a child up (or died) before it was ready."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# -- the supervising process -------------------------------------------------------------------


def _report(stream: IO[str], line: str) -> None:
    try:
        stream.write(" ".join(line.split()) + "\n")  # one line, whatever the message holds
        stream.flush()
    except OSError:
        pass  # the master is gone; PR_SET_PDEATHSIG stops us


def serve(settings: Settings, report_fd: int) -> int:
    """Main of ``python -m hrdash supervise``: run a :class:`Supervisor` until SIGTERM/SIGINT or
    a fatal child; report on ``report_fd``. Returns the exit status."""
    stop = threading.Event()
    fatal: list[tuple[str, int]] = []

    def on_fatal(message: str, status: int) -> None:
        fatal.append((message, status))
        stop.set()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    with os.fdopen(report_fd, "w", encoding="utf-8") as report:
        supervisor = Supervisor(settings, on_fatal=on_fatal)
        supervisor.start()
        ready_sent = False
        while not stop.wait(0.1):
            if not ready_sent and supervisor.all_ready():
                _report(report, READY)
                ready_sent = True
        supervisor.stop()
        if fatal:
            message, status = fatal[0]
            _report(report, f"{FATAL} {status} {message}")
            return status
    return 0


# -- its handle in the gunicorn master ---------------------------------------------------------


class SupervisorProcess:
    """Starts ``python -m hrdash supervise`` and watches it (in the gunicorn master).

    ``on_fatal(message, status)`` is called from the watcher thread when the process gives a
    child up after :meth:`start` returned (before that, :meth:`start` raises instead).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        on_fatal: Callable[[str, int], None],
        python: str = sys.executable,
    ) -> None:
        self.settings = settings
        self.on_fatal = on_fatal
        self.argv = [python, "-m", "hrdash", "supervise"]
        self.env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
        self.starts = 0
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._reader: IO[str] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._settled = threading.Event()  # first incarnation: ready, fatal or ended
        self._ended = threading.Event()  # the current incarnation has ended
        self._started = False  # start() has returned: fatal goes to on_fatal
        self._ready = False
        self._fatal: tuple[str, int] | None = None
        self._thread: threading.Thread | None = None

    def check_ports(self) -> None:
        """Raise :class:`PortInUseError` if the bridge's or the simulator's port is taken."""
        Supervisor(self.settings).check_ports()

    def _spawn(self) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [*self.argv, "--report-fd", str(write_fd)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                pass_fds=(write_fd,),
                process_group=0,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
            )
        finally:
            os.close(write_fd)
        self.pid = self._proc.pid
        self.starts += 1
        self._reader = os.fdopen(read_fd, encoding="utf-8", errors="replace")
        self._pidfd = None
        if hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(self._proc.pid)
            except OSError:  # already gone: the pipe's end of file says so
                self._pidfd = None
        self._ready = False
        self._ended.clear()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the process and wait until its children are ready (at most ``timeout`` s, then
        carry on with a warning). Raises :class:`SupervisorFailed` if it gives a child up or
        ends first. Call from the thread that lives as long as the process (the master's main
        thread): the child is told to die with it."""
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="hrdash-supervise", daemon=True)
        self._thread.start()
        settled = self._settled.wait(timeout)
        with self._lock:
            self._started = True
            fatal, ready = self._fatal, self._ready
        if not settled:
            log.warning("background processes not ready within %g s; serving anyway", timeout)
        elif fatal is not None:
            raise SupervisorFailed(*fatal)
        elif not ready:
            raise SupervisorFailed(self._ended_early(), GAVE_UP)

    def _ended_early(self) -> str:
        return f"the supervising process (pid {self.pid}) ended before its children were ready"

    def _watch(self) -> None:
        while True:
            reader = self._reader
            assert reader is not None
            for line in reader:
                self._handle(line.strip())
            reader.close()
            self._wait_exit(STOP_GRACE)  # the pipe closes a moment before the process ends
            self._close_pidfd()
            self._ended.set()
            with self._lock:
                if self._stopping.is_set() or self._fatal is not None:
                    self._settled.set()
                    return
                ready = self._ready
            if not ready:
                self._fail(self._ended_early(), GAVE_UP)
                return
            log.error(
                "the supervising process (pid %s) ended without a report; starting it again",
                self.pid,
            )
            if not self._wait_ports_free() or self._stopping.is_set():
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self._spawn()  # from this thread, which lives as long as the master

    def _handle(self, line: str) -> None:
        if line == READY:
            with self._lock:
                self._ready = True
            self._settled.set()
            return
        word, _, rest = line.partition(" ")
        if word == FATAL:
            status_text, _, message = rest.partition(" ")
            status = int(status_text) if status_text.isdigit() else GAVE_UP
            self._fail(message or "a child was given up", status)

    def _fail(self, message: str, status: int) -> None:
        with self._lock:
            if self._fatal is not None:
                return
            self._fatal = (message, status)
            started = self._started
        self._settled.set()
        if started and not self._stopping.is_set():
            self.on_fatal(message, status)

    def _wait_ports_free(self) -> bool:
        """Wait until the dead process's children have let go of their ports."""
        deadline = time.monotonic() + PORTS_FREE_TIMEOUT
        while not self._stopping.is_set():
            try:
                self.check_ports()
                return True
            except PortInUseError:
                if time.monotonic() > deadline:
                    self._fail("the bridge's or the simulator's port stayed in use", GAVE_UP)
                    return False
                time.sleep(0.1)
        return False

    def _signal(self, sig: signal.Signals) -> None:
        with self._lock:
            if self._pidfd is None:
                return
            # Already gone: OSError. A pidfd never names another process, even once reaped.
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._pidfd, sig)

    def _wait_exit(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the process has ended: its pidfd becomes readable
        then, whoever reaps it."""
        with self._lock:
            pidfd = self._pidfd
        if pidfd is not None:
            select.select([pidfd], [], [], timeout)

    def _close_pidfd(self) -> None:
        with self._lock:
            pidfd, self._pidfd = self._pidfd, None
        if pidfd is not None:
            os.close(pidfd)

    def stop(self, timeout: float = STOP_GRACE + 2.0) -> None:
        """SIGTERM the process (it stops its children within ``STOP_GRACE`` s) and wait for it;
        SIGKILL it after ``timeout`` s."""
        self._stopping.set()
        if self._ended.is_set():
            return
        self._signal(signal.SIGTERM)
        if not self._ended.wait(timeout):
            self._signal(signal.SIGKILL)
            self._ended.wait(1.0)
