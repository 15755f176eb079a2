"""Secrets of the upstream connection (URL password, query token, header values) never leave the
process: not in logs, /healthz, status frames, source_detail, probe output or the Dash page."""

from __future__ import annotations

import asyncio
import http
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request

from hrdash.bridge import Bridge
from hrdash.settings import Settings
from hrdash.webapp import create_app
from tests.conftest import (
    SERVICE_LOGGER,
    ServiceFactory,
    healthz,
    read_until,
    reference_frames,
    timeout,
    viewer_url,
    wait_for,
)
from tests.support import routed

SECRETS = ("pw", "s3cret", "t0ps3cret")
HEADERS = '{"Authorization": "Bearer t0ps3cret"}'


def url_for(port: int) -> str:
    return f"ws://user:pw@127.0.0.1:{port}/hr?token=s3cret"


def redacted(port: int) -> str:
    return f"ws://***@127.0.0.1:{port}/hr?token=***"


def secret_env(port: int) -> dict[str, str]:
    return {
        "HRDASH_UPSTREAM_URL": url_for(port),
        "HRDASH_HEADERS": HEADERS,
        "HRDASH_DB": ":memory:",
    }


def assert_no_secret(text: str, where: str) -> None:
    # "pw" is short: look for it where a password would appear, and for the other two anywhere.
    for secret in SECRETS[1:]:
        assert secret not in text, f"{secret!r} in {where}"
    assert ":pw@" not in text and "pw@" not in text, f"the URL password in {where}"
    assert "dXNlcjpwdw" not in text, f"the Basic credentials in {where}"  # base64("user:pw")


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections for the whole test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_bridge_never_shows_the_secrets(
    services: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Through a live connection, a cut, HTTP 403 at the handshake and a refused connection, the
    bridge's DEBUG log, /healthz, the status frames and source_detail show the redacted URL and
    never the password, the query token or the header value."""
    caplog.set_level(logging.DEBUG)
    refusing = False

    def gate(ws: ServerConnection, request: Request) -> Any:
        return ws.respond(http.HTTPStatus.FORBIDDEN, "no\n") if refusing else None

    service = await services(reference_frames(4), process_request=gate)
    port = service.port
    bridge = Bridge(Settings.load(env=secret_env(port)).replace(bridge_port=0))
    await bridge.start()
    texts: dict[str, list[str]] = {"healthz": [], "frames": []}
    try:
        async with asyncio.timeout(timeout(20)), connect(viewer_url(bridge)) as viewer:
            await viewer.send(json.dumps({"type": "detail", "on": True}))
            seen = await service.wait_seen(1)
            # The secrets are really in use: the service got them.
            assert "Bearer t0ps3cret" in seen.headers.get_all("Authorization")
            assert seen.path == "/hr?token=s3cret"

            def state(name: str, detail: str = "") -> Any:
                def match(frame: dict[str, Any]) -> bool:
                    texts["frames"].append(json.dumps(frame))
                    return (
                        frame.get("type") == "status"
                        and "source_detail" in frame
                        and frame["upstream"] == name
                        and detail in frame["detail"]
                    )

                return match

            await read_until(viewer, state("live"))
            await wait_for(lambda: bridge.counters["accepted"] >= 4, what="4 readings")
            texts["healthz"].append(json.dumps(await healthz(bridge.port)))

            refusing = True
            transport = service.connections[-1].transport
            assert transport is not None
            transport.abort()
            await read_until(viewer, state("down", "HTTP 403"), 10)
            texts["healthz"].append(json.dumps(await healthz(bridge.port)))

            await service.stop()
            await read_until(viewer, state("down", "refused"), 15)
            texts["healthz"].append(json.dumps(await healthz(bridge.port)))
    finally:
        async with asyncio.timeout(timeout(5)):
            await bridge.close()

    log = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.args!r}"
        for r in caplog.records
        if r.name != SERVICE_LOGGER  # the test service logs what it receives, secrets too
    )
    assert_no_secret(log, "the log")
    assert redacted(port) in log  # the log does name the service, redacted
    for name, items in texts.items():
        for text in items:
            assert_no_secret(text, name)
    assert any(redacted(port) in text for text in texts["healthz"])
    details = [json.loads(t)["source_detail"] for t in texts["frames"] if "source_detail" in t]
    assert details and all(d["url"] == redacted(port) for d in details)


async def run_probe(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HRDASH_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hrdash",
        "probe",
        *args,
        env={**clean, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout(20)):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_probe_never_shows_the_secrets(services: ServiceFactory, dead_port: int) -> None:
    """`hrdash probe` names the service by its redacted URL, when it connects and when it cannot,
    and never prints the password, the token or the header value."""
    service = await services(reference_frames(5))
    for level in ("info", "debug"):
        env = {"HRDASH_HEADERS": HEADERS, "HRDASH_LOG_LEVEL": level}
        status, out, err = await run_probe(url_for(service.port), env=env)
        assert status == 0, err
        assert f"Connected to {redacted(service.port)}" in out
        assert "Bearer t0ps3cret" in service.seen[-1].headers.get_all("Authorization")
        assert_no_secret(out + err, f"probe output at {level} level")

        status, out, err = await run_probe(url_for(dead_port), env=env)
        assert status == 1
        assert redacted(dead_port) in err
        assert_no_secret(out + err, f"probe failure output at {level} level")


def test_dash_page_never_shows_the_secrets() -> None:
    """The page HTML, its layout JSON (the pages container and the page the router serves at /)
    and its callback map show the redacted source only."""
    settings = Settings.load(env=secret_env(40123)).replace(port=41234, bridge_port=41235)
    assert settings.display_source == redacted(40123)
    client = create_app(settings).server.test_client()
    bodies = {}
    for path in ("/", "/_dash-layout", "/_dash-dependencies"):
        response = client.get(path)
        assert response.status_code == 200, path
        bodies[path] = response.get_data(as_text=True)
        assert_no_secret(bodies[path], path)
    layout = json.dumps(routed(client, "/"))  # the page Dash pages' router serves at /
    assert_no_secret(layout, "the decoded layout")
    assert redacted(40123) in layout
