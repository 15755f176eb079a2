"""hrdash.sources: the sources file (one [[patient]] table per patient), its one-line errors,
alarm limits, and the table ``hrdash probe`` prints, read back by ``load_sources``."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from hrdash.probe import receive_frames
from hrdash.settings import SettingError, Settings
from hrdash.sources import (
    PER_SOURCE,
    SECRET,
    Limits,
    Source,
    SourcesError,
    load_sources,
    patient_table,
)
from hrdash.upstream import connect_options
from tests.conftest import ServiceFactory, Tls
from tests.test_probe import BODY, POINTS, frames_of, probe, strict_service


def write(tmp_path: Path, text: str, name: str = "sources.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


FULL = """
# a ward of three, each shape of option
[[patient]]
id = "bed-01"
name = "Bed 1"
url = "wss://vitals.example.org/patients/{patient}/hr?ward=3"
value_field = "data.hr"
time_field = "data.ts"
path_params = { patient = 7 }
query = { format = "json", "unit name" = "beats/min" }
send = { action = "subscribe", stream = "hr" }
headers = { Authorization = "Bearer t0k", X-Api-Key = "k-123" }
subprotocols = ["hr.v1", "hr.v0"]
ca_file = "ca.pem"
transform = "myhooks:heart_rate"
[patient.limits]
low = 45
high = 130
extreme_low = 35
extreme_high = 160

[[patient]]
id = "bed_02"
url = "ws://127.0.0.1:9000/"
query = "a=1&b=2"
send = "subscribe hr"
subprotocols = "x.v1, x.v2"
insecure = true
[patient.limits]
high = 110

[[patient]]
id = "ICU-3"
name = "  Intensive care 3  "
url = "ws://10.0.0.3/stream"
headers = {}
"""


def test_full_valid_file(tmp_path: Path) -> None:
    """Every key, in each of its accepted forms, is read into the Source it describes: tables
    become the settings' tuples, a query table is percent-encoded, a send table is compact JSON,
    a relative ca_file is taken from the file's directory, limits left out keep their default."""
    (tmp_path / "ca.pem").write_text("not checked here")
    sources = load_sources(write(tmp_path, FULL))
    assert sources == [
        Source(
            id="bed-01",
            name="Bed 1",
            url="wss://vitals.example.org/patients/{patient}/hr?ward=3",
            value_field="data.hr",
            time_field="data.ts",
            path_params=(("patient", "7"),),
            query="format=json&unit%20name=beats%2Fmin",
            send='{"action":"subscribe","stream":"hr"}',
            headers=(("Authorization", "Bearer t0k"), ("X-Api-Key", "k-123")),
            subprotocols=("hr.v1", "hr.v0"),
            ca_file=str(tmp_path / "ca.pem"),
            transform="myhooks:heart_rate",
            limits=Limits(low=45, high=130, extreme_low=35, extreme_high=160),
        ),
        Source(
            id="bed_02",
            name="bed_02",
            url="ws://127.0.0.1:9000/",
            query="a=1&b=2",
            send="subscribe hr",
            subprotocols=("x.v1", "x.v2"),
            insecure=True,
            limits=Limits(high=110),
        ),
        Source(id="ICU-3", name="Intensive care 3", url="ws://10.0.0.3/stream"),
    ]


