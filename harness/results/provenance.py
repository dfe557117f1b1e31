"""Where a result came from: code version, git state, library versions, hardware."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

KEY_LIBRARIES = ("torch", "timm", "lightly", "numpy", "scipy", "scikit-image", "pydantic", "pluggy")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in KEY_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def git_state(path: Path | None = None) -> dict[str, str | bool | None]:
    """Commit and dirty flag of the checkout harness runs from; None outside a git checkout."""
    root = path or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def hardware() -> dict[str, str | int]:
    import os

    return {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count() or 0,
            "system": platform.system()}
