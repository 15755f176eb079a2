"""Redis connections for the fan-out: a client that retries nothing by itself, a one-line error.

* :func:`connect` — a client for ``HRDASH_REDIS_URL`` that has answered a ``PING``, or
  :class:`BrokerError` with one line (the URL's secrets redacted).
* :func:`check_reachable` — the start check: :func:`connect` from synchronous code, a
  :class:`~hrdash.settings.SettingError` (one line, exit status 2) when Redis does not answer.
* :func:`client_for` — the client without the ``PING``. It never retries a command by itself
  (redis-py's default would, and a retried ``XADD`` could be applied twice): the writer and
  the reader (:mod:`hrdash.broker.writer`, :mod:`hrdash.broker.reader`) retry, with backoff,
  knowing what is safe to repeat; :data:`DOWN_ERRORS` is what they take for "Redis
  unreachable" (hold, back off, reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
from collections.abc import Awaitable, Callable, Generator

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hrdash.ingest import reconnect_delays
from hrdash.settings import SettingError, Settings, redact_url

__all__ = [
    "BLOCK_MS",
    "CONNECT_ERRORS",
    "DOWN_ERRORS",
    "BrokerError",
    "Sleep",
    "aclose_quietly",
    "backoff",
    "check_reachable",
    "client_for",
    "connect",
    "describe_error",
    "raise_if_cancelled",
    "round_trip",
]

CONNECT_TIMEOUT = 2.0  # seconds to open a connection to Redis at most
REPLY_TIMEOUT = 5.0  # seconds a round trip may take at most (an XREAD: beyond its block); past
# it Redis counts as unreachable. Applied by the callers with asyncio.timeout (see client_for)
BLOCK_MS = 1000  # ms an XREAD waits for new entries: the reader's heartbeat on a quiet station

# Connection trouble: hold, back off, reconnect. (redis-py's ConnectionError and TimeoutError,
# BusyLoadingError among them; OSError for what it does not wrap.)
DOWN_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
)

CONNECT_ERRORS: tuple[type[Exception], ...] = (RedisError, *DOWN_ERRORS)

Sleep = Callable[[float], Awaitable[None]]


class BrokerError(Exception):
    """Redis cannot be used. ``str(err)`` is one line for the user, without secrets."""


def describe_error(exc: BaseException) -> str:
    """A short, secret-free cause of a Redis failure (one line)."""
    cause: BaseException | None = exc
    while cause is not None:  # redis-py wraps the OSError (versions word it differently)
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return "timed out"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    refused = ("Connection refused", "Connect call failed", f"Error {errno.ECONNREFUSED} ")
    if any(word in text for word in refused):
        return "connection refused"
    return text[:200]


def client_for(url: str, *, connect_timeout: float = CONNECT_TIMEOUT) -> Redis:
    """A client for ``url`` (``redis://``, ``rediss://`` or ``unix://``) that retries nothing
    by itself and answers bytes. Raises :class:`BrokerError` for a URL it cannot use. Opens no
    connection (the first command does).

    It has no socket timeout: with one, redis-py sends each command under
    ``asyncio.wait_for``, which on Python 3.11 can swallow a task's cancellation (the task then
    goes on reading a reply that never comes). The callers bound each round trip with
    ``asyncio.timeout(REPLY_TIMEOUT)`` instead (:func:`round_trip`); TCP keepalive stays on."""
    shown = redact_url(url)
    try:
        return Redis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=connect_timeout,
            socket_timeout=None,
            decode_responses=False,
            protocol=2,  # RESP2: replies of one shape on every redis-py of the pinned range
        )
    except (ValueError, TypeError) as exc:
        cause = str(exc).splitlines()[0] if str(exc) else "not a Redis URL"
        raise BrokerError(f"HRDASH_REDIS_URL: cannot use {shown!r}: {cause}") from None


async def connect(url: str, *, connect_timeout: float = CONNECT_TIMEOUT) -> Redis:
    """A client for ``url`` that has answered ``PING`` within ``connect_timeout`` seconds; else
    :class:`BrokerError`, one line naming the URL (redacted) and the cause."""
    client = client_for(url, connect_timeout=connect_timeout)
    try:
        async with asyncio.timeout(connect_timeout):
            await client.ping()
    except CONNECT_ERRORS as exc:
        await client.aclose()
        cause = describe_error(exc)
        raise BrokerError(
            f"HRDASH_REDIS_URL: cannot reach Redis at {redact_url(url)!r}: {cause}"
        ) from None
    return client


def check_reachable(settings: Settings) -> None:
    """The start check of ``python app.py``, the gunicorn master, ``hrdash ingest`` and
    ``hrdash edge``: Redis at ``HRDASH_REDIS_URL`` answers a ``PING``, or :class:`SettingError`
    with one line (``HRDASH_REDIS_URL: cannot reach Redis at '<redacted URL>': <cause>``).

    A wrong URL or a Redis not started yet is a configuration error, shown at once; once Redis
    has been reached, every process rides an outage out instead (hold, back off, reconnect).
    Synchronous (it runs its own event loop): call it before anything starts. Without
    ``HRDASH_REDIS_URL`` it does nothing."""
    if not settings.uses_redis:
        return

    async def ping() -> None:
        await aclose_quietly(await connect(settings.redis_url))

    try:
        asyncio.run(ping())
    except BrokerError as exc:
        raise SettingError(str(exc)) from None


def round_trip(extra: float = 0.0) -> asyncio.Timeout:
    """The bound of one round trip to Redis: ``REPLY_TIMEOUT`` plus ``extra`` seconds (an
    XREAD's block). Past it, :class:`TimeoutError` (one of DOWN_ERRORS)."""
    return asyncio.timeout(REPLY_TIMEOUT + extra)


def raise_if_cancelled() -> None:
    """Re-raise a cancellation a library swallowed: call where DOWN_ERRORS are caught in a
    loop, so that a cancelled task stops instead of backing off and going on."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def backoff(rng: random.Random | None = None) -> Generator[float]:
    """The waits between two attempts to reach Redis: the ingest's capped, jittered backoff
    (:func:`hrdash.ingest.reconnect_delays`), jittered by ``rng``."""
    return reconnect_delays(rng=rng)


async def aclose_quietly(client: Redis) -> None:
    """Close ``client``'s connections, ignoring a Redis that is gone already."""
    with contextlib.suppress(RedisError, OSError):
        await client.aclose()
