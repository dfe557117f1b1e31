"""The working resolution: particles much larger than the network's view are shrunk to fit it.

The network sees 128 px crops at the quick profile; a particle of 300 px is never seen whole and
comes back in pieces. So, identically for every method, the task picks one resampling factor per
run from the labelled images it may use (the budget's masks, never validation or test): when their
median particle diameter exceeds ``max_diameter_px``, every image of fine-tuning, validation and
test is resampled so that it becomes ``target_diameter_px``; otherwise nothing is resampled. Test
predictions are mapped back to the original pixels (nearest neighbour) and scored there, against the
untouched ground truth. Pretraining is independent of the budget and always sees native pixels.

One factor per run, although real folders mix magnifications (EMPS: per-image median diameters
from 18 to 355 px). A factor per image was tried and measured on EMPS (none at 100%, one network,
test count error / F1): the budget's factor 1.95 / 0.32; each image at the factor of its true
particle size 1.52 / 0.35; the factor estimated from the network's own first look at 1, 1/2, 1/4
and 1/8 7.7 / 0.30 (shattered particles look target-sized). Without an estimate of an unlabelled
image's particle size better than that, the single factor stays.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from skimage.transform import rescale, resize

from harness.errors import HarnessError


def median_diameter_px(masks: Iterable[np.ndarray]) -> float | None:
    """Median over images of each image's median equivalent particle diameter, in px (None: no particles)."""
    medians = []
    for mask in masks:
        _, areas = np.unique(np.asarray(mask)[np.asarray(mask) > 0], return_counts=True)
        if areas.size:
            medians.append(float(np.median(2.0 * np.sqrt(areas / np.pi))))
    return float(np.median(medians)) if medians else None


def working_scale(diameter_px: float | None, max_diameter_px: float, target_diameter_px: float) -> float:
    """The resampling factor (<= 1) for a budget whose median particle diameter is ``diameter_px``."""
    if not 0 < target_diameter_px <= max_diameter_px:
        raise HarnessError(f"working scale: need 0 < target ({target_diameter_px}) <= max ({max_diameter_px}) px")
    if diameter_px is None or diameter_px <= max_diameter_px:
        return 1.0
    return round(target_diameter_px / diameter_px, 4)


def resample_image(image: np.ndarray, scale: float) -> np.ndarray:
    """A [0, 1] float image resampled by ``scale`` (linear, anti-aliased when shrinking), float32."""
    if scale == 1.0:
        return image
    out = rescale(image.astype(np.float32), scale, order=1, anti_aliasing=scale < 1, preserve_range=True)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def resample_labels(labels: np.ndarray, scale: float) -> np.ndarray:
    """Instance labels resampled by ``scale`` (nearest neighbour: ids stay ids), same dtype."""
    if scale == 1.0:
        return labels
    return rescale(labels, scale, order=0, anti_aliasing=False, preserve_range=True).astype(labels.dtype)


def restore_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels predicted at the working resolution, mapped back to the original ``shape`` (nearest)."""
    if labels.shape == tuple(shape):
        return labels
    return resize(labels, shape, order=0, anti_aliasing=False, preserve_range=True).astype(labels.dtype)