def test_upstream_settings_feed_todays_upstream_code(tmp_path: Path, tls: Tls) -> None:
    """A Source's upstream settings, given to Settings.replace, make the URL, the handshake
    options and the mapping exactly as the same values given as HRDASH_* settings would; an
    option the table leaves out is at its default, not inherited from the global settings."""
    (tmp_path / "ca.pem").write_text(Path(tls.ca_file).read_text())
    first, second, _ = load_sources(write(tmp_path, FULL))
    assert set(first.upstream_settings()) == {"upstream_url", "source_name", *PER_SOURCE}
    settings = Settings().replace(**first.upstream_settings())
    assert settings.effective_upstream_url == (
        "wss://vitals.example.org/patients/7/hr?ward=3&format=json&unit%20name=beats%2Fmin"
    )
    assert settings.display_source == "Bed 1"
    assert (settings.value_field, settings.time_field) == ("data.hr", "data.ts")
    as_env = Settings.load(
        env={
            "HRDASH_UPSTREAM_URL": first.url,
            "HRDASH_PATH_PARAMS": "patient=7",
            "HRDASH_HEADERS": json.dumps(dict(first.headers)),
            "HRDASH_SUBPROTOCOLS": "hr.v1,hr.v0",
        }
    )
    options = connect_options(settings)
    assert options["additional_headers"] == connect_options(as_env)["additional_headers"]
    assert options["subprotocols"] == ["hr.v1", "hr.v0"]
    global_settings = Settings.load(env={"HRDASH_VALUE_FIELD": "x.y", "HRDASH_HEADERS": "A: b"})
    plain = global_settings.replace(**second.upstream_settings())
    assert (plain.value_field, plain.headers, plain.insecure) == ("", (), True)


def test_sixty_four_patients(tmp_path: Path) -> None:
    """A ward of 64 patients loads in file order, each with its own id, URL and name."""
    tables = [
        f'[[patient]]\nid = "bed-{i:02d}"\nname = "Bed {i}"\nurl = "ws://127.0.0.1:8766/patients/bed-{i:02d}"\n'
        for i in range(1, 65)
    ]
    sources = load_sources(write(tmp_path, "\n".join(tables)))
    assert [s.id for s in sources] == [f"bed-{i:02d}" for i in range(1, 65)]
    assert sources[63].url == "ws://127.0.0.1:8766/patients/bed-64"
    assert sources[63].name == "Bed 64"
    assert len({s.url for s in sources}) == 64


# -- one-line errors ---------------------------------------------------------------------------

P1 = '[[patient]]\nid = "bed-01"\nurl = "ws://h/"\n'


def patient(body: str, pid: str = "bed-02") -> str:
    """A file: a good first patient, then ``pid`` with ``body``."""
    return f'{P1}\n[[patient]]\nid = "{pid}"\n{body}\n'


