"""The fan-out on Redis Streams (``HRDASH_REDIS_URL``): groundwork, not wired to the bridge yet.

Without Redis the bridge keeps everything in one process (:mod:`hrdash.hub`, :mod:`hrdash.edge`)
and nothing here is imported. With it, the ingest writes each reading, status and alarm frame
once to its patient's streams, and any number of edge processes read them:

* :mod:`hrdash.broker.entries` — pure: the key names (one hash tag per patient) and the stream
  entries' encoding and decoding, bad entries refused with a stable reason;
* :mod:`hrdash.broker.client` — :func:`connect` (one line when Redis cannot be reached) and a
  client that retries nothing by itself;
* :mod:`hrdash.broker.writer` — the ingest's :class:`StreamWriter`: each reading once,
  pipelined, fenced by the patient's lease, held while Redis is unreachable;
* :mod:`hrdash.broker.reader` — the edge's :class:`StreamReader`: ``XREAD BLOCK`` from the
  last ids, ``since`` and snapshots from the stream;
* :mod:`hrdash.broker.lease` — one ingest per patient: :class:`Lease`, :class:`LeaseKeeper`
  and the takeover that continues the patient's run and seq.

Importing this package imports ``redis`` (redis-py).
"""

from hrdash.broker.client import BrokerError, client_for, connect
from hrdash.broker.entries import (
    ENTRY_REASONS,
    PatientKeys,
    StreamReading,
    decode_frame,
    decode_reading,
    encode_frame,
    encode_reading,
    keys_for,
)
from hrdash.broker.lease import (
    LEASE_TTL,
    Lease,
    LeaseKeeper,
    continue_from,
    holder_id,
    new_run,
    resume_point,
)
from hrdash.broker.reader import StreamReader
from hrdash.broker.writer import StreamWriter

__all__ = [
    "ENTRY_REASONS",
    "LEASE_TTL",
    "BrokerError",
    "Lease",
    "LeaseKeeper",
    "PatientKeys",
    "StreamReader",
    "StreamReading",
    "StreamWriter",
    "client_for",
    "connect",
    "continue_from",
    "decode_frame",
    "decode_reading",
    "encode_frame",
    "encode_reading",
    "holder_id",
    "keys_for",
    "new_run",
    "resume_point",
]
