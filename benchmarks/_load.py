"""Load, probe and slow-viewer processes for the fan-out benchmark (run by ``benchmarks/fanout.py``
and ``benchmarks/soak.py``).

``python -m benchmarks._load load URL N [SOURCE [WINDOW]]``: open N bridge viewers as raw
non-blocking TCP sockets (from the address SOURCE when given and not ``-``, e.g. ``127.0.0.2``:
each source address has its own ~28,000 ephemeral ports per destination;
``IP_BIND_ADDRESS_NO_PORT`` leaves the port to connect),
all in ONE thread with one epoll selector: each does the WebSocket handshake (request written as
soon as the TCP connect completes; the response must start with ``HTTP/1.1 101``), then its bytes
are drained with ``sock.recv(65536)`` whenever it is readable. Frames are not parsed: the only
thing looked at is a ping (``0x89 0x04`` + 4 bytes, what websockets' keepalive sends), answered
with a masked pong, or the bridge would close the viewer after ``ping_interval + ping_timeout``.
Server frames are unmasked JSON text (ASCII), so the byte 0x89 only appears in frame headers; a
false match only sends an unsolicited pong, which websockets ignores.

At most ``WINDOW`` handshakes (or the WINDOW argument) are in flight at once (a sliding batch:
the bridge's listen backlog is asyncio's default of 100, and an overrun accept queue costs 1 s SYN
retransmits); a failed handshake (refused, reset, non-101, no answer in ``CONNECT_TIMEOUT``) is
retried ``RETRIES`` times, then counted as failed. When the N are settled it prints one JSON line
``{"ready", "failed", "retried", "closed", "connect_s"}``.

Arrival of every reading at every viewer: each socket has ``SO_TIMESTAMPNS`` set and is read with
``recvmsg``, so every chunk comes with the kernel's wall-clock time of its arrival at that socket
(not when this loop got round to it). In each chunk the load looks for ``{"seq":N,"time":T`` (the
bridge's readings frames; no other frame holds that text) and notes, per reading and viewer, the
delivery age = kernel arrival time - ``T`` (the reading's time, stamped by the simulator on the
same machine's clock), and also the age when this loop read it (its own lag on top). A seq more
than one past the viewer's previous seq is a gap. Only the first appearance per viewer counts.

Then it reads commands, one per line, on stdin (ignored when stdin is not a pipe): ``add N`` opens
N more viewers and prints the same kind of line; ``stats`` prints the counters (``open``,
``closed`` = viewers the bridge closed, ``bytes``, ``recvs``, ``pongs``, own ``cpu_s``); ``mark``
starts an arrival window (readings stamped from now on), ``end`` closes it to readings stamped
later, ``arrivals`` (once they have arrived) stops recording and prints
``{"kernel_ms": [...], "read_ms": [...], "by_seq": {seq: [min, max, viewers]}, "gaps",
"duplicates", "viewers", "viewers_with_readings", "viewers_with_gaps"}`` (raw ages, ms;
duplicates: seqs a viewer got again, e.g. in a resume answer). ``reconnect`` makes
every viewer the server closes from then on come back as the page does: after
``BACKOFF_MIN`` s (doubling per failed attempt up to ``BACKOFF_MAX``), with ``?since=<its last
seq>&run=<the run of its last readings frame>`` (a new run in a viewer's frames, counted in
``run_changes``, starts its seqs afresh); it keeps its last seq, so a reading the resumed
connection skips is a gap, and a repeat is not a new arrival. ``reconnects`` prints, for each
close so far, ``[closed, opened, first]``: wall times (s) when this loop saw the close, when the
new handshake's response arrived, and the kernel arrival time of the first new reading after it
(null when not yet). ``window N`` sets the handshakes in flight at most from then on. SIGTERM
or SIGINT: close every socket (RST, no TIME_WAIT), print the counters, exit.

``python -m benchmarks._load probe URL N SECONDS``: open N websockets clients (they parse every
frame) and for SECONDS record for every live reading its delivery age (receive wall time -
reading ``time``, ms) and receive time, gaps and duplicates by seq; print one JSON object.

``python -m benchmarks._load slow URL [RCVBUF]``: one raw viewer with SO_RCVBUF = RCVBUF (default
4096) set before connect, which reads the handshake response and then never reads again. Prints
``{"connected": true, "at": wall time}`` and waits for SIGTERM; on exit prints whether the bridge
closed it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import heapq
import json
import os
import re
import selectors
import signal
import socket
import struct
import sys
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import raise_nofile

WINDOW = 200  # handshakes in flight at most
CONNECT_TIMEOUT = 30.0
RETRIES = 3
RECV = 65536
BACKOFF_MIN = 0.5  # s: a closed viewer's first reconnect delay (assets/hrdash.js BACKOFF_MIN_MS)
BACKOFF_MAX = 5.0  # s: doubled per failed attempt up to this (BACKOFF_MAX_MS)
RECONNECT_TRIES = 20  # attempts per close at most, then the viewer counts as failed
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

CONNECTING, HANDSHAKE, OPEN = 0, 1, 2
PING = b"\x89\x04"
PONG_HEAD = b"\x8a\x84\x00\x00\x00\x00"  # FIN+pong, masked, 4 bytes, mask key 0 (payload as is)
READING = re.compile(rb'\{"seq":(\d+),"time":(\d+(?:\.\d+)?)')
RUN = re.compile(rb'"type":"readings","run":"([^"]*)"')
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
ANCBUF = socket.CMSG_SPACE(16)  # one struct timespec


def _request(url: str, query: str = "") -> tuple[tuple[str, int], bytes]:
    """The server's address and the handshake request for ``url`` (``query`` appended)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    key = base64.b64encode(os.urandom(16)).decode()
    path = parts.path or "/"
    query = "&".join(q for q in (parts.query, query) if q)
    if query:
        path += "?" + query
    req = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    return (host, port), req.encode()