BAD: dict[str, tuple[str, str]] = {
    "unknown key": (
        patient('url = "ws://h/"\nvalu_field = "hr"'),
        'patient "bed-02": unknown key "valu_field"',
    ),
    "duplicate id": (
        patient('url = "ws://h/"', pid="bed-01"),
        'patient #2: id: "bed-01" is already the id of patient #1',
    ),
    "bad id": (
        patient('url = "ws://h/"', pid="bed 02"),
        "patient #2: id: expected 1-32 letters, digits, _ or -, got 'bed 02'",
    ),
    "id too long": (
        patient('url = "ws://h/"', pid="b" * 33),
        f"patient #2: id: expected 1-32 letters, digits, _ or -, got '{'b' * 33}'",
    ),
    "id not a string": (
        f'{P1}[[patient]]\nid = 2\nurl = "ws://h/"\n',
        "patient #2: id: expected 1-32 letters, digits, _ or -, got an integer",
    ),
    "missing id": (f'{P1}[[patient]]\nurl = "ws://h/"\n', 'patient #2: missing key "id"'),
    "missing url": (patient('name = "Bed 2"'), 'patient "bed-02": missing key "url"'),
    "http url": (
        patient('url = "http://h/"'),
        "patient \"bed-02\": url: expected a ws:// or wss:// URL, got 'http://h/'",
    ),
    "empty url": (
        patient('url = ""'),
        "patient \"bed-02\": url: expected a ws:// or wss:// URL, got ''",
    ),
    "url not a string": (
        patient("url = 8765"),
        'patient "bed-02": url: expected a string, got an integer',
    ),
    "value_field wrong type": (
        patient('url = "ws://h/"\nvalue_field = ["hr"]'),
        'patient "bed-02": value_field: expected a string, got an array',
    ),
    "value_field bad path": (
        patient('url = "ws://h/"\nvalue_field = "data..hr"'),
        'patient "bed-02": value_field: expected a dotted path such as data.hr or '
        "readings.0.value, got 'data..hr'",
    ),
    "headers as a string": (
        patient('url = "ws://h/"\nheaders = "X-Api-Key: k"'),
        'patient "bed-02": headers: expected a table of header names to values, got a string',
    ),
    "header value not a string": (
        patient('url = "ws://h/"\nheaders = { X-Pin = 1234 }'),
        'patient "bed-02": headers.X-Pin: expected a string, got an integer',
    ),
    "header name": (
        patient('url = "ws://h/"\nheaders = { "X Key" = "k" }'),
        "patient \"bed-02\": headers.X Key: invalid header 'X Key'",
    ),
    "path_params value": (
        patient('url = "ws://h/{bed}"\npath_params = { bed = true }'),
        'patient "bed-02": path_params.bed: expected a string or an integer, got a boolean',
    ),
    "path_params missing": (
        patient('url = "ws://h/{bed}/{unit}"\npath_params = { bed = 2 }'),
        'patient "bed-02": path_params: the upstream URL needs a value for unit',
    ),
    "path_params without placeholder": (
        patient('url = "ws://h/"\npath_params = { bed = 2 }'),
        'patient "bed-02": path_params: the upstream URL has no {bed} placeholder',
    ),
    "query wrong type": (
        patient('url = "ws://h/"\nquery = 3'),
        'patient "bed-02": query: expected a string (a=1&b=2) or a table, got an integer',
    ),
    "query string": (
        patient('url = "ws://h/"\nquery = "a=1&flag"'),
        "patient \"bed-02\": query: expected name=value pairs separated by &, got 'flag'",
    ),
    "query table value": (
        patient('url = "ws://h/"\nquery = { a = 1.5 }'),
        'patient "bed-02": query.a: expected a string or an integer, got a float',
    ),
    "send with nan": (
        patient('url = "ws://h/"\nsend = { rate = nan }'),
        'patient "bed-02": send: a table or array is sent as JSON: it cannot hold dates, inf or '
        "nan",
    ),
    "send wrong type": (
        patient('url = "ws://h/"\nsend = 1'),
        'patient "bed-02": send: expected text, or a table or array (sent as JSON), got an integer',
    ),
    "subprotocols": (
        patient('url = "ws://h/"\nsubprotocols = ["a", 2]'),
        'patient "bed-02": subprotocols: expected an array of strings, got an array',
    ),
    "insecure as a string": (
        patient('url = "ws://h/"\ninsecure = "yes"'),
        'patient "bed-02": insecure: expected true or false, got a string',
    ),
    "ca_file missing": (
        patient('url = "wss://h/"\nca_file = "/nonexistent/ca.pem"'),
        "patient \"bed-02\": ca_file: no such file: '/nonexistent/ca.pem'",
    ),
    "transform": (
        patient('url = "ws://h/"\ntransform = "myhooks.heart_rate"'),
        "patient \"bed-02\": transform: expected package.module:function, got 'myhooks.heart_rate'",
    ),
    "name empty": (
        patient('url = "ws://h/"\nname = " "'),
        'patient "bed-02": name: expected 1-64 characters, got 0',
    ),
    "name two lines": (
        patient('url = "ws://h/"\nname = "Bed\\n2"'),
        'patient "bed-02": name: expected one line of text without control characters',
    ),
    "limits unknown key": (
        patient('url = "ws://h/"\n[patient.limits]\nhgh = 130'),
        'patient "bed-02": unknown key "limits.hgh"',
    ),
    "limits not integer": (
        patient('url = "ws://h/"\n[patient.limits]\nhigh = 130.5'),
        'patient "bed-02": limits.high: expected an integer (bpm), got a float',
    ),
    "limits out of range": (
        patient('url = "ws://h/"\n[patient.limits]\nextreme_high = 301'),
        'patient "bed-02": limits.extreme_high: expected 20-300 bpm, got 301',
    ),
    "limits out of order": (
        patient('url = "ws://h/"\n[patient.limits]\nlow = 35'),
        'patient "bed-02": limits.low: expected more than extreme_low (40), got 35',
    ),
    "limits not a table": (
        patient('url = "ws://h/"\nlimits = 50'),
        'patient "bed-02": limits: expected a table ([patient.limits]), got an integer',
    ),
    "syntax": (
        f'{P1}[[patient]]\nid = "bed-02"\nurl "ws://h/"\n',
        "line 6, column 5: TOML syntax error: Expected '=' after a key in a key/value pair",
    ),
    "repeated key": (
        f'{P1}[[patient]]\nid = "bed-02"\nurl = "ws://h/"\nurl = "ws://i/"\n',
        "line 7, column 16: TOML syntax error: Cannot overwrite a value",
    ),
    "file ends in a string": (
        '[[patient]]\nid = "bed-01"\nurl = "ws://h/',
        "line 3, column 15 (end of file): TOML syntax error: Unterminated string",
    ),
    "key with a newline": (
        patient('url = "ws://h/"\n"valu\\nfield" = "hr"'),
        'patient "bed-02": unknown key "valu\\nfield"',
    ),
    "header name with a newline": (
        patient('url = "ws://h/"\nheaders = { "X\\nY" = "k" }'),
        'patient "bed-02": headers."X\\nY": invalid header \'X\\nY\'',
    ),
    "url with a newline": (
        patient('url = "ws://h/a\\nb"'),
        'patient "bed-02": url: expected a URL without control characters',
    ),
    "no patient": ("# nothing yet\n", "no [[patient]] table"),
    "empty patient array": ("patient = []\n", "no [[patient]] table"),
    "one table, not an array": (
        '[patient]\nid = "bed-01"\nurl = "ws://h/"\n',
        "patient: expected [[patient]] tables, got a table",
    ),
    "unknown top-level key": (
        f'{P1}[[patients]]\nid = "bed-02"\n',
        'unknown key "patients" (the file holds [[patient]] tables)',
    ),
}


