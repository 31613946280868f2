"""Where the project's data folders are: the repository's `ontology/` and
`mappings/` in a checkout, the same files as package data in a wheel."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def project_dir(name: str) -> Path:
    """`ontology` or `mappings`: the checkout's folder, else the installed copy."""
    repo = _REPO / name
    if repo.is_dir() and any(repo.iterdir()):
        return repo
    return Path(str(importlib.resources.files("harvester") / f"{name}_data"))
