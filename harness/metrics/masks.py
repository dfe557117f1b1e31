"""Checking label images and turning binary masks into instances.

An *instance label image* is a 2-D array of non-negative integers: 0 is background and every
particle carries its own positive id (ids need not be consecutive). Anything else (RGB stacks,
float arrays, negative values) is refused with a message naming the array, because a silently
reinterpreted mask would give plausible-looking but wrong particle statistics.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from harness.data.masks import binary_to_instances, is_binary_mask
from harness.errors import HarnessError

Connectivity = Literal[4, 8]
MaskType = Literal["auto", "instance", "binary"]
MASK_TYPES: tuple[str, ...] = ("auto", "instance", "binary")


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
    """True for a foreground mask: exactly one non-zero value (:mod:`harness.data.masks`, the rule
    training and ``data check`` use too)."""
    return is_binary_mask(labels)


def prepare_labels(
    array: np.ndarray, name: str, mask_type: MaskType = "auto", connectivity: Connectivity = 8
) -> tuple[np.ndarray, bool]:
    """Checked instance labels from a mask file's pixels, and whether they came from a binary mask.

    ``mask_type`` "auto" treats a mask with exactly one non-zero value as binary, as training and
    ``data check`` do (:mod:`harness.data.masks`); "binary" and "instance" force either reading.
    """
    if mask_type not in MASK_TYPES:
        raise HarnessError(f"mask type must be one of {', '.join(MASK_TYPES)}, got {mask_type!r}")
    raw = np.asarray(array)
    if raw.dtype == bool:
        raw = raw.astype(np.uint8)
    # read as a folder dataset reads a mask file (harness.data.folder.decode): a single-page stack is
    # its page, and float labels are accepted when every value is a whole number
    if raw.ndim == 3 and raw.shape[0] == 1:
        raw = raw[0]
    if np.issubdtype(raw.dtype, np.floating) and raw.size and np.isfinite(raw).all() and (raw == np.round(raw)).all() \
            and raw.min() >= 0 and raw.max() <= np.iinfo(np.int32).max:
        raw = raw.astype(np.int32)
    labels = check_labels(raw, name)
    binary = mask_type == "binary" or (mask_type == "auto" and is_binary(labels))
    if binary:
        return binary_to_instances(labels, connectivity), True
    return labels, False
