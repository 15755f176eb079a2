"""``hrdash probe URL``: look at a service's first frames and say how to read them.

Connects with the same upstream options as the bridge (path/query parameters, body, headers,
subprotocols, TLS), prints the first frames, then the inferred mapping (see
:mod:`hrdash.inference`), the settings to use and a ``[[patient]]`` table for a sources file
(:mod:`hrdash.sources`; its secrets are ``***``, as everywhere in the output). ``--sample FILE``
does the same from a saved sample without connecting (a table only when HRDASH_UPSTREAM_URL
names the service). Exit status: 0 when a mapping was found, 1 when the service could not
be reached or sent nothing in time, 3 when frames arrived but no heart-rate field fits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from hrdash.inference import Inference, infer
from hrdash.readings import Rejected, decode
from hrdash.settings import Settings, redact_url
from hrdash.sources import Source, patient_table
from hrdash.upstream import connect_options, connect_url

FRAME_PREVIEW = 400  # characters of each frame printed
PATIENT_ID = "patient-1"  # id of the printed [[patient]] table (the one-upstream patient's id)


class ProbeError(Exception):
    """One line naming why probing failed."""


def describe_connect_error(exc: BaseException) -> str:
    """One line, no secrets, for a failed connection attempt."""
    if isinstance(exc, socket.gaierror):
        return "unknown host (DNS lookup failed)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, InvalidStatus):
        return f"the server answered HTTP {exc.response.status_code} at the handshake"
    if isinstance(exc, InvalidURI):
        return "not a valid ws:// or wss:// URL"
    if isinstance(exc, InvalidHandshake):
        return f"WebSocket handshake failed: {exc}"
    if isinstance(exc, TimeoutError):
        return "timed out while connecting"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


async def receive_frames(settings: Settings, count: int, wait: float) -> list[str | bytes]:
    """Connect once and return up to ``count`` frames received within ``wait`` seconds."""
    url = connect_url(settings)
    shown = redact_url(settings.effective_upstream_url)
    frames: list[str | bytes] = []
    # websockets logs the request line and every header at DEBUG: the URL's token and the
    # HRDASH_HEADERS values are secrets, so this connection logs warnings only (as the bridge's).
    quiet_logger = logging.getLogger("hrdash.probe.connection")
    quiet_logger.setLevel(logging.WARNING)
    try:
        async with asyncio.timeout(wait):
            async with connect(url, logger=quiet_logger, **connect_options(settings)) as ws:
                if settings.send:
                    await ws.send(settings.send)
                while len(frames) < count:
                    frames.append(await ws.recv())
    except TimeoutError:
        if not frames:
            raise ProbeError(f"no frame within {wait:g} s from {shown}") from None
    except ConnectionClosed as exc:
        if not frames:
            raise ProbeError(f"{shown} closed the connection: {exc}") from None
    except ProbeError:
        raise
    except Exception as exc:
        raise ProbeError(f"cannot connect to {shown}: {describe_connect_error(exc)}") from exc
    return frames


def load_sample(path: Path) -> list[str]:
    """Frames from a saved sample: a JSON array of frames, or JSON lines."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProbeError(f"cannot read {path}: {exc.strerror}") from None
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except ValueError:
            items = None
        if isinstance(items, list):
            return [json.dumps(item) for item in items]
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ProbeError(f"{path} holds no frame")
    return lines


def _preview(frame: str | bytes) -> str:
    if isinstance(frame, bytes):
        return f"<binary frame of {len(frame)} bytes>"
    text = frame if len(frame) <= FRAME_PREVIEW else frame[:FRAME_PREVIEW] + "…"
    return text.replace("\n", " ")


def report(frames: list[str | bytes], result: Inference) -> str:
    """The human-readable report (frames already printed)."""
    lines = []
    if result.value_path is None:
        lines.append("No heart-rate field found.")
        lines.extend(f"  - {note}" for note in result.notes)
        lines.append(
            "Describe the frames with HRDASH_VALUE_FIELD/HRDASH_TIME_FIELD, or write a "
            "HRDASH_TRANSFORM hook (see README)."
        )
        return "\n".join(lines)
    unit = {
        "s": "Unix seconds",
        "ms": "Unix milliseconds",
        "us": "Unix microseconds",
        "ns": "Unix nanoseconds",
        "iso": "ISO-8601",
    }.get(result.time_unit or "", "")
    lines.append(f"Mapping ({result.confidence} confidence, from {result.frames} frames):")
    lines.append(f"  heart rate: {result.value_path}")
    if result.time_path:
        lines.append(f"  time:       {result.time_path} ({unit})")
    else:
        lines.append("  time:       none (readings get their receive time)")
    for alt in result.alternatives:
        lines.append(f"  also possible: {alt.path} ({alt.why})")
    if result.misfits:
        shown = ", ".join(str(i + 1) for i in result.misfits[:10])
        lines.append(f"  frames that do not fit: {shown}")
    lines.extend(f"  note: {note}" for note in result.notes)
    env = f"HRDASH_VALUE_FIELD={result.value_path}"
    flags = f"--value-field {result.value_path}"
    if result.time_path:
        env += f" HRDASH_TIME_FIELD={result.time_path}"
        flags += f" --time-field {result.time_path}"
    lines.append("Settings:")
    lines.append(f"  {env}")
    lines.append(f"  hrdash run {flags}")
    return "\n".join(lines)


def sources_entry(settings: Settings, result: Inference) -> Source:
    """The patient that the probed service and its options make, read with the inferred
    mapping."""
    return Source.from_settings(
        settings, PATIENT_ID, value_field=result.value_path, time_field=result.time_path or ""
    )


def probe(settings: Settings, count: int, timeout: float, sample: Path | None) -> tuple[str, int]:
    """Run a probe; returns (text to print, exit status). Raises :class:`ProbeError`."""
    out: list[str] = []
    if sample is not None:
        frames: list[str | bytes] = list(load_sample(sample))
        out.append(f"Sample {sample}: {len(frames)} frames")
    else:
        started = time.monotonic()
        frames = asyncio.run(receive_frames(settings, count, timeout))
        elapsed = time.monotonic() - started
        out.append(
            f"Connected to {redact_url(settings.effective_upstream_url)}: "
            f"{len(frames)} frames in {elapsed:.1f} s"
        )
    for index, frame in enumerate(frames, 1):
        out.append(f"  {index:>3}  {_preview(frame)}")
    decoded: list[Any] = []
    for frame in frames:
        obj = decode(frame)
        decoded.append(None if isinstance(obj, Rejected) else obj)
    result = infer(decoded)
    out.append(report(frames, result))
    if result.value_path and settings.upstream_url:
        out.append("Sources file entry (a [[patient]] table; choose its id and name):")
        out.append(patient_table(sources_entry(settings, result)))
    return "\n".join(out), 0 if result.value_path else 3
