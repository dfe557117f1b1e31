"""Length-scale bins: the one place where magnification ranges are named.

A bin is a range of pixel sizes (nm per pixel). Every dataset, split, metric table and plot asks
this module which bin an image belongs to, so the boundaries can never drift between layers.
The boundaries split 0.5-50 nm/px (the span of the embedded dataset) into three equal decades
on a log scale, rounded: high magnification resolves single nanoparticles, low magnification
shows powders of micrometre grains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

UNKNOWN_SCALE = "unknown"


@dataclass(frozen=True)
class LengthScale:
    name: str
    min_nm_per_px: float  # inclusive
    max_nm_per_px: float  # exclusive
    description: str


LENGTH_SCALES: tuple[LengthScale, ...] = (
    LengthScale("high-mag", 0.0, 2.5, "< 2.5 nm/px: nanoparticles, atomic-scale detail"),
    LengthScale("mid-mag", 2.5, 10.0, "2.5-10 nm/px: tens to hundreds of nm"),
    LengthScale("low-mag", 10.0, math.inf, ">= 10 nm/px: sub-micrometre to micrometre grains"),
)
SCALE_NAMES: tuple[str, ...] = tuple(s.name for s in LENGTH_SCALES)


def length_scale_of(pixel_size_nm: float | None) -> str:
    """Name of the bin holding ``pixel_size_nm``; :data:`UNKNOWN_SCALE` when it is not known."""
    if pixel_size_nm is None or not math.isfinite(pixel_size_nm) or pixel_size_nm <= 0:
        return UNKNOWN_SCALE
    for scale in LENGTH_SCALES:
        if scale.min_nm_per_px <= pixel_size_nm < scale.max_nm_per_px:
            return scale.name
    return UNKNOWN_SCALE  # pragma: no cover - the last bin is open-ended
