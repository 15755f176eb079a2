"""Per-patient sources: the TOML file of the monitoring station, parsed and validated.

A sources file holds one ``[[patient]]`` table per patient::

    [[patient]]
    id = "bed-01"                  # [A-Za-z0-9_-]{1,32}, unique; used in URLs
    name = "Bed 1"                 # default: the id
    url = "wss://vitals.example.org/hr/{bed}"
    path_params = { bed = 1 }      # every per-source upstream option (PER_SOURCE) is allowed
    value_field = "data.hr"
    [patient.limits]               # optional; the defaults of Limits
    low = 45

:func:`load_sources` reads such a file into :class:`Source` objects; each option is validated by
the same parser as its ``HRDASH_*`` setting (:data:`hrdash.settings.BY_NAME`), and
:meth:`Source.upstream_settings` gives the ``Settings.replace(...)`` arguments that make today's
one-upstream code read that patient. :func:`patient_table` writes a table back (``hrdash probe``
prints one); :func:`load_sources` reads it back to the same :class:`Source`.

:func:`station_sources` gives the patients of a station from the settings, whatever they name:
the file of ``HRDASH_SOURCES``, the one service of ``HRDASH_UPSTREAM_URL`` (``patient-1``) or the
embedded simulator's patients (``bed-01`` …); :func:`source_settings` gives the settings that
connect to and read one of them. The Dash server and the bridge both call them.

Apart from reading the file, everything here is pure. A bad file raises :class:`SourcesError`, a
:class:`~hrdash.settings.SettingError` whose message is one line naming the file, the patient
(``patient "bed-02"``, or ``patient #3`` while its id is unknown or repeated) and the field.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from hrdash.alarms import LIMIT_ORDER, Limits
from hrdash.settings import (
    BY_NAME,
    SettingError,
    Settings,
    check_path_params,
    header,
    pair,
    redact_url,
    ws_url,
)
from hrdash.simulator import patient_ids

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
NAME_MAX = 64  # characters of a patient's name (it has to fit on a tile)
SECRET = "***"  # what a secret is printed as (as in redacted URLs)
UPSTREAM_PATIENT = "patient-1"  # the id of the one patient of HRDASH_UPSTREAM_URL

# The upstream options a patient may set, as named in the settings table (and the README).
PER_SOURCE = (
    "value_field",
    "time_field",
    "path_params",
    "query",
    "send",
    "headers",
    "subprotocols",
    "ca_file",
    "insecure",
    "transform",
)
KEYS = ("id", "name", "url", *PER_SOURCE, "limits")

_DEFAULTS = Settings()  # every setting at the settings table's default


class SourcesError(SettingError):
    """A sources file we cannot use; ``str(err)`` is one line naming file, patient and field."""


@dataclass(frozen=True)
class Source:
    """One patient of a sources file, validated. Option fields hold what the matching setting
    holds (same types, same defaults)."""

    id: str
    name: str
    url: str
    value_field: str = _DEFAULTS.value_field
    time_field: str = _DEFAULTS.time_field
    path_params: tuple[tuple[str, str], ...] = _DEFAULTS.path_params
    query: str = _DEFAULTS.query
    send: str = _DEFAULTS.send
    headers: tuple[tuple[str, str], ...] = _DEFAULTS.headers
    subprotocols: tuple[str, ...] = _DEFAULTS.subprotocols
    ca_file: str = _DEFAULTS.ca_file
    insecure: bool = _DEFAULTS.insecure
    transform: str = _DEFAULTS.transform
    limits: Limits = field(default_factory=Limits)

    def upstream_settings(self) -> dict[str, Any]:
        """``settings.replace(**source.upstream_settings())`` is a Settings that connects to and
        reads this patient's service: its URL, its name as ``source_name`` and every
        per-source option (an option the table leaves out is at its default, not inherited)."""
        options = {name: getattr(self, name) for name in PER_SOURCE}
        return {"upstream_url": self.url, "source_name": self.name, **options}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        patient_id: str,
        *,
        value_field: str | None = None,
        time_field: str | None = None,
    ) -> Source:
        """The patient that ``settings`` (one upstream) describes, with ``value_field`` and
        ``time_field`` instead of the settings' own when given. A relative ``ca_file`` becomes
        absolute, so the table reads the same from any directory."""
        options: dict[str, Any] = {name: getattr(settings, name) for name in PER_SOURCE}
        if value_field is not None:
            options["value_field"] = value_field
        if time_field is not None:
            options["time_field"] = time_field
        if options["ca_file"]:
            options["ca_file"] = os.path.abspath(options["ca_file"])
        name = settings.source_name or patient_id
        return cls(id=patient_id, name=name, url=settings.upstream_url, **options)


def simulator_name(patient_id: str) -> str:
    """``Bed 3`` for the simulator's ``bed-03``."""
    return f"Bed {int(patient_id.rsplit('-', 1)[1])}"


