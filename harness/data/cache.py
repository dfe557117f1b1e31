"""Where harness keeps generated data and pretrained weights."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

CACHE_ENV = "HARNESS_CACHE_DIR"


def cache_root() -> Path:
    """``$HARNESS_CACHE_DIR`` when set, else the user cache directory (e.g. ~/.cache/harness)."""
    override = os.environ.get(CACHE_ENV)
    root = Path(override) if override else Path(platformdirs.user_cache_dir("harness"))
    root.mkdir(parents=True, exist_ok=True)
    return root
