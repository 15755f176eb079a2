"""Helpers shared by the end-to-end tests: free ports, the app as a subprocess, headless Chromium.

Chromium comes from Debian (/usr/bin/chromium, override with HRDASH_TEST_CHROMIUM); Playwright
drives it through ``executable_path`` and never downloads a browser of its own.

Every wait here is scaled by ``HRDASH_TEST_TIMEOUT_FACTOR`` (default 1; e.g. 3 on a slow or busy
machine): the helpers take seconds as written for a normal machine and scale them themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from hrdash.supervisor import STOP_GRACE

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_FACTOR = float(os.environ.get("HRDASH_TEST_TIMEOUT_FACTOR", "1"))
CHROMIUM = os.environ.get("HRDASH_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def scaled(seconds: float) -> float:
    """A time bound for a test step, scaled for slow machines (HRDASH_TEST_TIMEOUT_FACTOR)."""
    return seconds * TIMEOUT_FACTOR


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode} before port {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {timeout} s")


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class Running:
    """A started hrdash (``python app.py`` or gunicorn) and its ports."""

    proc: subprocess.Popen[bytes]
    port: int
    bridge_port: int
    simulator_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def health(self) -> dict[str, Any]:
        return dict(get_json(f"http://127.0.0.1:{self.bridge_port}/healthz"))

    def wait_readings(self, count: int, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the bridge holds at least ``count`` readings; returns /healthz."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            health = self.health()
            if health["last_seq"] >= count:
                return health
            if time.monotonic() > deadline:
                raise TimeoutError(f"bridge has {health['last_seq']} readings, wanted {count}")
            time.sleep(0.1)

    def child(self, word: str) -> psutil.Process:
        """The descendant process whose command line contains ``word`` (e.g. "bridge")."""
        for proc in psutil.Process(self.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if word in proc.cmdline():
                    return proc
        raise LookupError(f"no child process running {word!r}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_hrdash(
    command: list[str],
    extra_env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    page_port: int | None = None,
) -> Running:
    """Start ``command`` in ``cwd`` (the repo root) with fresh ports; returns once the page port
    answers. ``page_port``: the page is served there (a ``-b`` in ``command``), not on the
    fresh HRDASH_PORT."""
    port, bridge_port, simulator_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "HRDASH_PORT": str(port),
        "HRDASH_BRIDGE_PORT": str(bridge_port),
        "HRDASH_SIMULATOR_PORT": str(simulator_port),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    log_file = tempfile.NamedTemporaryFile(prefix="hrdash-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    port = port if page_port is None else page_port
    running = Running(proc, port, bridge_port, simulator_port, Path(log_file.name))
    try:
        wait_port(port, 30, proc)
        wait_port(bridge_port, 30, proc)
    except Exception:
        stop(running)
        raise RuntimeError(f"hrdash did not start:\n{running.log()}") from None
    return running


@contextlib.contextmanager
def hrdash_running(
    command: list[str],
    extra_env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    page_port: int | None = None,
) -> Iterator[Running]:
    """``start_hrdash`` for the length of a ``with`` block; on exit it must stop leaving no
    process behind."""
    running = start_hrdash(command, extra_env, cwd, page_port)
    try:
        yield running
    finally:
        leftovers = stop(running)
    assert leftovers == [], f"processes left behind: {leftovers}"


def stop(running: Running, timeout: float = STOP_GRACE + 3.0) -> list[int]:
    """SIGTERM the main process; returns the pids of descendants still alive after ``timeout``
    (then kills them, so that a failing test leaves nothing behind). ``timeout`` is scaled; the
    default is longer than the supervisor's own worst case (its thread, STOP_GRACE, a kill)."""
    timeout = scaled(timeout)
    try:
        family = psutil.Process(running.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    running.proc.send_signal(signal.SIGTERM)
    try:
        running.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        running.proc.kill()
        running.proc.wait(timeout=5)
    _, alive = psutil.wait_procs(family, timeout=scaled(1.0))
    leftovers = [p.pid for p in alive]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return leftovers


def app_command() -> list[str]:
    return [sys.executable, "app.py"]


def gunicorn_command(workers: int = 2) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-w", str(workers), "app:server"]


@contextlib.contextmanager
def chromium_page(
    width: int = 1280, height: int = 900, args: Sequence[str] = (), **options: Any
) -> Iterator[Any]:
    """A fresh headless Chromium (persistent context on a new profile) and one page; ``args``
    are added to Chromium's command line (e.g. ``--autoplay-policy=...``); ``options`` go to
    Playwright's context (e.g. ``ignore_https_errors=True`` for a test certificate)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(
            f"Chromium not found at {CHROMIUM}: apt-get install -y chromium "
            "(or set HRDASH_TEST_CHROMIUM)"
        )
    with tempfile.TemporaryDirectory(prefix="hrdash-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=[*CHROMIUM_ARGS, *args],
            viewport={"width": width, "height": height},
            **options,
        )
        context.set_default_timeout(scaled(30) * 1000)  # Playwright's default, scaled
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()


def poll(page: Any, read: Any, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
    """Call ``read(page)`` until ``predicate`` holds on what it returns (every 50 ms, for at most
    ``timeout`` seconds, scaled); fail with the last."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        shown = dict(read(page))
        if predicate(shown):
            return shown
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the page shows {shown}")
        page.wait_for_timeout(50)


def wait_js(page: Any, expression: str, timeout: float, arg: Any = None) -> None:
    """Wait until the JavaScript ``expression`` (or function of ``arg``) is truthy in the page,
    for at most ``timeout`` seconds (scaled)."""
    page.wait_for_function(expression, arg=arg, timeout=scaled(timeout) * 1000)


def watch(page: Any) -> tuple[list[str], list[str]]:
    """Collect the page's requests to the Dash server (``_dash-update-component``) and its
    console errors and uncaught exceptions, as they happen."""
    requests: list[str] = []
    errors: list[str] = []
    page.on(
        "request",
        lambda r: requests.append(r.url) if "_dash-update-component" in r.url else None,
    )
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return requests, errors


def router_request(path: str) -> dict[str, Any]:
    """The body of the request with which the browser asks Dash pages' router for ``path``."""
    return {
        "output": ".._pages_content.children..._pages_store.data..",
        "outputs": [
            {"id": "_pages_content", "property": "children"},
            {"id": "_pages_store", "property": "data"},
        ],
        "inputs": [
            {"id": "_pages_location", "property": "pathname", "value": path},
            {"id": "_pages_location", "property": "search", "value": ""},
        ],
        "changedPropIds": ["_pages_location.pathname"],
        "state": [],
    }


def _routed(answer: dict[str, Any]) -> dict[str, Any]:
    response = answer["response"]
    return {
        "layout": response["_pages_content"]["children"],
        "title": response["_pages_store"]["data"]["title"],
    }


def routed(client: Any, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """What Dash pages' router serves for ``path`` through a Flask test ``client`` of the app: the
    page's layout (JSON) under ``layout`` and its title under ``title``, from the router callback
    the browser calls with its path (the page itself is only the pages container)."""
    page = client.get(path, headers=headers)  # also registers the router, on the first request
    assert page.status_code == 200, (path, page.status_code)
    answer = client.post("/_dash-update-component", json=router_request(path), headers=headers)
    assert answer.status_code == 200, (path, answer.status_code, answer.get_data(as_text=True))
    return _routed(answer.get_json())


def routed_url(base: str, path: str, timeout: float = 5.0) -> dict[str, Any]:
    """:func:`routed` over HTTP, from the app serving at ``base`` (``http://host:port``)."""
    with urllib.request.urlopen(base + path, timeout=timeout) as page:
        page.read()
    request = urllib.request.Request(
        base + "/_dash-update-component",
        data=json.dumps(router_request(path)).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return _routed(json.loads(answer.read()))


def walk(component: Any) -> list[Any]:
    """Every Dash component under ``component`` (a layout tree), itself included, in document
    order."""
    found = [component]
    children = getattr(component, "children", None)
    if isinstance(children, list | tuple):
        for child in children:
            found.extend(walk(child))
    elif children is not None and not isinstance(children, str | int | float):
        found.extend(walk(children))
    return found


class ScriptedService:
    """Heart-rate services whose values a test (or a benchmark) drives: one websockets server on
    127.0.0.1 in a thread with its own asyncio loop; ``/<patient>`` sends ``{"time": <Unix ms>,
    "value": bpm}`` every ``period`` seconds with the value last set for that patient (None:
    connected and silent). :meth:`set` changes a value and sends it at once (the period starts
    again from there); every reading sent is in ``sent[patient]`` as ``(unix_seconds, bpm)``."""

    def __init__(self, patients: list[str], value: float = 70, period: float = 0.5) -> None:
        import asyncio
        import threading

        from websockets.asyncio.server import serve

        self.period = period
        self.values: dict[str, float | None] = dict.fromkeys(patients, value)
        self.sent: dict[str, list[tuple[float, float]]] = {p: [] for p in patients}
        self._connections: dict[str, Any] = {}
        self._next: dict[str, float] = {}  # loop time of a patient's next periodic reading
        self._wake: dict[str, Any] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

        async def start() -> Any:
            return await serve(self._handler, "127.0.0.1", 0, compression=None)

        self._server = self.run(start())
        self.port = int(self._server.sockets[0].getsockname()[1])

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run ``coro`` on the services' loop and wait (``timeout`` s, scaled) for its result."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(scaled(timeout))

    def url(self, patient: str) -> str:
        return f"ws://127.0.0.1:{self.port}/{patient}"

    def sources(self, names: dict[str, str] | None = None) -> str:
        """A sources file (TOML) with one ``[[patient]]`` per patient, in order."""
        tables = [
            f'[[patient]]\nid = "{p}"\nname = "{(names or {}).get(p, p)}"\nurl = "{self.url(p)}"'
            for p in self.values
        ]
        return "\n\n".join(tables) + "\n"

    async def change(self, patient: str, value: float | None) -> float:
        """On the services' loop: set the patient's value and send it now (when connected and
        not None). Returns the Unix time the reading was stamped with (or now)."""
        self.values[patient] = value
        ws = self._connections.get(patient)
        sent = await self._send(patient, ws) if ws is not None else None
        if sent is not None:
            self._next[patient] = self.loop.time() + self.period
            self._wake[patient].set()
        return sent if sent is not None else time.time()

    def set(self, patient: str, value: float | None) -> float:
        """:meth:`change` from another thread (waits for it)."""
        return float(self.run(self.change(patient, value)))

    async def _send(self, patient: str, ws: Any) -> float | None:
        value = self.values[patient]
        if value is None:
            return None
        now = time.time()
        await ws.send(json.dumps({"time": int(now * 1000), "value": value}))
        self.sent[patient].append((now, value))
        return now

    async def _handler(self, ws: Any) -> None:
        import asyncio

        from websockets.exceptions import ConnectionClosed
        from websockets.protocol import State

        patient = ws.request.path.strip("/")
        if patient not in self.values:
            await ws.close(1008, "unknown patient")
            return
        self._connections[patient] = ws
        wake = self._wake.setdefault(patient, asyncio.Event())
        self._next[patient] = self.loop.time()
        try:
            while ws.state is not State.CLOSED:  # a silent patient notices the close here
                if self.loop.time() >= self._next[patient]:
                    self._next[patient] = self.loop.time() + self.period
                    await self._send(patient, ws)
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, self._next[patient] - self.loop.time())):
                        await wake.wait()
        except ConnectionClosed:
            pass
        finally:
            if self._connections.get(patient) is ws:
                del self._connections[patient]

    def close(self) -> None:
        async def halt() -> None:
            self._server.close()
            await self._server.wait_closed()

        with contextlib.suppress(Exception):
            self.run(halt())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(scaled(10))
        self.loop.close()
