"""Checking label images and turning binary masks into instances.

An *instance label image* is a 2-D array of non-negative integers: 0 is background and every
particle carries its own positive id (ids need not be consecutive). Anything else (RGB stacks,
float arrays, negative values) is refused with a message naming the array, because a silently
reinterpreted mask would give plausible-looking but wrong particle statistics.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

from harness.errors import HarnessError

Connectivity = Literal[4, 8]
MaskType = Literal["auto", "instance", "binary"]
CONNECTIVITIES: tuple[int, ...] = (4, 8)
MASK_TYPES: tuple[str, ...] = ("auto", "instance", "binary")

#: Value sets that mark a mask as binary (foreground/background) rather than instance labels.
BINARY_VALUE_SETS: tuple[frozenset[int], ...] = (frozenset({0, 1}), frozenset({0, 255}))


def check_labels(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as a 2-D integer label image, or a HarnessError naming ``name`` and the problem."""
    labels = np.asarray(array)
    if labels.ndim != 2:
        hint = " (an RGB/multichannel image is not a label image)" if labels.ndim == 3 else ""
        raise HarnessError(f"{name}: expected a 2-D label image, got shape {labels.shape}{hint}")
    if labels.size == 0:
        raise HarnessError(f"{name}: label image is empty (shape {labels.shape})")
    if labels.dtype == bool:
        raise HarnessError(
            f"{name}: boolean mask given where instance labels are needed; "
            "convert it with harness.metrics.binary_to_instances"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise HarnessError(
            f"{name}: label images must hold integers, got dtype {labels.dtype} "
            "(float or other masks are not instance labels)"
        )
    if np.issubdtype(labels.dtype, np.signedinteger):
        low = int(labels.min())
        if low < 0:
            raise HarnessError(f"{name}: negative label {low}; labels must be 0 (background) or positive ids")
    return labels


def is_binary(labels: np.ndarray) -> bool:
    """True when every value lies in {0, 1} or in {0, 255} (a foreground mask, not instances)."""
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return True
    top = int(labels.max(initial=0))
    if top > 255 or int(labels.min(initial=0)) < 0:
        return False
    present = frozenset(np.flatnonzero(np.bincount(labels.ravel().astype(np.intp), minlength=1)).tolist())
    return any(present <= allowed for allowed in BINARY_VALUE_SETS)


def binary_to_instances(mask: np.ndarray, connectivity: Connectivity = 8) -> np.ndarray:
    """Instance labels (int32, 1..N) of the connected foreground regions of ``mask``.

    ``connectivity`` 4 joins pixels sharing an edge; 8 also joins diagonal neighbours (as ImageJ
    and scikit-image do). Touching particles merge into one instance either way.
    """
    if connectivity not in CONNECTIVITIES:
        raise HarnessError(f"connectivity must be 4 or 8, got {connectivity!r}")
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels, _ = ndimage.label(np.asarray(mask) > 0, structure=structure)
    return labels.astype(np.int32, copy=False)


def prepare_labels(
    array: np.ndarray, name: str, mask_type: MaskType = "auto", connectivity: Connectivity = 8
) -> tuple[np.ndarray, bool]:
    """Checked instance labels from a mask file's pixels, and whether they came from a binary mask.

    ``mask_type`` "auto" treats a mask whose values lie in {0, 1} or {0, 255} as binary; note that
    an instance mask holding a single particle with id 1 (or 255) then passes through connected
    components too, which changes nothing unless that particle is split into pieces.
    """
    if mask_type not in MASK_TYPES:
        raise HarnessError(f"mask type must be one of {', '.join(MASK_TYPES)}, got {mask_type!r}")
    raw = np.asarray(array)
    if raw.dtype == bool:
        raw = raw.astype(np.uint8)
    labels = check_labels(raw, name)
    binary = mask_type == "binary" or (mask_type == "auto" and is_binary(labels))
    if binary:
        return binary_to_instances(labels, connectivity), True
    return labels, False