def one_line(path: Path) -> str:
    with pytest.raises(SourcesError) as info:
        load_sources(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message


@pytest.mark.parametrize("case", list(BAD))
def test_bad_file_is_one_line_naming_file_patient_and_field(tmp_path: Path, case: str) -> None:
    """Each bad file raises SourcesError (a SettingError: exit status 2 once wired) with exactly
    this one line: the file, then the patient (id, or #index while the id is unknown or taken),
    then the field and what it accepts."""
    text, expected = BAD[case]
    path = write(tmp_path, text)
    assert one_line(path) == f"{path}: {expected}"
    assert issubclass(SourcesError, SettingError)


def test_missing_and_unreadable_file(tmp_path: Path) -> None:
    """A file that is not there, a directory and bytes that are not UTF-8: one line each."""
    assert one_line(tmp_path / "none.toml") == f"{tmp_path / 'none.toml'}: no such file"
    assert one_line(tmp_path) == f"{tmp_path}: cannot read it: Is a directory"
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'[[patient]]\nid = "\xff"\n')
    assert one_line(binary) == f"{binary}: not UTF-8 text"


def test_errors_never_show_a_header_value(tmp_path: Path) -> None:
    """Header values are secret: a bad one is named by its header, never quoted."""
    for body in ('headers = { Authorization = "Bearer s3cret\\nX: y" }', "headers = 1"):
        message = one_line(write(tmp_path, patient(f'url = "ws://h/"\n{body}')))
        assert "s3cret" not in message and message.count("headers") == 1


# -- limits ------------------------------------------------------------------------------------


def test_limits_defaults(tmp_path: Path) -> None:
    """Without [patient.limits] a patient has the adult defaults 40 < 50 < 120 < 150; with some
    of them, the others keep their default."""
    assert Limits() == Limits(low=50, high=120, extreme_low=40, extreme_high=150)
    text = patient('url = "ws://h/"\n[patient.limits]\nlow = 55\nextreme_high = 170')
    first, second = load_sources(write(tmp_path, text))
    assert first.limits == Limits()
    assert second.limits == Limits(low=55, high=120, extreme_low=40, extreme_high=170)