def station_sources(settings: Settings) -> list[Source]:
    """The station's patients, in order: the patients of the ``sources`` file; else, with an
    ``upstream_url``, its one patient (id ``patient-1``); else the embedded simulator's
    patients ``bed-01`` … ``bed-NN`` (``simulator_patients``), named ``Bed 1`` …, each at
    ``/patients/<id>`` on the simulator's port. Raises :class:`SourcesError` for a bad file."""
    if settings.sources:
        return load_sources(settings.sources)
    if settings.upstream_url:
        return [Source.from_settings(settings, UPSTREAM_PATIENT)]
    base = f"ws://127.0.0.1:{settings.simulator_port}/patients/"
    return [
        Source(id=pid, name=simulator_name(pid), url=base + pid)
        for pid in patient_ids(settings.simulator_patients)
    ]


def source_settings(settings: Settings, source: Source) -> Settings:
    """The settings that connect to and read ``source``'s service: for a patient of the sources
    file, ``settings`` with that patient's URL, name and options
    (:meth:`Source.upstream_settings`); for the one patient of ``upstream_url`` or a simulator
    of one patient, ``settings`` itself (the single patient of earlier versions, unchanged);
    for a patient of a simulated ward, its path on the simulator and its name."""
    if settings.sources:
        return settings.replace(**source.upstream_settings())
    if settings.upstream_url or settings.simulator_patients == 1:
        return settings
    return settings.replace(upstream_url=source.url, source_name=source.name)


