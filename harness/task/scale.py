"""The working resolution: particles much larger than the network's view are shrunk to fit it.

The network sees 128 px crops at the quick profile; a particle of 300 px is never seen whole and
comes back in pieces. So, identically for every method, the task picks one resampling factor per
run from the labelled images it may use (the budget's masks, never validation or test): when their
median particle diameter exceeds ``max_diameter_px``, every image of fine-tuning, validation and
test is resampled so that it becomes ``target_diameter_px``; otherwise nothing is resampled. Test
predictions are mapped back to the original pixels (nearest neighbour) and scored there, against the
untouched ground truth. Pretraining is independent of the budget and always sees native pixels.

Real folders mix magnifications: EMPS holds images whose median particle spans 18 px and others
where it spans 350 px, so one factor shrinks the small ones to nothing while the large ones still
do not fit. With ``per_image`` (:class:`Resolution`), once the budget's particles are large, each
image gets its own factor: a training image from its own mask, any other image (validation, test,
a user's micrograph) from the particles the network finds in a first pass at the budget's factor.
The network's own estimate, so it is the same rule for every method and never reads a hidden mask.
Budgets of small particles (every synthetic dataset) are untouched either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from skimage.transform import rescale, resize

from harness.errors import HarnessError


def image_median_diameter_px(mask: np.ndarray) -> float | None:
    """The median equivalent particle diameter of one instance mask, in px (None: no particles)."""
    mask = np.asarray(mask)
    _, areas = np.unique(mask[mask > 0], return_counts=True)
    return float(np.median(2.0 * np.sqrt(areas / np.pi))) if areas.size else None


def median_diameter_px(masks: Iterable[np.ndarray]) -> float | None:
    """Median over images of each image's median equivalent particle diameter, in px (None: no particles)."""
    return median_of(image_median_diameter_px(mask) for mask in masks)


def median_of(diameters: Iterable[float | None]) -> float | None:
    """The median of the images' median diameters that are defined (None: none is)."""
    known = [d for d in diameters if d is not None]
    return float(np.median(known)) if known else None


def working_scale(diameter_px: float | None, max_diameter_px: float, target_diameter_px: float) -> float:
    """The resampling factor (<= 1) for a budget whose median particle diameter is ``diameter_px``."""
    if not 0 < target_diameter_px <= max_diameter_px:
        raise HarnessError(f"working scale: need 0 < target ({target_diameter_px}) <= max ({max_diameter_px}) px")
    if diameter_px is None or diameter_px <= max_diameter_px:
        return 1.0
    return round(target_diameter_px / diameter_px, 4)


@dataclass(frozen=True)
class Resolution:
    """The working resolution of one run: the budget's factor ``base`` for every image or, with
    ``per_image``, each image's own factor from its median particle diameter."""

    base: float = 1.0
    per_image: bool = False
    max_diameter_px: float = 48.0
    target_diameter_px: float = 32.0

    def ladder(self) -> tuple[float, ...]:
        """The factors a per-image estimate tries: native pixels down by halves to 1/8, and the base."""
        return (1.0, 0.5, 0.25, 0.125, self.base)

    def for_diameter(self, diameter_px: float | None) -> float:
        """The factor of an image whose median particle diameter is ``diameter_px`` native px."""
        if not self.per_image or diameter_px is None:
            return self.base
        return working_scale(diameter_px, self.max_diameter_px, self.target_diameter_px)


def budget_resolution(diameter_px: float | None, max_diameter_px: float, target_diameter_px: float,
                      per_image: bool) -> Resolution:
    """The resolution of a run whose budget has median particle diameter ``diameter_px``: per-image
    factors only once the budget's particles exceed ``max_diameter_px`` (else nothing is resampled)."""
    base = working_scale(diameter_px, max_diameter_px, target_diameter_px)
    return Resolution(base=base, per_image=per_image and base != 1.0, max_diameter_px=max_diameter_px,
                      target_diameter_px=target_diameter_px)


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