@pytest.mark.parametrize(
    ("limits", "ok"),
    [
        ((20, 21, 299, 300), True),  # the whole range, each limit one above the last
        ((19, 50, 120, 150), False),
        ((40, 50, 120, 301), False),
        ((50, 50, 120, 150), False),  # extreme_low == low
        ((40, 120, 120, 150), False),  # low == high
        ((40, 50, 150, 150), False),  # high == extreme_high
        ((40, 130, 120, 150), False),
        ((40, 50, 160, 150), False),
    ],
)
def test_limits_range_and_order(tmp_path: Path, limits: tuple[int, ...], ok: bool) -> None:
    """extreme_low < low < high < extreme_high, each within 20-300 bpm, or one line naming
    limits."""
    names = ("extreme_low", "low", "high", "extreme_high")
    body = "\n".join(f"{n} = {v}" for n, v in zip(names, limits, strict=True))
    path = write(tmp_path, patient(f'url = "ws://h/"\n[patient.limits]\n{body}'))
    if ok:
        assert load_sources(path)[1].limits == Limits(**dict(zip(names, limits, strict=True)))
    else:
        assert one_line(path).startswith(f'{path}: patient "bed-02": limits')


# -- writing a table, and reading it back --------------------------------------------------------

TRICKY = Source(
    id="bed-7",
    name='Bed "7" \\ east — ü',
    url="wss://user:pw@vitals.example.org/p/{patient id}/hr?token=abc",
    value_field="readings.*.hr",
    time_field="readings.*.t",
    path_params=(("patient id", "7/b"),),
    query="unit=bpm&key=s3cret",
    send='{"op": "sub", "note": "it\'s"}\n',
    headers=(("Authorization", "Bearer t0ps3cret"), ("X-Api-Key", "k-123")),
    subprotocols=("hr.v1",),
    ca_file="",
    insecure=True,
    transform="myhooks:heart_rate",
    limits=Limits(low=45, high=125, extreme_low=35, extreme_high=155),
)


def test_table_round_trip_of_every_option(tmp_path: Path) -> None:
    """patient_table(source, redact=False) is read back by load_sources to the same Source,
    whatever the strings hold (quotes, backslashes, newlines, non-ASCII, keys to quote)."""
    ca_file = tmp_path / "certs" / "ca.pem"
    ca_file.parent.mkdir()
    ca_file.write_text("")
    source = dataclasses.replace(TRICKY, ca_file=str(ca_file))
    text = patient_table(source, redact=False)
    assert load_sources(write(tmp_path, text)) == [source]
    minimal = Source(id="p", name="p", url="ws://h/")
    assert patient_table(minimal) == '[[patient]]\nid = "p"\nurl = "ws://h/"'
    assert load_sources(write(tmp_path, patient_table(minimal))) == [minimal]


def test_redacted_table_round_trip_hides_every_secret(tmp_path: Path) -> None:
    """With redact (probe's way), the URL's password and query values, the query option's
    values and header values are *** (with a note on the line), and the table still loads, to
    the same Source with those placeholders."""
    source = TRICKY
    text = patient_table(source)
    for secret in ("pw", "abc", "s3cret", "t0ps3cret", "k-123", "bpm"):
        assert secret not in text, secret
    notes = [line for line in text.splitlines() if "put yours back" in line]
    assert [line.split(" =")[0] for line in notes] == ["url", "query", "headers"]
    (loaded,) = load_sources(write(tmp_path, text))
    assert loaded == dataclasses.replace(
        source,
        url=f"wss://{SECRET}@vitals.example.org/p/{{patient id}}/hr?token={SECRET}",
        query=f"unit={SECRET}&key={SECRET}",
        headers=(("Authorization", SECRET), ("X-Api-Key", SECRET)),
    )


# -- hrdash probe prints a table that loads back -------------------------------------------------

# The strict service of the probe tests: it answers only a client with every option right.


def printed_table(out: str) -> str:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Sources file entry"))
    return "\n".join(lines[start + 1 :]) + "\n"


