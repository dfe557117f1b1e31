"""Training targets from instance masks."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
IGNORE_INDEX = 255


def make_targets(mask: np.ndarray, databar_rows: int = 0) -> np.ndarray:
    """uint8 class map: background / interior / boundary, IGNORE_INDEX in the data bar.

    A boundary pixel is a particle pixel with a 4-neighbour outside its own particle (background
    or another particle), so a touching pair is cut by a line of boundary on both sides. Thin
    particles (< 3 px across) would lose all interior; they keep their interior where erosion
    would leave nothing.
    """
    labels = np.asarray(mask)
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    differs = np.zeros(labels.shape, dtype=bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        differs |= padded[dy : dy + labels.shape[0], dx : dx + labels.shape[1]] != centre
    foreground = labels > 0
    boundary = foreground & differs
    targets = np.where(foreground, INTERIOR, BACKGROUND).astype(np.uint8)
    targets[boundary] = BOUNDARY
    # particles that would have no interior at all keep their whole area as interior
    ids = np.unique(labels[foreground])
    if ids.size:
        interior_count = ndimage.sum_labels(targets == INTERIOR, labels, ids)
        no_interior = ids[interior_count == 0]
        if no_interior.size:
            targets[np.isin(labels, no_interior)] = INTERIOR
    if databar_rows > 0:
        targets[-databar_rows:] = IGNORE_INDEX
    return targets
