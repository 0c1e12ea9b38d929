"""The end of the rolling benches (kvm_rolling.py, xen_rolling.py): their figures printed, and their exit code."""
from __future__ import annotations

import json
from typing import Any, Callable, Sequence

Figures = dict[str, Any]


def report(figures: Sequence[Figures], *, as_json: bool, show: Callable[[Figures], None],
           missed: Callable[[Figures], list[str]]) -> int:
    """Every roll's `figures`, as one JSON object (`--json`), or each `show`n and then whether every limit was kept
    (`missed`: the limits a roll missed); 1 when a roll missed one, else 0."""
    if as_json:
        print(json.dumps({"rolls": list(figures)}, indent=1))
    else:
        for f in figures:
            show(f)
    failed = [f"{f['hosts']} hosts: {m}" for f in figures for m in missed(f)]
    if not as_json:
        print("limits: " + ("kept" if not failed else "MISSED: " + "; ".join(failed)))
    return 1 if failed else 0
