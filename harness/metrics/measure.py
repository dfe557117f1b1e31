"""Per-image particle measurements: count, area, equivalent circular diameter, border contact.

All work is a handful of whole-array passes (``np.bincount`` and a lookup-table gather), so an
image with thousands of particles costs about as much as one with ten.

Rules (see README.md, "Metrics"):

- the ``databar_rows`` bottom rows are cut off first: nothing in the data bar exists;
- a particle touching the image border (first/last row or column of what is left, so the row
  above the data bar counts as border) is counted but carries no size: its true extent is unknown;
- equivalent circular diameter d = 2 * sqrt(A / pi), with A the area in pixels, times the pixel
  size in nm when it is known; otherwise sizes stay in px and :attr:`Particles.units` says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from harness.errors import HarnessError
from harness.metrics.masks import check_labels

Units = Literal["nm", "px"]

#: Above this many ids per pixel, ``np.unique`` beats a ``np.bincount`` over the whole id range.
_DENSE_ID_FACTOR = 4


def check_pixel_size(pixel_size_nm: float | None) -> float | None:
    """``pixel_size_nm`` as a float, None when unknown; a HarnessError when it is not a size."""
    if pixel_size_nm is None:
        return None
    try:
        value = float(pixel_size_nm)
    except (TypeError, ValueError) as err:
        raise HarnessError(f"pixel size must be a number of nm per pixel, got {pixel_size_nm!r}") from err
    if not math.isfinite(value) or value <= 0:
        raise HarnessError(f"pixel size must be a finite positive number of nm per pixel, got {pixel_size_nm!r}")
    return value


def crop_databar(labels: np.ndarray, databar_rows: int, name: str = "labels") -> np.ndarray:
    """``labels`` without its ``databar_rows`` bottom rows (a view, no copy)."""
    if isinstance(databar_rows, bool) or not isinstance(databar_rows, (int, np.integer)):
        raise HarnessError(f"{name}: databar_rows must be an integer, got {databar_rows!r}")
    rows = labels.shape[0]
    if databar_rows < 0 or databar_rows >= rows:
        raise HarnessError(
            f"{name}: databar_rows={databar_rows} must be >= 0 and smaller than the image height {rows}"
        )
    return labels[: rows - int(databar_rows)]


def dense_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relabel to consecutive ids 1..K (int32) in order of the original ids.

    Returns ``(dense, ids, areas)``: ``ids[k - 1]`` is the original id of dense id ``k`` and
    ``areas[k - 1]`` its pixel count.
    """
    flat = labels.ravel()
    top = int(flat.max(initial=0))
    if top <= _DENSE_ID_FACTOR * flat.size + 65536:
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=1)
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(top + 1, dtype=np.int32)
        lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
        dense = lut[labels]
        areas = counts[ids]
    else:  # very sparse, very large ids: sort instead of allocating a table over the id range
        values, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        offset = 1 if values[0] != 0 else 0
        dense = (inverse.astype(np.int32) + offset).reshape(labels.shape)
        keep = values != 0
        ids, areas = values[keep], counts[keep]
    return dense, ids.astype(np.int64), areas.astype(np.int64)


def border_flags(dense: np.ndarray, count: int) -> np.ndarray:
    """Boolean per dense id 1..count: does the particle touch the first/last row or column?"""
    flags = np.zeros(count + 1, dtype=bool)
    flags[dense[0]] = True
    flags[dense[-1]] = True
    flags[dense[:, 0]] = True
    flags[dense[:, -1]] = True
    return flags[1:]


def diameters_from_areas(areas_px: np.ndarray, pixel_size_nm: float | None) -> np.ndarray:
    """Equivalent circular diameters 2 * sqrt(A / pi), in nm when the pixel size is known, else px."""
    scale = 1.0 if pixel_size_nm is None else pixel_size_nm
    return 2.0 * np.sqrt(np.asarray(areas_px, dtype=np.float64) / math.pi) * scale


@dataclass(frozen=True, eq=False)
class Particles:
    """The particles of one label image (data bar already removed), one entry per particle.

    Arrays are ordered by original label id.
    """

    ids: np.ndarray  # original label ids, int64
    areas_px: np.ndarray  # pixel counts, int64
    touches_border: np.ndarray  # bool
    pixel_size_nm: float | None
    shape: tuple[int, int]  # of the measured region (without the data bar)

    @property
    def count(self) -> int:
        """All particles, border-touching ones included."""
        return int(self.ids.size)

    @property
    def units(self) -> Units:
        return "px" if self.pixel_size_nm is None else "nm"

    @property
    def areas(self) -> np.ndarray:
        """Areas in nm^2 (px^2 when the pixel size is unknown)."""
        scale = 1.0 if self.pixel_size_nm is None else self.pixel_size_nm**2
        return self.areas_px.astype(np.float64) * scale

    @property
    def diameters(self) -> np.ndarray:
        """Equivalent circular diameters of all particles, in :attr:`units`."""
        return diameters_from_areas(self.areas_px, self.pixel_size_nm)

    @property
    def sized_diameters(self) -> np.ndarray:
        """Diameters of the particles that do not touch the border: the ones size statistics use."""
        return diameters_from_areas(self.areas_px[~self.touches_border], self.pixel_size_nm)

    @property
    def sized_diameters_px(self) -> np.ndarray:
        """:attr:`sized_diameters` in px, whatever the pixel size."""
        return diameters_from_areas(self.areas_px[~self.touches_border], None)


def measure_dense(dense: np.ndarray, ids: np.ndarray, areas: np.ndarray, pixel_size_nm: float | None) -> Particles:
    """:class:`Particles` from the output of :func:`dense_labels` (shared with the scorer)."""
    return Particles(
        ids=ids,
        areas_px=areas,
        touches_border=border_flags(dense, ids.size),
        pixel_size_nm=pixel_size_nm,
        shape=(int(dense.shape[0]), int(dense.shape[1])),
    )


def measure_particles(labels: np.ndarray, pixel_size_nm: float | None = None, databar_rows: int = 0) -> Particles:
    """Measure every particle of an instance label image (0 = background).

    ``pixel_size_nm`` None means unknown: sizes are then in px (``Particles.units == "px"``).
    """
    labels = crop_databar(check_labels(labels, "labels"), databar_rows)
    dense, ids, areas = dense_labels(labels)
    return measure_dense(dense, ids, areas, check_pixel_size(pixel_size_nm))
