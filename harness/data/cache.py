"""Where harness keeps generated data and pretrained weights, and how a rendered image is stored
(one ``.npz`` per image, written atomically, checked when read)."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import platformdirs

from harness.data.io import write_bytes_atomic
from harness.errors import HarnessWarning

CACHE_ENV = "HARNESS_CACHE_DIR"


def cache_root() -> Path:
    """``$HARNESS_CACHE_DIR`` when set, else the user cache directory (e.g. ~/.cache/harness)."""
    override = os.environ.get(CACHE_ENV)
    root = Path(override) if override else Path(platformdirs.user_cache_dir("harness"))
    root.mkdir(parents=True, exist_ok=True)
    return root


Renderer = Callable[[Any, int], tuple[np.ndarray, np.ndarray, pd.DataFrame]]

RenderJob = tuple[Renderer, Any, int, Path]


def render_into_cache(job: RenderJob) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    render, p, seed, path = job
    image, mask, table = render(p, seed)
    save_arrays_atomic(path, image=image, mask=mask, **{f"p_{c}": table[c].to_numpy() for c in table.columns})
    return image, mask, table


def render_cached_only(job: RenderJob) -> None:
    render_into_cache(job)  # the arrays stay in the worker: only the files matter


def read_rendering(path: Path) -> tuple[np.ndarray, np.ndarray, pd.DataFrame] | None:
    """A cached rendering, or None when there is none or it is damaged (truncated, edited: the zip
    CRC catches changed bytes). Rendering is deterministic, so a damaged entry is simply rebuilt."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            image, mask = stored["image"], stored["mask"]
            table = pd.DataFrame({k[2:]: stored[k] for k in stored.files if k.startswith("p_")})
    except Exception as err:  # noqa: BLE001 - BadZipFile, EOFError, KeyError, ValueError, OSError: all mean damaged
        warnings.warn(f"{path}: damaged dataset cache entry ({type(err).__name__}: {err}); rendering it again",
                      HarnessWarning, stacklevel=3)
        return None
    return image, mask, table


def save_arrays_atomic(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: (v.astype(str) if v.dtype == object else v) for k, v in arrays.items()})  # type: ignore[arg-type]
    write_bytes_atomic(path, buffer.getvalue())
