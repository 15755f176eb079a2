"""``hrdash probe``, run as a user runs it (``python -m hrdash probe ...`` in a subprocess),
against heart-rate services running in the test's event loop on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http
import json
import os
import re
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request

from tests.conftest import Seen, ServiceFactory, Tls, timeout

T0 = 1_513_152_655_902


@dataclass
class Probe:
    status: int
    out: str
    err: str

    @property
    def mapping(self) -> dict[str, str]:
        """The HRDASH_* settings the probe recommends (its "Settings:" line)."""
        lines = self.out.splitlines()
        index = lines.index("Settings:")
        return dict(item.split("=", 1) for item in lines[index + 1].split())

    def one_line_error(self, *words: str) -> str:
        """Assert: status 1, nothing on stdout, exactly one line on stderr naming ``words``."""
        assert self.status == 1, (self.status, self.out, self.err)
        assert self.out == ""
        assert "Traceback" not in self.err
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        for word in words:
            assert word.lower() in lines[0].lower(), lines[0]
        return lines[0]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HRDASH_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


async def probe(*args: str, env: dict[str, str] | None = None, seconds: float = 20) -> Probe:
    """Run ``hrdash probe ARGS`` to completion (killed after ``seconds``)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hrdash",
        "probe",
        *args,
        env=clean_env(**(env or {})),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout(seconds)):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Probe(proc.returncode, out.decode(), err.decode())


def frames_of(objs: list[Any]) -> list[str]:
    return [json.dumps(obj) for obj in objs]


def iso(ms: int) -> str:
    exact = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
    return exact.isoformat(timespec="milliseconds")


POINTS = [(T0 + 500 * i, 64 + (i * 29) % 60) for i in range(8)]

