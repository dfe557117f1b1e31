"""The one way every micrograph is scaled to the model's input range.

Every model input in harness, whatever its bit depth, goes through :func:`to_unit_float`, so
that 8-bit, 16-bit and float micrographs from different instruments land in the same [0, 1]
range. A fixed 1/65535 for 16-bit data is never used: SEM/TEM detectors rarely fill 16 bits, and
such a factor leaves most 16-bit micrographs as near-black images.
"""

from __future__ import annotations

import numpy as np

from harness.errors import HarnessError

#: Lower and upper percentile of the per-image stretch for 16-bit, other integer and float images.
STRETCH_PERCENTILES: tuple[float, float] = (0.5, 99.5)


def to_unit_float(image: np.ndarray, databar_rows: int = 0) -> np.ndarray:
    """Scale a 2-D micrograph to float32 in [0, 1].

    The rule:

    - **8-bit** (uint8): divided by 255, nothing else; 8-bit instrument output already spans
      the display range, and the fixed factor keeps grey values comparable between images.
    - **16-bit, other integer types and float**: a per-image percentile stretch. ``lo`` and
      ``hi`` are the 0.5th and 99.5th percentiles of the pixels above the data bar; the image
      becomes ``(x - lo) / (hi - lo)`` clipped to [0, 1]. When ``hi == lo`` (a mostly flat image)
      the minimum and maximum are used instead; a constant image becomes all zeros.
    - **bool**: False -> 0, True -> 1.
    - NaN or infinite pixels are an error, never silently replaced.

    ``databar_rows`` bottom rows (an instrument data bar) are left out of the percentiles so that
    the bar's white text and black background do not set the contrast; they are still scaled.
    """
    array = np.asarray(image)
    if array.ndim != 2:
        raise HarnessError(f"to_unit_float expects a 2-D image, got shape {array.shape}")
    if array.size == 0:
        raise HarnessError("to_unit_float got an empty image (0 pixels)")
    if databar_rows < 0:
        raise HarnessError(f"databar_rows must be >= 0, got {databar_rows}")
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise HarnessError(f"to_unit_float cannot scale pixels of type {array.dtype}")
    values = array.astype(np.float64)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise HarnessError(f"image has {bad} NaN or infinite pixels; fix or mask them before use")
    region = values[: values.shape[0] - databar_rows] if databar_rows < values.shape[0] else values
    lo, hi = np.percentile(region, STRETCH_PERCENTILES)
    if hi <= lo:
        lo, hi = float(region.min()), float(region.max())
    if hi <= lo:
        return np.zeros(array.shape, dtype=np.float32)
    scaled = (values - lo) / (hi - lo)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)
