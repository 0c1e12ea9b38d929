"""`stackops <command>` commands that other distributions provide, found through their entry points.

A distribution adds a command with an entry point in the group `stackops.commands`: its name is the command, its
object a `main(argv) -> int` that gets the arguments after the command. The lab (`stackops lab …`) is one: the
distribution stackops-lab in the repository's lab/ directory, which this package and its image do not contain.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import entry_points

GROUP = "stackops.commands"
WHERE = {"lab": "it is the distribution stackops-lab, in the lab/ directory of a stackops checkout: "
                "`pip install -e lab/` there (or `make venv`, which installs it)"}


def command(name: str) -> Callable[[list[str]], int] | None:
    """The `main` of command `name`, or None when no installed distribution provides it."""
    found = entry_points(group=GROUP, name=name)
    return next(iter(found)).load() if found else None


def run(name: str, argv: list[str]) -> int:
    """Run command `name` with `argv`; without it installed, say how to get it (exit 1)."""
    main = command(name)
    if main is None:
        print(f"stackops {name}: not installed; {WHERE.get(name, 'no installed distribution provides it')}",
              file=sys.stderr)
        return 1
    return main(argv)
