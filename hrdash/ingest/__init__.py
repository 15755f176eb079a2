"""Ingest: reading the patients' services. :mod:`hrdash.ingest.source` holds one patient's
upstream (:class:`~hrdash.ingest.source.PatientSource`); a recorder (SQLite) comes later."""

from hrdash.ingest.source import PatientSource, describe_error, reconnect_delays

__all__ = ["PatientSource", "describe_error", "reconnect_delays"]
