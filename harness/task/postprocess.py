"""From per-pixel class probabilities to instance labels, by seeded watershed."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from harness.task.targets import BACKGROUND, INTERIOR


def to_instances(
    probabilities: np.ndarray,
    interior_threshold: float = 0.5,
    min_size_px: int = 4,
) -> np.ndarray:
    """Instance labels (int32, 0 = background, ids 1..N) from (3, H, W) class probabilities.

    Seeds are the connected components (4-connected) of confident interior; each seed grows by
    watershed over the foreground (where background is not the most likely class), flooding
    along decreasing interior probability, so boundary pixels split touching particles.
    Foreground that no seed reaches is dropped, as are instances under ``min_size_px`` pixels.
    """
    interior = probabilities[INTERIOR]
    foreground = probabilities.argmax(axis=0) != BACKGROUND
    seeds, count = ndimage.label(interior > interior_threshold)
    if count == 0:
        return np.zeros(interior.shape, dtype=np.int32)
    labels = watershed(-interior, markers=seeds, mask=foreground | (seeds > 0))
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size_px
    small[0] = False
    labels[small[labels]] = 0
    # consecutive ids in raster order of first appearance: deterministic
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lookup = np.zeros(labels.max() + 1, dtype=np.int32)
    lookup[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lookup[labels]
