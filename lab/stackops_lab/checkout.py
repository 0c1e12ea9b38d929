"""The stackops repository checkout the lab runs from.

The lab installs deploy/ (and deploy/namespaced/) into its cluster and points deploy/examples/ at itself: files of
the repository, not of the stackops-lab distribution. They are found in the checkout the lab is installed from
(lab/stackops_lab/ in it, installed editable by `pip install -e lab/` or `make venv`), or in $STACKOPS_CHECKOUT.
"""
from __future__ import annotations

import os
from pathlib import Path

from stackops_lab.controlplane import LabError

# Where the repository keeps them, relative to the checkout; resolve with `path`.
DEPLOY = Path("deploy")
NAMESPACED = DEPLOY / "namespaced"  # the installation for listed namespaces only (Roles, no ClusterRole)
EXAMPLES = DEPLOY / "examples"

INSTALLED_FROM = Path(__file__).resolve().parents[2]  # <checkout>/lab/stackops_lab/checkout.py
MARKS = (Path("lab") / "pyproject.toml", DEPLOY / "kustomization.yaml")  # what makes a directory a checkout


def root() -> Path:
    """The checkout: $STACKOPS_CHECKOUT if set, else the one the lab is installed from; a LabError saying how to
    get one when it is not a checkout."""
    given = os.environ.get("STACKOPS_CHECKOUT")
    candidate = Path(given).resolve() if given else INSTALLED_FROM
    missing = [str(mark) for mark in MARKS if not (candidate / mark).is_file()]
    if missing:
        where = f"$STACKOPS_CHECKOUT ({candidate})" if given else f"the directory it is installed from ({candidate})"
        raise LabError(f"the lab needs a stackops repository checkout (for deploy/ and deploy/examples/), and "
                       f"{where} is none: it has no {', '.join(missing)}. Install the lab from a checkout "
                       f"(`pip install -e lab/` there, or `make venv`) or set STACKOPS_CHECKOUT to one.")
    return candidate


def path(relative: Path) -> Path:
    """`relative` (e.g. DEPLOY) in the checkout; an absolute path is returned as it is."""
    return relative if relative.is_absolute() else root() / relative
