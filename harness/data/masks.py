"""What a stored mask means: the one rule for training targets, ``harness data check`` and
``harness evaluate``.

- 0 is background.
- A mask with exactly one non-zero value ({0, 1}, {0, 255}, {0, 7}, a boolean mask) is a
  *foreground* mask: its particles are its connected regions, 8-connected by default
  (``--connectivity 4`` joins only pixels that share an edge). Touching particles merge.
- A mask with two or more non-zero values holds *instance ids*: each value is one particle, as
  stored (ids need not be consecutive).

A single-particle instance mask is thus read as a foreground mask too, which changes nothing
unless that particle is in pieces.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label as connected_components

from harness.errors import HarnessError

CONNECTIVITIES: tuple[int, ...] = (4, 8)


def is_binary_mask(values: np.ndarray) -> bool:
    """Whether ``values`` (non-negative integers or booleans) hold exactly one non-zero value."""
    values = np.asarray(values)
    if values.dtype == np.bool_:
        return bool(values.any())
    nonzero = values[values != 0]
    return nonzero.size > 0 and bool((nonzero == nonzero.flat[0]).all())


def binary_to_instances(mask: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """Instance labels (int32, 1..N in raster order) of the connected non-zero regions of ``mask``."""
    if connectivity not in CONNECTIVITIES:
        raise HarnessError(f"connectivity must be 4 or 8, got {connectivity!r}")
    labels = connected_components(np.asarray(mask) != 0, connectivity=1 if connectivity == 4 else 2)
    return labels.astype(np.int32, copy=False)


def drop_ids(labels: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """``labels`` with every particle whose id is True in ``drop`` (a boolean array indexed by id,
    at least ``labels.max() + 1`` long; entry 0 is ignored) set to background; the same array
    when nothing is dropped."""
    drop = np.asarray(drop, dtype=bool).copy()
    drop[0] = False
    if not drop.any():
        return labels
    out = labels.copy()
    out[drop[labels]] = 0
    return out
