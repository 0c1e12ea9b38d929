"""`stackops lab …`: the lab is its own distribution (stackops-lab, lab/); the operator finds its command through the
entry point the lab declares, and without the lab says how to get it."""
from __future__ import annotations

from importlib.metadata import EntryPoint, EntryPoints, entry_points

import pytest

from stackops import cli, plugins

CALLS: list[list[str]] = []


def fake_lab_main(argv: list[str]) -> int:
    CALLS.append(argv)
    return 7


def installed(monkeypatch: pytest.MonkeyPatch, *found: EntryPoint) -> None:
    def lookup(**selection: str) -> EntryPoints:
        assert selection == {"group": plugins.GROUP, "name": "lab"}
        return EntryPoints(found)

    monkeypatch.setattr(plugins, "entry_points", lookup)


def test_without_the_lab_stackops_lab_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    installed(monkeypatch)
    assert cli.main(["lab", "up", "--hosts", "2"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("stackops lab: not installed; it is the distribution stackops-lab")
    assert "`pip install -e lab/`" in captured.err and "`make venv`" in captured.err
    assert "Traceback" not in captured.err


def test_stackops_lab_runs_the_command_of_the_lab_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    CALLS.clear()
    installed(monkeypatch, EntryPoint("lab", f"{__name__}:fake_lab_main", plugins.GROUP))
    assert cli.main(["lab", "up", "--hosts", "2"]) == 7
    assert CALLS == [["up", "--hosts", "2"]]


def test_the_installed_lab_declares_its_command() -> None:
    """`make venv` installs the lab (lab/pyproject.toml), whose entry point is the lab's own command line."""
    [found] = entry_points(group=plugins.GROUP, name="lab")
    assert found.value == "stackops_lab.cli:main"
    assert found.dist is not None and found.dist.name == "stackops-lab"
