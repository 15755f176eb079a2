"""HRDASH_SOURCES as a user meets it: the station's patients from the settings, and a bad sources
file (or one set together with HRDASH_UPSTREAM_URL) stopping `hrdash bridge`, `python app.py` and
gunicorn before they serve, with one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrdash.settings import SettingError, Settings
from hrdash.sources import UPSTREAM_PATIENT, source_settings, station_sources
from tests.conftest import free_port, timeout
from tests.support import ROOT, gunicorn_command
from tests.test_cli import assert_one_line_error, clean_env, hrdash

GOOD = '[[patient]]\nid = "bed-01"\nurl = "ws://127.0.0.1:9/"\n'

# Each bad file, and what its one line must name: the patient and the field.
BAD = {
    "unknown key": (
        f'{GOOD}[[patient]]\nid = "bed-02"\nurl = "ws://h/"\nvalue = "hr"\n',
        ['patient "bed-02"', '"value"'],
    ),
    "duplicate id": (
        f'{GOOD}[[patient]]\nid = "bed-01"\nurl = "ws://h/"\n',
        ["patient #2", "id", '"bed-01"'],
    ),
    "bad id": (
        f'{GOOD}[[patient]]\nid = "bed 2"\nurl = "ws://h/"\n',
        ["patient #2", "id", "'bed 2'"],
    ),
    "missing url": (
        f'{GOOD}[[patient]]\nid = "bed-02"\nname = "Bed 2"\n',
        ['patient "bed-02"', '"url"'],
    ),
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ward.toml"
    path.write_text(text)
    return path


# -- the station's patients from the settings ---------------------------------------------------


def test_station_sources_from_each_kind_of_settings(tmp_path: Path) -> None:
    """A sources file gives its patients in file order; an upstream URL gives one patient,
    patient-1, reading exactly that URL; neither gives the simulator's beds, each at its path on
    the simulator's port. Only the last uses the simulator."""
    path = write(tmp_path, GOOD + '[[patient]]\nid = "icu-2"\nname = "ICU 2"\nurl = "ws://h/"\n')
    from_file = Settings.load(env={"HRDASH_SOURCES": str(path)})
    assert [(s.id, s.name, s.url) for s in station_sources(from_file)] == [
        ("bed-01", "bed-01", "ws://127.0.0.1:9/"),
        ("icu-2", "ICU 2", "ws://h/"),
    ]
    assert not from_file.uses_simulator

    one = Settings.load(env={"HRDASH_UPSTREAM_URL": "ws://h/hr", "HRDASH_VALUE_FIELD": "d.hr"})
    [patient] = station_sources(one)
    assert (patient.id, patient.url, patient.value_field) == (UPSTREAM_PATIENT, "ws://h/hr", "d.hr")
    assert source_settings(one, patient) == one  # the one patient of old, unchanged
    assert not one.uses_simulator

    ward = Settings.load(env={"HRDASH_SIMULATOR_PATIENTS": "3", "HRDASH_SIMULATOR_PORT": "9100"})
    assert ward.uses_simulator
    beds = station_sources(ward)
    assert [(s.id, s.name, s.url) for s in beds] == [
        (f"bed-0{i}", f"Bed {i}", f"ws://127.0.0.1:9100/patients/bed-0{i}") for i in (1, 2, 3)
    ]
    assert source_settings(ward, beds[2]).effective_upstream_url == beds[2].url
    assert source_settings(ward, beds[2]).display_source == "Bed 3"


def test_each_patient_of_a_file_reads_with_its_own_options(tmp_path: Path) -> None:
    """A file's patient gets its own URL, name and options; an option its table leaves out is at
    its default, not inherited from the global settings."""
    text = GOOD + '[[patient]]\nid = "b"\nurl = "ws://h/"\nvalue_field = "data.hr"\n'
    settings = Settings.load(env={"HRDASH_SOURCES": str(write(tmp_path, text))})
    settings = settings.replace(time_field="global.ts")
    first, second = (source_settings(settings, s) for s in station_sources(settings))
    assert (first.effective_upstream_url, first.value_field, first.time_field) == (
        "ws://127.0.0.1:9/",
        "",
        "",
    )
    assert (second.display_source, second.value_field) == ("b", "data.hr")


def test_sources_and_upstream_url_together_are_refused(tmp_path: Path) -> None:
    """Both HRDASH_SOURCES and HRDASH_UPSTREAM_URL: a SettingError of one line naming both."""
    env = {"HRDASH_SOURCES": str(write(tmp_path, GOOD)), "HRDASH_UPSTREAM_URL": "ws://h/"}
    with pytest.raises(SettingError) as info:
        Settings.load(env=env)
    message = str(info.value)
    assert "\n" not in message
    assert "HRDASH_SOURCES" in message and "HRDASH_UPSTREAM_URL" in message