class _Conn:
    __slots__ = (
        "attempt",
        "buf",
        "gaps",
        "last_seq",
        "req",
        "resumed",
        "run",
        "seen_in_window",
        "sock",
        "started",
        "state",
    )

    def __init__(self, sock: socket.socket, attempt: int, req: bytes) -> None:
        self.sock = sock
        self.state = CONNECTING
        self.buf = b""
        self.attempt = attempt
        self.req = req
        self.started = time.monotonic()
        self.last_seq = -1  # newest seq this viewer has seen
        self.seen_in_window = False
        self.gaps = 0  # seqs this viewer missed in the window
        self.run = ""  # the run of its newest readings frame
        self.resumed: list[float | None] | None = None  # [closed, opened, first] on a reconnect

    def carry(self, old: _Conn) -> None:
        """Take over a closed connection's viewer: its seqs, run and window state."""
        self.last_seq, self.seen_in_window, self.gaps = old.last_seq, old.seen_in_window, old.gaps
        self.run, self.resumed = old.run, old.resumed


class Arrivals:
    """Delivery ages of the readings stamped since :meth:`start`, over every viewer."""

    def __init__(self) -> None:
        self.active = False
        self.since_ms = 0.0
        self.until_ms = float("inf")
        self.kernel: list[float] = []
        self.read: list[float] = []
        self.by_seq: dict[int, list[float]] = {}
        self.gaps = 0
        self.duplicates = 0  # seqs a viewer got again (a resume that overlapped): never in a run

    def start(self, viewers: list[_Conn]) -> None:
        self.kernel, self.read, self.by_seq, self.gaps, self.duplicates = [], [], {}, 0, 0
        for conn in viewers:
            conn.seen_in_window = False
            conn.gaps = 0
        self.active = True
        self.since_ms = time.time() * 1000
        self.until_ms = float("inf")

    def end(self) -> None:
        """Readings stamped from now on are not counted (those before still are, as they arrive:
        a write loop at thousands of viewers takes a while)."""
        self.until_ms = time.time() * 1000

    def note(self, conn: _Conn, data: bytes, kernel_ms: float, read_ms: float) -> None:
        for m in READING.finditer(data):
            seq = int(m.group(1))
            prev = conn.last_seq
            if seq <= prev:
                self.duplicates += 1  # not a new arrival
                continue
            conn.last_seq = seq
            if conn.resumed is not None and conn.resumed[2] is None:
                conn.resumed[2] = round(kernel_ms / 1000, 4)
            if not self.active:
                continue
            t = float(m.group(2))
            if not self.since_ms <= t < self.until_ms:
                continue
            if conn.seen_in_window and seq > prev + 1:
                self.gaps += seq - prev - 1
                conn.gaps += seq - prev - 1
            conn.seen_in_window = True
            self.kernel.append(kernel_ms - t)
            self.read.append(read_ms - t)
            self.by_seq.setdefault(seq, []).append(kernel_ms - t)

    def report(self, viewers: list[_Conn]) -> dict[str, Any]:
        """Raw ages (rounded to 0.01 ms) so that several load processes can be merged."""
        self.active = False
        return {
            "kernel_ms": [round(x, 2) for x in self.kernel],
            "read_ms": [round(x, 2) for x in self.read],
            "by_seq": {
                str(seq): [round(min(v), 2), round(max(v), 2), len(v)]
                for seq, v in self.by_seq.items()
            },
            "gaps": self.gaps,
            "duplicates": self.duplicates,
            "viewers": len(viewers),
            "viewers_with_readings": sum(1 for c in viewers if c.seen_in_window),
            "viewers_with_gaps": sum(1 for c in viewers if c.gaps),
        }


