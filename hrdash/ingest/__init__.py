"""Ingest: reading the patients' services and recording what they send.
:mod:`hrdash.ingest.source` holds one patient's upstream (:class:`~hrdash.ingest.source.
PatientSource`); :mod:`hrdash.ingest.recorder` writes every accepted reading into the SQLite
history (:class:`~hrdash.ingest.recorder.Recorder`)."""

from hrdash.ingest.recorder import Recorder
from hrdash.ingest.source import PatientSource, describe_error, reconnect_delays

__all__ = ["PatientSource", "Recorder", "describe_error", "reconnect_delays"]
