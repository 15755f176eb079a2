"""How the long-running commands (bridge, ingest, edge, simulator) learn they must stop."""

from __future__ import annotations

import asyncio
import signal


async def stop_requested() -> None:
    """Return once this process gets SIGINT (Ctrl-C) or SIGTERM (the supervisor, systemd...).
    Call from the running event loop, in the main thread."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
