"""The README is the documentation people follow: it must match the code and CI."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from hrdash import callbacks
from hrdash.settings import SETTINGS
from hrdash.webapp import create_app
from tests.support import ROOT, routed

README = (ROOT / "README.md").read_text()


def _code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _settings_table() -> list[list[str]]:
    """The README's settings table: one list of cells per row, below its header row."""
    lines = README.splitlines()
    header = lines.index("| variable | flag | default | meaning |")
    assert lines[header + 1].startswith("|---"), "the settings table lost its separator row"
    rows = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def test_every_setting_is_in_the_readme_table_with_its_default() -> None:
    """The README's settings table has one row per setting, in the code's order, whose variable,
    flag and default cells are exactly the code's (the default as the code writes it, or
    "empty"), and it documents nothing the code lacks."""
    rows = _settings_table()
    assert all(len(row) == 4 for row in rows), [row for row in rows if len(row) != 4]
    assert [row[0] for row in rows] == [f"`{s.env}`" for s in SETTINGS]
    for setting, (_, flag, default, meaning) in zip(SETTINGS, rows, strict=True):
        assert flag == f"`{setting.flag}`", setting.env
        expected = f"`{setting.default}`" if setting.default else "empty"
        assert default == expected, f"README default of {setting.env} differs from the code"
        assert meaning, f"README gives no meaning for {setting.env}"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """.ci/run runs the README's test command unchanged."""
    blocks = _code_blocks("bash")
    test_commands = [b.strip() for b in blocks if "pytest" in b]
    assert len(test_commands) == 1, test_commands
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_commands[0] in ci


def test_readme_run_command_starts_app_py() -> None:
    """The README's run command installs the package and runs app.py."""
    runs = [b.strip() for b in _code_blocks("bash") if b.strip().endswith("python app.py")]
    assert runs and "pip install -e ." in runs[0]


def test_readme_callback_module_example_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's callback-module example, dropped into hrdash/callbacks, adds its component and
    its callback to the app."""
    example = next(b for b in _code_blocks("python") if "def register(app, settings)" in b)
    (tmp_path / "note.py").write_text(example)
    monkeypatch.setattr(callbacks, "__path__", [*callbacks.__path__, str(tmp_path)])
    try:
        app = create_app()
        layout = routed(app.server.test_client(), "/")["layout"]
        assert "note-input" in json.dumps(layout)
        assert any("note-echo.children" in key for key in app.callback_map)
    finally:
        sys.modules.pop("hrdash.callbacks.note", None)


def test_readme_transform_hook_example_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's transform hook, loaded by name, turns its documented frames into readings
    and skips the others (counted)."""
    from hrdash.readings import Reading, Rejected
    from hrdash.upstream import FrameReader, load_transform

    example = next(b for b in _code_blocks("python") if "def heart_rate(frame)" in b)
    (tmp_path / "myhooks.py").write_text(example)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        reader = FrameReader(transform=load_transform("myhooks:heart_rate"))
        items = [{"k": "HR", "v": 72}, {"k": "SpO2", "v": 98}]
        frame = json.dumps({"type": "vitals", "at": 1764324000, "items": items})
        assert reader.feed(frame, 1, now=0) == [Reading(1_764_324_000_000, 72)]
        skipped = reader.feed('{"type": "ping"}', 2, now=0)
        assert [r.reason for r in skipped if isinstance(r, Rejected)] == ["transform_skipped"]
    finally:
        sys.modules.pop("myhooks", None)