# -- the commands -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(BAD))
def test_bad_sources_file_stops_the_bridge(tmp_path: Path, case: str) -> None:
    """`hrdash bridge` with a bad sources file exits 2 with one line naming the file, the
    patient and the field, and never opens its port."""
    text, names = BAD[case]
    path = write(tmp_path, text)
    port = free_port()
    result = hrdash("bridge", env=clean_env(HRDASH_SOURCES=str(path), HRDASH_BRIDGE_PORT=str(port)))
    line = assert_one_line_error(result, str(path), *names)
    assert line.startswith(f"hrdash: error: {path}: patient ")


def test_bad_sources_file_stops_python_app(tmp_path: Path) -> None:
    """`python app.py` (hrdash run) with a bad sources file exits 2 with the file's one line,
    before starting the simulator, the bridge or the Dash server."""
    text, names = BAD["duplicate id"]
    path = write(tmp_path, text)
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=clean_env(HRDASH_SOURCES=str(path), HRDASH_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=timeout(30),
        stdin=subprocess.DEVNULL,
    )
    assert_one_line_error(result, str(path), *names)
    assert "open http" not in result.stdout


def test_missing_sources_file_stops_the_bridge(tmp_path: Path) -> None:
    """A sources file that does not exist: one line naming it, exit status 2."""
    path = tmp_path / "nowhere.toml"
    result = hrdash("bridge", "--sources", str(path))
    assert_one_line_error(result, str(path), "no such file")


@pytest.mark.parametrize("command", ["bridge", "run"])
def test_sources_and_upstream_url_together_stop_the_commands(tmp_path: Path, command: str) -> None:
    """`hrdash bridge` / `hrdash run` with both HRDASH_SOURCES and an upstream URL: one line
    naming both, exit status 2."""
    env = clean_env(HRDASH_SOURCES=str(write(tmp_path, GOOD)))
    result = hrdash(command, "--upstream-url", "ws://127.0.0.1:9/", env=env)
    assert_one_line_error(result, "HRDASH_SOURCES", "HRDASH_UPSTREAM_URL")


def test_bad_sources_file_stops_gunicorn(tmp_path: Path) -> None:
    """`gunicorn app:server` with a bad sources file exits 2 with the file's one line as its
    last line, without listening or starting the bridge."""
    text, names = BAD["missing url"]
    path = write(tmp_path, text)
    port = free_port()
    env = clean_env(
        HRDASH_SOURCES=str(path),
        HRDASH_PORT=str(port),
        HRDASH_BRIDGE_PORT=str(free_port()),
    )
    started = time.monotonic()
    result = subprocess.run(
        gunicorn_command(workers=1),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout(30),
        stdin=subprocess.DEVNULL,
    )
    log = result.stdout + result.stderr
    lines = [line for line in log.splitlines() if line.strip()]
    assert result.returncode == 2, log
    assert lines[-1].startswith(f"hrdash: error: {path}: "), log
    for name in names:
        assert name in lines[-1], log
    assert "Listening at" not in log and "Traceback" not in log, log
    assert time.monotonic() - started < timeout(30)


def test_probe_ignores_a_stations_sources_file(tmp_path: Path) -> None:
    """`hrdash probe URL` with HRDASH_SOURCES set probes the URL (here: refused, exit 1 with
    its one line) instead of refusing the two settings together."""
    env = clean_env(HRDASH_SOURCES=str(write(tmp_path, GOOD)))
    result = hrdash("probe", f"ws://127.0.0.1:{free_port()}/", "--timeout", "2", env=env)
    assert result.returncode == 1, result.stderr
    assert "HRDASH_SOURCES" not in result.stderr
    assert "connection refused" in result.stderr


def test_a_patients_transform_that_cannot_load_stops_the_bridge(tmp_path: Path) -> None:
    """A patient whose transform hook cannot be imported: `hrdash bridge` exits 2 with one line
    naming the file, the patient and the field, before it serves."""
    text = GOOD + '[[patient]]\nid = "b2"\nurl = "ws://h/"\ntransform = "no_such_hooks:hr"\n'
    path = write(tmp_path, text)
    port = str(free_port())
    result = hrdash("bridge", env=clean_env(HRDASH_SOURCES=str(path), HRDASH_BRIDGE_PORT=port))
    line = assert_one_line_error(result, "no_such_hooks")
    assert line.startswith(f'hrdash: error: {path}: patient "b2": transform: '), line


def test_start_line_names_the_station_or_the_source() -> None:
    """`python app.py`'s start-up line says how many patients a station watches, and names the
    one source otherwise."""
    from hrdash.runner import start_line

    ward = Settings.load(env={"HRDASH_SIMULATOR_PATIENTS": "3", "HRDASH_DB": ":memory:"})
    assert start_line(ward) == "station of 3 patients from Embedded simulator; history: off"
    kept = Path("hrdash.db").resolve()
    assert start_line(Settings.load(env={})) == f"source: Embedded simulator; history: {kept}"