class Load:
    """N raw viewers in one thread, one epoll selector."""

    def __init__(self, url: str, source: str | None = None, window: int = WINDOW) -> None:
        self.url = url
        self.window = window
        self.addr, self.req = _request(url)
        self.source = source
        self.sel = selectors.EpollSelector()
        self.stop = False
        self.todo: deque[int] = deque()  # attempts numbers of connects still to start
        self.reconnect = False  # closed viewers come back with ?since=&run= (the page's way)
        self.later: list[tuple[float, int, _Conn]] = []  # (due, tie, closed viewer): a heap
        self.resumes: list[list[float | None]] = []  # [closed, opened, first] per close
        self.inflight: dict[int, _Conn] = {}
        self.open: dict[int, _Conn] = {}
        self.batch = {"ready": 0, "failed": 0, "retried": 0, "t0": 0.0, "active": False}
        self.counters = {
            "closed": 0,
            "bytes": 0,
            "recvs": 0,
            "pongs": 0,
            "failed_total": 0,
            "run_changes": 0,
        }
        self.arrivals = Arrivals()

    # -- connecting -------------------------------------------------------------------------

    def add(self, n: int) -> None:
        self.batch.update(ready=0, failed=0, retried=0, t0=time.monotonic(), active=True)
        self.todo.extend([0] * n)
        self._check_batch_done()

    def _start(self, attempt: int, old: _Conn | None = None) -> None:
        """Connect a new viewer, or (``old``) a closed one again with ``?since=&run=``."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # kernel arrival time per chunk
        if self.source:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self.source, 0))
        req = self.req
        if old is not None and old.last_seq >= 0:
            req = _request(self.url, f"since={old.last_seq}&run={old.run}")[1]
        conn = _Conn(sock, attempt, req)
        if old is not None:
            conn.carry(old)
        rc = sock.connect_ex(self.addr)
        if rc not in (0, errno.EINPROGRESS):
            sock.close()
            self._failed(conn)
            return
        self.inflight[sock.fileno()] = conn
        self.sel.register(sock, selectors.EVENT_WRITE, conn)

    def _failed(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0:
            self.inflight.pop(fd, None)
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(conn.sock)
            conn.sock.close()
        if conn.resumed is not None:  # a viewer coming back: the page's backoff, then again
            if conn.attempt + 1 < RECONNECT_TRIES:
                self._reconnect_later(conn, conn.attempt + 1)
            else:
                self.counters["failed_total"] += 1
            return
        if conn.attempt + 1 < RETRIES:
            self.batch["retried"] += 1
            self.todo.append(conn.attempt + 1)
        else:
            self.batch["failed"] += 1
            self.counters["failed_total"] += 1

    def _on_writable(self, conn: _Conn) -> None:
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._failed(conn)
            return
        try:
            conn.sock.send(conn.req)  # ~200 bytes: always fits an empty send buffer
        except OSError:
            self._failed(conn)
            return
        conn.state = HANDSHAKE
        self.sel.modify(conn.sock, selectors.EVENT_READ, conn)

    def _on_handshake(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(RECV)
        except BlockingIOError:
            return
        except OSError:
            self._failed(conn)
            return
        if not data:
            self._failed(conn)
            return
        conn.buf += data
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.buf) > 16384:
                self._failed(conn)
            return
        if not conn.buf.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101")):
            self._failed(conn)
            return
        rest = conn.buf[end + 4 :]
        conn.buf = b""
        conn.state = OPEN
        fd = conn.sock.fileno()
        del self.inflight[fd]
        self.open[fd] = conn
        if conn.resumed is not None:
            if conn.resumed[1] is None:
                conn.resumed[1] = round(time.time(), 4)
        else:
            self.batch["ready"] += 1
        if rest:
            self._consume(conn, rest)
            now = time.time() * 1000
            self._note(conn, rest, now, now)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self.inflight.values() if now - c.started > CONNECT_TIMEOUT]:
            self._failed(conn)

    def _reconnect_later(self, conn: _Conn, attempt: int) -> None:
        delay = min(BACKOFF_MIN * 2**attempt, BACKOFF_MAX)
        heapq.heappush(self.later, (time.monotonic() + delay, id(conn), conn))
        conn.attempt = attempt

    def _closed(self, conn: _Conn) -> None:
        """The server closed an open viewer: forget it, or bring it back (``reconnect``)."""
        self.counters["closed"] += 1
        self.open.pop(conn.sock.fileno(), None)
        self.sel.unregister(conn.sock)
        conn.sock.close()
        if self.reconnect:
            conn.resumed = [round(time.time(), 4), None, None]
            self.resumes.append(conn.resumed)
            self._reconnect_later(conn, 0)

    def _check_batch_done(self) -> None:
        if self.batch["active"] and not self.todo and not self.inflight:
            self.batch["active"] = False
            _emit(
                {
                    "ready": self.batch["ready"],
                    "failed": self.batch["failed"],
                    "retried": self.batch["retried"],
                    "closed": self.counters["closed"],
                    "open": len(self.open),
                    "connect_s": round(time.monotonic() - self.batch["t0"], 2),
                }
            )

    # -- draining ---------------------------------------------------------------------------

    def _consume(self, conn: _Conn, data: bytes) -> None:
        self.counters["bytes"] += len(data)
        if PING in data:
            i = data.find(PING)
            while i >= 0:
                payload = data[i + 2 : i + 6]
                if len(payload) == 4:
                    with contextlib.suppress(OSError):
                        conn.sock.send(PONG_HEAD + payload)
                        self.counters["pongs"] += 1
                i = data.find(PING, i + 2)

    def _on_readable(self, conn: _Conn) -> None:
        try:
            data, anc, _flags, _addr = conn.sock.recvmsg(RECV, ANCBUF)
        except BlockingIOError:
            return
        except OSError:
            data, anc = b"", []
        self.counters["recvs"] += 1
        if not data:
            self._closed(conn)
            return
        self._consume(conn, data)
        if b'"seq":' in data:
            read_ms = time.time() * 1000
            kernel_ms = read_ms
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack("qq", value[:16])
                    kernel_ms = sec * 1000 + nsec / 1e6
            self._note(conn, data, kernel_ms, read_ms)

    def _note(self, conn: _Conn, data: bytes, kernel_ms: float, read_ms: float) -> None:
        if self.reconnect:
            found = RUN.search(data)
            run = found.group(1).decode() if found is not None else conn.run
            if conn.run and run != conn.run:  # a new run numbers from its own start
                self.counters["run_changes"] += 1
                conn.last_seq, conn.seen_in_window = -1, False
            conn.run = run
        self.arrivals.note(conn, data, kernel_ms, read_ms)

    # -- main loop --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        t = os.times()
        return {
            "open": len(self.open),
            **self.counters,
            "cpu_s": round(t.user + t.system, 2),
        }

    def _on_command(self, line: str) -> None:
        words = line.split()
        if not words:
            return
        if words[0] == "add" and len(words) == 2:
            self.add(int(words[1]))
        elif words[0] == "stats":
            _emit(self.stats())
        elif words[0] == "mark":
            self.arrivals.start(list(self.open.values()))
            _emit({"marked": self.arrivals.since_ms})
        elif words[0] == "end":
            self.arrivals.end()
            _emit({"ended": self.arrivals.until_ms})
        elif words[0] == "arrivals":
            _emit(self.arrivals.report(list(self.open.values())))
        elif words[0] == "reconnect":
            self.reconnect = True
            _emit({"reconnect": True})
        elif words[0] == "window" and len(words) == 2:
            self.window = int(words[1])
            _emit({"window": self.window})
        elif words[0] == "reconnects":
            _emit({"resumes": self.resumes, "waiting": len(self.later)})

    def run(self, n: int) -> None:
        stdin_buf = b""
        if not os.isatty(0) and _is_pipe(0):
            os.set_blocking(0, False)
            self.sel.register(0, selectors.EVENT_READ, "stdin")
        self.add(n)
        last_timeout_check = time.monotonic()
        while not self.stop:
            while self.todo and len(self.inflight) < self.window:
                self._start(self.todo.popleft())
            now = time.monotonic()
            while self.later and self.later[0][0] <= now and len(self.inflight) < self.window:
                _due, _tie, old = heapq.heappop(self.later)
                self._start(old.attempt, old)
            wait = 0.2 if not self.later else min(0.2, max(0.0, self.later[0][0] - now))
            for key, _mask in self.sel.select(timeout=wait):
                conn = key.data
                if conn == "stdin":
                    chunk = b""
                    with contextlib.suppress(BlockingIOError):
                        chunk = os.read(0, 4096)
                    if not chunk:
                        self.sel.unregister(0)
                        continue
                    stdin_buf += chunk
                    while b"\n" in stdin_buf:
                        line, stdin_buf = stdin_buf.split(b"\n", 1)
                        self._on_command(line.decode())
                    continue
                if conn.state == OPEN:
                    self._on_readable(conn)
                elif conn.state == HANDSHAKE:
                    self._on_handshake(conn)
                else:
                    self._on_writable(conn)
            now = time.monotonic()
            if now - last_timeout_check > 1.0:
                last_timeout_check = now
                self._check_timeouts()
            self._check_batch_done()
        linger = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT pile-up between runs
        for conn in [*self.open.values(), *self.inflight.values()]:
            with contextlib.suppress(OSError):
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            conn.sock.close()
        _emit(self.stats())


def _is_pipe(fd: int) -> bool:
    import stat

    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def load(url: str, n: int, source: str | None = None, window: int = WINDOW) -> None:
    ld = Load(url, source, window)

    def stop(*_: Any) -> None:
        ld.stop = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ld.run(n)


def slow(url: str, rcvbuf: int) -> None:
    """One viewer that never reads after the handshake response."""
    addr, req = _request(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: sets the window
    sock.settimeout(10)
    sock.connect(addr)
    sock.sendall(req)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: leave every frame after the response unread
        if not chunk:
            break
        head += chunk
    ok = head.startswith(b"HTTP/1.1 101")
    _emit(
        {
            "connected": ok,
            "at": time.time(),
            "rcvbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            "port": sock.getsockname()[1],
        }
    )
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    while not stopping:
        time.sleep(0.1)
    # Was it closed by the bridge? Peek without consuming much: a reset raises.
    state = "open"
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(RECV)
            if not data:
                state = "closed (FIN)"
                break
    except BlockingIOError:
        state = "open"
    except ConnectionResetError:
        state = "closed (RST)"
    except OSError as exc:
        state = f"closed ({exc})"
    _emit({"state": state})
    sock.close()


async def probe(url: str, n: int, seconds: float) -> None:
    from websockets.asyncio.client import ClientConnection, connect

    async def open_one() -> ClientConnection | None:
        for attempt in range(RETRIES):
            try:
                return await connect(
                    url,
                    compression=None,
                    open_timeout=CONNECT_TIMEOUT,
                    ping_interval=None,  # the bridge pings us; our pongs are automatic
                    max_size=2**22,
                )
            except Exception:
                await asyncio.sleep(0.2 * (attempt + 1))
        return None

    result: dict[str, Any] = {"ages_ms": [], "at_ms": [], "gaps": 0, "duplicates": 0}
    result["probes"] = []

    async def one(ws: ClientConnection, deadline: float) -> None:
        last: int | None = None
        first = True
        mine = {"readings": 0, "gaps": 0, "duplicates": 0, "closed": False}
        try:
            while time.monotonic() < deadline:
                try:
                    async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                        message = await ws.recv()
                except TimeoutError:
                    break
                now = time.time() * 1000
                frame = json.loads(message)
                if frame.get("type") != "readings":
                    continue
                for r in frame.get("readings") or []:
                    seq = r["seq"]
                    if last is not None:
                        if seq <= last:
                            mine["duplicates"] += 1
                            continue
                        if seq > last + 1:
                            mine["gaps"] += seq - last - 1
                    last = seq
                    if not first:  # the snapshot on connect holds old readings: not an age
                        result["ages_ms"].append(round(now - r["time"], 2))
                        result["at_ms"].append(round(now))
                        mine["readings"] += 1
                first = False
        except Exception:
            mine["closed"] = True
        result["probes"].append(mine)

    conns = [ws for ws in await asyncio.gather(*(open_one() for _ in range(n))) if ws]
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(one(ws, deadline) for ws in conns))
    for key in ("readings", "gaps", "duplicates", "closed"):
        result[key] = sum(p[key] for p in result["probes"])
    result["connected"] = len(conns)
    t = os.times()
    result["cpu_s"] = round(t.user + t.system, 2)
    for ws in conns:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 2)
    _emit(result)


if __name__ == "__main__":
    raise_nofile()
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "load":
        source = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] != "-" else None
        load(url, int(sys.argv[3]), source, int(sys.argv[5]) if len(sys.argv) > 5 else WINDOW)
    elif mode == "probe":
        asyncio.run(probe(url, int(sys.argv[3]), float(sys.argv[4])))
    elif mode == "slow":
        slow(url, int(sys.argv[3]) if len(sys.argv) > 3 else 4096)
    else:
        sys.exit(f"unknown mode {mode!r}")
