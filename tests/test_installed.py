"""hrdash as a user installs it: a wheel built from this tree (offline, with this venv's
setuptools), installed with ``pip install --no-deps --target`` (not editable), run from another
directory with ``hrdash run`` and with gunicorn; the page must work in a real headless Chromium.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import timeout
from tests.support import ROOT, Running, chromium_page, hrdash_running, poll, watch

pytestmark = pytest.mark.browser

# What a build needs from the tree; everything else (venv, caches, tests, benchmarks) stays out.
NOT_BUILT = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".hypothesis",
    ".*_cache",
    "tests",
    "benchmarks",
    "tmp",
)

PAGE_JS = """
(ids) => ({
  status: document.getElementById(ids.status)?.textContent.trim() ?? '',
  bpm: document.getElementById(ids.bpm)?.textContent.trim() ?? '',
  rows: [...document.querySelectorAll(`#${ids.table} .ag-center-cols-container .ag-row`)]
    .map((row) => row.querySelector('[col-id="bpm"]')?.textContent.trim()),
})
"""


@dataclass
class Installed:
    target: Path  # what ``pip install --target`` filled; goes on PYTHONPATH
    elsewhere: Path  # an empty working directory, far from the source tree

    @property
    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.target)}


def pip(*args: str | Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout(300),
    )
    assert result.returncode == 0, f"pip {args[0]} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of the tree (the checkout stays clean) with no
    network: no build isolation, no index."""
    source = tmp_path_factory.mktemp("source") / "hrdash"
    shutil.copytree(ROOT, source, ignore=NOT_BUILT)
    out = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", out, source)
    (built,) = out.glob("hrdash-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel installed into a directory of its own (dependencies come from this venv)."""
    target = tmp_path_factory.mktemp("site")
    pip("install", "--no-deps", "--no-index", "-q", "--target", target, wheel)
    return Installed(target, tmp_path_factory.mktemp("elsewhere"))


def test_wheel_ships_the_assets_but_not_the_screenshots(wheel: Path) -> None:
    """The wheel holds every script and style of assets/ under hrdash/assets/, the gunicorn
    config and WSGI modules, and no screenshot."""
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"hrdash/assets/{path.name}"
        for path in (ROOT / "assets").iterdir()
        if path.suffix in (".js", ".css")
    }
    assert {"hrdash/assets/hrdash.js", "hrdash/assets/hrdash.css"} <= shipped
    assert shipped <= names, sorted(shipped - names)
    assert {"hrdash/gunicorn_conf.py", "hrdash/wsgi.py", "hrdash/pages/station.py"} <= names
    assert not [name for name in names if "screenshot" in name or name.endswith(".png")]


def test_installed_package_is_the_one_imported(installed: Installed) -> None:
    """From the other directory with PYTHONPATH=<target>, `hrdash` and its assets come from the
    installed copy, not from the source tree (so the page tests below test the wheel)."""
    code = "import hrdash, hrdash.webapp; print(hrdash.__file__); print(hrdash.webapp.ASSETS)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=installed.elsewhere,
        env={**os.environ, **installed.env},
        capture_output=True,
        text=True,
        timeout=timeout(60),
        check=True,
    )
    module, assets = result.stdout.split()
    assert Path(module).is_relative_to(installed.target), module
    assert Path(assets) == installed.target / "hrdash" / "assets"
    assert (Path(assets) / "hrdash.js").is_file()


def check_live_page(running: Running) -> None:
    """The page loads with no console error, says Live, and shows readings in the current card
    and in the table."""
    running.wait_readings(3, timeout=timeout(30))
    with chromium_page() as page:
        _, errors = watch(page)
        page.goto(running.url)
        ids = {"status": "hr-status", "bpm": "hr-current-bpm", "table": "hr-table"}

        def live(shown: dict[str, Any]) -> bool:
            return (
                "Live" in shown["status"]
                and shown["bpm"].isdigit()
                and len(shown["rows"]) >= 3
                and all(str(bpm).isdigit() for bpm in shown["rows"])
            )

        poll(page, lambda p: p.evaluate(PAGE_JS, ids), live, timeout(20), "a live page")
        assert errors == [], errors


@pytest.fixture
def hrdash_command(installed: Installed) -> list[str]:
    """`hrdash run` as pip installed it into <target>/bin."""
    script = installed.target / "bin" / "hrdash"
    assert script.is_file(), sorted(p.name for p in (installed.target / "bin").iterdir())
    return [str(script), "run"]


def test_installed_hrdash_run_serves_the_live_page(
    installed: Installed, hrdash_command: list[str]
) -> None:
    """`hrdash run` from the installed wheel, started in another directory: a live page."""
    with hrdash_running(hrdash_command, installed.env, cwd=installed.elsewhere) as running:
        check_live_page(running)


@pytest.fixture
def installed_gunicorn(installed: Installed) -> Iterator[Running]:
    command = [
        *(sys.executable, "-m", "gunicorn", "-w", "2"),
        *("-c", "python:hrdash.gunicorn_conf", "hrdash.wsgi:server"),
    ]
    with hrdash_running(command, installed.env, cwd=installed.elsewhere) as running:
        yield running


def test_installed_gunicorn_serves_the_live_page(installed_gunicorn: Running) -> None:
    """`gunicorn -c python:hrdash.gunicorn_conf hrdash.wsgi:server` (the README's command for an
    installed package) from another directory: one bridge, one simulator, a live page."""
    bridge = installed_gunicorn.child("bridge")
    assert bridge.cmdline()[-2:] == ["hrdash", "bridge"]
    installed_gunicorn.child("simulate")
    check_live_page(installed_gunicorn)