async def test_probe_table_loads_back_and_reads_the_service(
    services: ServiceFactory, tmp_path: Path
) -> None:
    """`hrdash probe URL` with every option prints a [[patient]] table holding the inferred
    mapping and the options given, secrets as ***; load_sources reads it to exactly that, and
    once the user puts the secrets back, the Source's settings connect to the real service
    (which serves only a client with every option right)."""
    shape = [{"pulse": {"bpm": v, "at": t}} for t, v in POINTS]
    service = await services(
        frames_of(shape), subprotocols=["hr.v1"], first_wait=1.0, require=strict_service
    )
    url = f"ws://127.0.0.1:{service.port}/patients/{{patient}}/hr?ward=3"
    result = await probe(
        url,
        "--path-params",
        "patient=7",
        "--query",
        "format=json",
        "--headers",
        "X-Api-Key: k-123",
        "--subprotocols",
        "hr.v1",
        "--send",
        BODY,
    )
    assert result.status == 0, result.err
    assert "k-123" not in result.out and "format=json" not in result.out
    table = printed_table(result.out)
    (printed,) = load_sources(write(tmp_path, table))
    assert printed == Source(
        id="patient-1",
        name="patient-1",
        url=f"ws://127.0.0.1:{service.port}/patients/{{patient}}/hr?ward={SECRET}",
        value_field="pulse.bpm",
        time_field="pulse.at",
        path_params=(("patient", "7"),),
        query=f"format={SECRET}",
        send=BODY,
        headers=(("X-Api-Key", SECRET),),
        subprotocols=("hr.v1",),
    )
    filled = (
        table.replace("ward=***", "ward=3")
        .replace('"format=***"', '"format=json"')
        .replace('X-Api-Key = "***"', 'X-Api-Key = "k-123"')
    )
    (source,) = load_sources(write(tmp_path, filled))
    settings = Settings().replace(**source.upstream_settings())
    frames = await receive_frames(settings, 2, 5)
    assert [json.loads(f) for f in frames] == shape[:2]
    assert strict_service(service.seen[-1])


def relative_path(path: str) -> str:
    relative = os.path.relpath(path)
    assert not os.path.isabs(relative)
    return relative


async def test_probe_table_keeps_tls_options(
    services: ServiceFactory, tls: Tls, tmp_path: Path
) -> None:
    """A probe with --ca-file (relative to where probe runs) prints it as an absolute path, so
    the table loads from any directory and verifies the service's certificate."""
    service = await services(ssl_context=tls.server)
    relative = relative_path(tls.ca_file)  # the probe runs in this process's directory
    result = await probe(service.url, "--ca-file", relative, env={"HRDASH_SOURCE_NAME": "Bed 9"})
    assert result.status == 0, result.err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (source,) = load_sources(write(elsewhere, printed_table(result.out)))
    assert (source.url, source.ca_file, source.name) == (service.url, tls.ca_file, "Bed 9")
    frames = await receive_frames(Settings().replace(**source.upstream_settings()), 1, 5)
    assert len(frames) == 1


async def test_probe_without_a_mapping_prints_no_table(tmp_path: Path) -> None:
    """A sample without a service URL: no table (it has no url); no heart-rate field: no table
    (exit 3)."""
    sample = tmp_path / "sample.jsonl"
    sample.write_text(
        '{"time": 1764324000000, "value": 72}\n{"time": 1764324000500, "value": 75}\n'
    )
    without_url = await probe("--sample", str(sample))
    assert without_url.status == 0, without_url.err
    assert "Sources file entry" not in without_url.out
    with_url = await probe("--sample", str(sample), env={"HRDASH_UPSTREAM_URL": "ws://hr.example/"})
    assert load_sources(write(tmp_path, printed_table(with_url.out))) == [
        Source(
            id="patient-1",
            name="patient-1",
            url="ws://hr.example/",
            value_field="value",
            time_field="time",
        )
    ]
    sample.write_text('{"note": "hello"}\n{"note": "again"}\n')
    nothing = await probe("--sample", str(sample), env={"HRDASH_UPSTREAM_URL": "ws://hr.example/"})
    assert nothing.status == 3 and "[[patient]]" not in nothing.out