SHAPES: dict[str, tuple[dict[str, str], list[Any]]] = {
    "reference": (
        {"HRDASH_VALUE_FIELD": "value", "HRDASH_TIME_FIELD": "time"},
        [{"time": t, "value": v} for t, v in POINTS],
    ),
    "nested-iso": (
        {"HRDASH_VALUE_FIELD": "payload.vitals.heartRate", "HRDASH_TIME_FIELD": "payload.at"},
        [{"payload": {"at": iso(t), "vitals": {"heartRate": v, "spo2": 97}}} for t, v in POINTS],
    ),
    "seconds-strings": (
        {"HRDASH_VALUE_FIELD": "bpm", "HRDASH_TIME_FIELD": "epoch"},
        [{"bpm": str(v), "epoch": str(t / 1000), "id": "dev-1"} for t, v in POINTS],
    ),
    "array-frame": (
        {"HRDASH_VALUE_FIELD": "*.pulse", "HRDASH_TIME_FIELD": "*.ts"},
        [[{"pulse": v, "ts": t}, {"pulse": v + 1, "ts": t + 250}] for t, v in POINTS],
    ),
    "holds-array": (
        {"HRDASH_VALUE_FIELD": "batch.*.hr", "HRDASH_TIME_FIELD": "sent"},
        [{"sent": t, "batch": [{"hr": v}, {"hr": v + 2}]} for t, v in POINTS],
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_probe_names_the_fields(services: ServiceFactory, shape: str) -> None:
    """The probe prints the frames it got and the settings that read this shape; exit 0."""
    expected, objs = SHAPES[shape]
    service = await services(frames_of(objs))
    result = await probe(service.url, "--count", "5")
    assert result.status == 0, result.err
    assert result.mapping == expected
    assert f"Connected to {service.url}: 5 frames" in result.out
    assert json.dumps(objs[0]) in result.out  # the first frame is shown


async def test_count_limits_the_frames(services: ServiceFactory) -> None:
    """--count N stops after N frames and infers from those N (numbered 1..N)."""
    service = await services(frames_of([{"time": t, "value": v} for t, v in POINTS]))
    result = await probe(service.url, "--count", "3")
    assert result.status == 0, result.err
    numbered = re.findall(r"^\s+(\d+)  \{", result.out, flags=re.MULTILINE)
    assert numbered == ["1", "2", "3"]
    assert "from 3 frames" in result.out


async def test_timeout_ends_with_the_frames_received(services: ServiceFactory) -> None:
    """A service that sends 2 frames and then nothing: with --count 5 --timeout 0.8 the probe
    stops after the timeout (not the 10 s default) and infers from the 2 frames."""
    service = await services(frames_of([{"time": t, "value": v} for t, v in POINTS[:2]]))
    result = await probe(service.url, "--count", "5", "--timeout", "0.8", seconds=8)
    assert result.status == 0, result.err
    assert "2 frames in" in result.out
    assert result.mapping == {"HRDASH_VALUE_FIELD": "value", "HRDASH_TIME_FIELD": "time"}


@pytest.mark.parametrize("form", ["lines", "array"])
async def test_sample_file(tmp_path: Path, form: str) -> None:
    """--sample FILE infers from a saved sample, JSON lines or a JSON array, without connecting."""
    expected, objs = SHAPES["nested-iso"]
    path = tmp_path / "sample.json"
    if form == "lines":
        path.write_text("\n".join(json.dumps(o) for o in objs) + "\n")
    else:
        path.write_text(json.dumps(objs, indent=2))
    result = await probe("--sample", str(path))
    assert result.status == 0, result.err
    assert f"Sample {path}: {len(objs)} frames" in result.out
    assert result.mapping == expected


async def test_sample_of_nothing_plausible_exits_3(tmp_path: Path) -> None:
    """Frames without any plausible heart rate: the probe says so and exits 3."""
    path = tmp_path / "sample.jsonl"
    path.write_text("\n".join(json.dumps({"status": "ok", "n": 1000 + i}) for i in range(5)))
    result = await probe("--sample", str(path))
    assert result.status == 3, (result.out, result.err)
    assert "No heart-rate field found." in result.out
    assert "Settings:" not in result.out


# -- upstream options --------------------------------------------------------------------------

BODY = '{"action": "subscribe", "stream": "hr"}'


def strict_service(seen: Seen) -> bool:
    """Serves only a client with the right path, query, header, subprotocol and first message."""
    return (
        seen.path == "/patients/7/hr?ward=3&format=json"
        and seen.headers.get("X-Api-Key") == "k-123"
        and seen.subprotocol == "hr.v1"
        and seen.first_message == BODY
    )


@pytest.mark.parametrize("how", ["env", "flags"])
async def test_every_upstream_option(services: ServiceFactory, how: str) -> None:
    """Path parameters, query, headers, subprotocols and the body all reach the service: it
    serves the probe with them, and closes on a probe without them (one line, exit 1)."""
    service = await services(
        frames_of([{"time": t, "value": v} for t, v in POINTS]),
        subprotocols=["hr.v1"],
        first_wait=1.0,
        require=strict_service,
    )
    url = f"ws://127.0.0.1:{service.port}/patients/{{patient}}/hr?ward=3"
    options = {
        "path_params": "patient=7",
        "query": "format=json",
        "headers": "X-Api-Key: k-123",
        "subprotocols": "hr.v1",
        "send": BODY,
    }
    if how == "env":
        result = await probe(url, env={f"HRDASH_{k.upper()}": v for k, v in options.items()})
    else:
        flags = [x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", v)]
        result = await probe(url, *flags)
    assert result.status == 0, result.err
    assert result.mapping == {"HRDASH_VALUE_FIELD": "value", "HRDASH_TIME_FIELD": "time"}
    without_header = {k: v for k, v in options.items() if k != "headers"}
    refused = await probe(
        url, "--timeout", "3", env={f"HRDASH_{k.upper()}": v for k, v in without_header.items()}
    )
    refused.one_line_error("closed")
    assert len(service.seen) == 2
    assert strict_service(service.seen[0]) and not strict_service(service.seen[1])


async def test_tls_options(services: ServiceFactory, tls: Tls) -> None:
    """wss:// with a test CA: --ca-file verifies it, --insecure skips verification, and without
    either the probe fails with one line naming the certificate."""
    service = await services(ssl_context=tls.server)
    ok = await probe(service.url, "--ca-file", tls.ca_file)
    assert ok.status == 0, ok.err
    insecure = await probe(service.url, "--insecure", "true")
    assert insecure.status == 0, insecure.err
    failed = await probe(service.url)
    failed.one_line_error("certificate")


# -- failures: one line, the cause, non-zero -----------------------------------------------------


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections for the whole test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        yield int(sock.getsockname()[1])


async def test_connection_refused(dead_port: int) -> None:
    """Nothing listening: one line saying the connection was refused."""
    result = await probe(f"ws://127.0.0.1:{dead_port}/hr")
    result.one_line_error("connection refused", f"127.0.0.1:{dead_port}")


async def test_unknown_host() -> None:
    """A host name that cannot exist (.invalid): one line saying the host is unknown."""
    result = await probe("ws://heart-rate.invalid/hr", "--timeout", "8", seconds=20)
    result.one_line_error("unknown host", "heart-rate.invalid")


async def test_self_signed_certificate(services: ServiceFactory, tls: Tls) -> None:
    """A certificate no trusted CA signed: one line naming TLS and the certificate."""
    service = await services(ssl_context=tls.server)
    result = await probe(service.url)
    result.one_line_error("TLS", "certificate")


@pytest.mark.parametrize("code", [403, 404])
async def test_http_status_at_the_handshake(services: ServiceFactory, code: int) -> None:
    """A server answering the handshake with an HTTP error: one line naming the status."""

    def refuse(ws: ServerConnection, request: Request) -> Any:
        return ws.respond(http.HTTPStatus(code), "no\n")

    service = await services(process_request=refuse)
    result = await probe(service.url)
    result.one_line_error(f"HTTP {code}")


async def test_no_frame_within_the_timeout(services: ServiceFactory) -> None:
    """A service that accepts and sends nothing: one line saying no frame came in time."""
    service = await services([])
    result = await probe(service.url, "--timeout", "0.5", seconds=10)
    result.one_line_error("no frame within 0.5 s")
    assert len(service.seen) == 1


async def test_frames_without_a_heart_rate_exit_3(services: ServiceFactory) -> None:
    """A service whose frames hold no plausible heart rate: frames shown, exit status 3."""
    service = await services(frames_of([{"type": "ping", "n": 1000 + i} for i in range(5)]))
    result = await probe(service.url)
    assert result.status == 3, (result.out, result.err)
    assert '{"type": "ping", "n": 1000}' in result.out
    assert "No heart-rate field found." in result.out