def load_sources(path: str | os.PathLike[str]) -> list[Source]:
    """The patients of the sources file at ``path``, in file order. A relative ``ca_file`` is
    taken relative to the file's directory. Raises :class:`SourcesError`."""
    where = os.fspath(path)
    try:
        text = Path(where).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SourcesError(f"{where}: no such file") from None
    except OSError as exc:
        raise SourcesError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SourcesError(f"{where}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SourcesError(f"{where}: {_syntax_error(exc, text)}") from None
    return parse_sources(data, where, Path(where).parent)


def parse_sources(data: dict[str, Any], where: str, base: Path) -> list[Source]:
    """The patients of an already parsed sources file; ``where`` names it in errors and
    ``base`` is the directory relative ``ca_file`` paths start from."""
    for key in data:
        if key != "patient":
            raise SourcesError(
                f"{where}: unknown key {_key(key)} (the file holds [[patient]] tables)"
            )
    patients = data.get("patient")
    if not patients:
        raise SourcesError(f"{where}: no [[patient]] table")
    if not isinstance(patients, list) or not all(isinstance(p, dict) for p in patients):
        raise SourcesError(f"{where}: patient: expected [[patient]] tables, got {_kind(patients)}")
    sources: list[Source] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(patients, 1):
        source = _patient(table, f"{where}: patient #{index}", where, base, seen)
        seen[source.id] = index
        sources.append(source)
    return sources


def _patient(
    table: dict[str, Any], label: str, where: str, base: Path, seen: dict[str, int]
) -> Source:
    def fail(message: str) -> SourcesError:
        return SourcesError(f"{label}: {message}")

    if "id" not in table:
        raise fail('missing key "id"')
    patient_id = table["id"]
    if not isinstance(patient_id, str) or not ID_PATTERN.fullmatch(patient_id):
        shown = repr(patient_id) if isinstance(patient_id, str) else _kind(patient_id)
        raise fail(f"id: expected 1-32 letters, digits, _ or -, got {shown}")
    if patient_id in seen:
        raise fail(f'id: "{patient_id}" is already the id of patient #{seen[patient_id]}')
    label = f'{where}: patient "{patient_id}"'
    for key in table:
        if key not in KEYS:
            raise fail(f"unknown key {_key(key)}")
    if "url" not in table:
        raise fail('missing key "url"')
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key == "id":
            continue
        try:
            values[key] = _PARSERS[key](raw, base)
        except _UnknownKey as exc:
            raise fail(f"unknown key {_key(f'{key}.{exc}')}") from None
        except _FieldError as exc:
            raise fail(f"{key}.{_key(exc.sub, bare=True)}: {exc}") from None
        except ValueError as exc:
            raise fail(f"{key}: {exc}") from None
    try:
        check_path_params(values["url"], values.get("path_params", ()))
    except ValueError as exc:
        raise fail(f"path_params: {exc}") from None
    values.setdefault("name", patient_id)
    return Source(id=patient_id, **values)


def _key(key: str, *, bare: bool = False) -> str:
    """A key as messages show it: in double quotes, escaped so that the message stays one line
    (``bare``: without the quotes when it needs no escape)."""
    shown = json.dumps(key)
    return shown[1:-1] if bare and shown[1:-1] == key else shown


class _UnknownKey(ValueError):
    """A key a sub-table (``limits``) does not have; ``str(exc)`` is the key."""


class _FieldError(ValueError):
    """A problem with one entry (``sub``) of a table-valued field."""

    def __init__(self, sub: str, message: str) -> None:
        super().__init__(message)
        self.sub = sub


def _kind(value: Any) -> str:
    """The TOML type of a parsed value, for messages (never the value: it may be a secret)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, datetime | date | time):
        return "a date or time"
    return type(value).__name__


def _string(value: Any, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {what}, got {_kind(value)}")
    return value


def _table(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected {what}, got {_kind(value)}")
    return value


def _setting(name: str) -> Callable[[Any, Path], Any]:
    """The settings table's parser of ``name``, applied to a TOML string."""
    parse = BY_NAME[name].parse
    return lambda value, base: parse(_string(value))


def _name(value: Any, base: Path) -> str:
    text = _string(value).strip()
    if not text or len(text) > NAME_MAX:
        raise ValueError(f"expected 1-{NAME_MAX} characters, got {len(text)}")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise ValueError("expected one line of text without control characters")
    return text


def _url(value: Any, base: Path) -> str:
    text = _string(value)
    if any(unicodedata.category(c) == "Cc" for c in text.strip()):
        raise ValueError("expected a URL without control characters")
    return ws_url(text)


def _scalar_text(sub: str, value: Any) -> str:
    """A path or query parameter's value: a string, or an integer written as one."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _FieldError(sub, f"expected a string or an integer, got {_kind(value)}")


def _path_params(value: Any, base: Path) -> tuple[tuple[str, str], ...]:
    items = _table(value, "a table of placeholder names to values")
    out = []
    for name, item in items.items():
        try:
            out.append(pair(name, _scalar_text(name, item)))
        except _FieldError:
            raise
        except ValueError as exc:
            raise _FieldError(name, str(exc)) from None
    return tuple(out)


def _query(value: Any, base: Path) -> str:
    if isinstance(value, str):
        return str(BY_NAME["query"].parse(value))
    params = _path_params(_table(value, "a string (a=1&b=2) or a table"), base)
    return urlencode(params, quote_via=quote)


def _send(value: Any, base: Path) -> str:
    if isinstance(value, dict | list):
        try:
            return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError):
            raise ValueError(
                "a table or array is sent as JSON: it cannot hold dates, inf or nan"
            ) from None
    return str(BY_NAME["send"].parse(_string(value, "text, or a table or array (sent as JSON)")))


def _headers(value: Any, base: Path) -> tuple[tuple[str, str], ...]:
    items = _table(value, "a table of header names to values")
    out = []
    for name, item in items.items():
        if not isinstance(item, str):
            raise _FieldError(name, f"expected a string, got {_kind(item)}")
        try:
            out.append(header(name, item))
        except ValueError as exc:
            raise _FieldError(name, str(exc)) from None
    return tuple(out)


def _subprotocols(value: Any, base: Path) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(BY_NAME["subprotocols"].parse(value))
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"expected an array of strings, got {_kind(value)}")
    names = tuple(item.strip() for item in value)
    if not all(names):
        raise ValueError("expected an array of non-empty strings")
    return names


def _ca_file(value: Any, base: Path) -> str:
    text = _string(value).strip()
    if text:
        text = str(base / text) if not os.path.isabs(text) else text
    return str(BY_NAME["ca_file"].parse(text))


def _insecure(value: Any, base: Path) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_kind(value)}")
    return value


def _limits(value: Any, base: Path) -> Limits:
    items = _table(value, "a table ([patient.limits])")
    values: dict[str, int] = {}
    for name, item in items.items():
        if name not in LIMIT_ORDER:
            raise _UnknownKey(name)
        if not isinstance(item, int) or isinstance(item, bool):
            raise _FieldError(name, f"expected an integer (bpm), got {_kind(item)}")
        values[name] = item
    limits = Limits(**values)
    try:
        limits.check()
    except ValueError as exc:
        sub, sep, rest = str(exc).partition(": ")
        if sep and sub in LIMIT_ORDER:
            raise _FieldError(sub, rest) from None
        raise
    return limits


_PARSERS: dict[str, Callable[[Any, Path], Any]] = {
    "name": _name,
    "url": _url,
    "value_field": _setting("value_field"),
    "time_field": _setting("time_field"),
    "path_params": _path_params,
    "query": _query,
    "send": _send,
    "headers": _headers,
    "subprotocols": _subprotocols,
    "ca_file": _ca_file,
    "insecure": _insecure,
    "transform": _setting("transform"),
    "limits": _limits,
}


def _syntax_error(exc: tomllib.TOMLDecodeError, text: str) -> str:
    """``line 3, column 5: TOML syntax error: Expected '=' ...`` from tomllib's message (which
    says "at end of document" when the file ends too early: then the last line is named)."""
    message = str(exc)
    match = re.search(r" \(at line (\d+), column (\d+)\)$", message)
    if match:
        where = f"line {match[1]}, column {match[2]}"
        return f"{where}: TOML syntax error: {message[: match.start()]}"
    end = " (at end of document)"
    if message.endswith(end):
        lines = text.splitlines() or [""]
        where = f"line {len(lines)}, column {len(lines[-1]) + 1}"
        return f"{where} (end of file): TOML syntax error: {message.removesuffix(end)}"
    return f"TOML syntax error: {message}"


# -- writing a table back ---------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _toml_text(text: str) -> str:
    """A TOML literal string when ``text`` can be one (JSON reads better without escapes)."""
    if "'" in text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return _toml_string(text)
    return f"'{text}'"


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _inline_table(items: tuple[tuple[str, str], ...]) -> str:
    return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_string(v)}" for k, v in items) + " }"


def _has_url_secrets(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.username or parts.password or parts.query)


def _redact_query(query: str) -> str:
    return "&".join(f"{item.split('=', 1)[0]}={SECRET}" for item in query.split("&") if item)


def patient_table(source: Source, *, redact: bool = True) -> str:
    """``source`` as a ``[[patient]]`` table that :func:`load_sources` reads back to the same
    Source (options at their default are left out). With ``redact``, secrets are written as
    ``***`` with a comment saying so, as ``hrdash probe`` shows them: the URL's user:password
    and query values, the ``query`` option's values and every header value."""
    lines = ["[[patient]]", f"id = {_toml_string(source.id)}"]
    if source.name != source.id:
        lines.append(f"name = {_toml_string(source.name)}")
    url, query, headers = source.url, source.query, source.headers
    url_note = query_note = headers_note = ""
    if redact and _has_url_secrets(url):
        url = redact_url(url)
        url_note = "  # user:password and query values are not shown: put yours back"
    if redact and query:
        query = _redact_query(query)
        query_note = "  # query values are not shown: put yours back"
    if redact and headers:
        headers = tuple((name, SECRET) for name, _ in headers)
        headers_note = "  # header values are secret and not shown: put yours back"
    lines.append(f"url = {_toml_string(url)}{url_note}")
    for name in PER_SOURCE:
        value = getattr(source, name)
        if value == getattr(_DEFAULTS, name):
            continue
        if name == "path_params":
            lines.append(f"path_params = {_inline_table(value)}")
        elif name == "headers":
            lines.append(f"headers = {_inline_table(headers)}{headers_note}")
        elif name == "query":
            lines.append(f"query = {_toml_string(query)}{query_note}")
        elif name == "subprotocols":
            lines.append(f"subprotocols = [{', '.join(_toml_string(p) for p in value)}]")
        elif name == "send":
            lines.append(f"send = {_toml_text(value)}")
        elif name == "insecure":
            lines.append(f"insecure = {'true' if value else 'false'}")
        else:
            lines.append(f"{name} = {_toml_string(value)}")
    if source.limits != Limits():
        lines.append("[patient.limits]")
        lines.extend(f"{name} = {getattr(source.limits, name)}" for name in LIMIT_ORDER)
    return "\n".join(lines)
