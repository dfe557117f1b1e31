"""Training targets from instance masks: background / interior / boundary, plus an ignore value.

Three classes rather than foreground alone because touching particles share an edge: a binary
target would merge them, while a boundary band on each side of every particle edge gives the
post-processing a line to cut along (:mod:`harness.task.postprocess`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import ndimage

from harness.errors import HarnessError

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
IGNORE_INDEX = 255  # pixels that count for nothing in the loss (data bar, padding)


def checked_mask(mask: np.ndarray, databar_rows: int, who: str) -> np.ndarray:
    """``mask`` as an array, after the checks every task's targets need (``who`` names the caller)."""
    labels = np.asarray(mask)
    if labels.ndim != 2:
        raise HarnessError(f"{who}: the mask must be 2-D, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise HarnessError(f"{who}: the mask must hold integer instance ids, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise HarnessError(f"{who}: the mask holds negative ids (min {labels.min()}); 0 is background")
    if not 0 <= databar_rows <= labels.shape[0]:
        raise HarnessError(f"{who}: databar_rows={databar_rows} is outside 0..{labels.shape[0]} (the mask's height)")
    return labels


def particle_distances(labels: np.ndarray) -> Iterator[tuple[tuple[slice, slice], np.ndarray, np.ndarray]]:
    """For each particle of an instance mask: its box (one pixel of context around it, where the image
    has it), its pixels in that box, and each box pixel's Euclidean distance to the nearest pixel outside
    the particle (background or another particle). The image border is not an edge: a particle cut by it
    is not known to end there."""
    height, width = labels.shape
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        rows = slice(max(box[0].start - 1, 0), min(box[0].stop + 1, height))
        cols = slice(max(box[1].start - 1, 0), min(box[1].stop + 1, width))
        own = labels[rows, cols] == index
        yield (rows, cols), own, ndimage.distance_transform_edt(own)


def _footprint(width: int) -> np.ndarray:
    """Diamond of radius ``width``: the 4-neighbourhood for width 1, its dilations beyond."""
    return ndimage.iterate_structure(ndimage.generate_binary_structure(2, 1), width)


def _rescue_thin(targets: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> None:
    """Give particles ``ids`` (no interior left) interior where they do not touch another particle.

    Only contact with another particle stays boundary, so two thin particles that touch still do
    not merge; a particle that touches others everywhere becomes interior as a whole.
    """
    cross = _footprint(1)
    others_above = ndimage.maximum_filter(labels, footprint=cross, mode="nearest") > labels
    # background as the largest id, so that only real particles can be smaller than the centre
    high = np.where(labels > 0, labels, np.iinfo(labels.dtype).max)
    others_below = ndimage.minimum_filter(high, footprint=cross, mode="nearest") < labels
    touching = others_above | others_below
    thin = np.isin(labels, ids)
    targets[thin & ~touching] = INTERIOR
    # where that still leaves a particle without interior, the whole particle is interior
    interior_count = ndimage.sum_labels(targets == INTERIOR, labels, ids)
    targets[np.isin(labels, ids[interior_count == 0])] = INTERIOR


def make_targets(mask: np.ndarray, databar_rows: int = 0, width: int = 1) -> np.ndarray:
    """uint8 class map of ``mask`` (2-D, integer, 0 = background, ids > 0 = particles).

    A boundary pixel is a particle pixel within ``width`` pixels (city-block distance) of a pixel
    outside its own particle, background or another particle. With the default width 1 a
    touching pair is cut by a 2 px line (1 px on each side), thin enough for particles of a few
    pixels across; raise ``width`` only for images where particles span hundreds of pixels. The
    image border is not an edge: particles cut by it are not known to end there.
    Particles too thin to keep any interior get interior back (see :func:`_rescue_thin`), so
    every particle still gets a seed. The bottom
    ``databar_rows`` rows (the instrument data bar) are IGNORE_INDEX.
    """
    labels = checked_mask(mask, databar_rows, "make_targets")
    if width < 1:
        raise HarnessError(f"make_targets: the boundary width must be >= 1 px, got {width}")

    foreground = labels > 0
    footprint = _footprint(width)
    # a pixel sees another label within the footprint exactly when the max and min there differ;
    # mode "nearest" repeats the edge, so the image border never reads as a neighbour
    differs = ndimage.maximum_filter(labels, footprint=footprint, mode="nearest") != ndimage.minimum_filter(
        labels, footprint=footprint, mode="nearest"
    )
    targets = np.where(foreground, INTERIOR, BACKGROUND).astype(np.uint8)
    targets[foreground & differs] = BOUNDARY

    ids = np.unique(labels[foreground])
    if ids.size:
        interior_count = ndimage.sum_labels(targets == INTERIOR, labels, ids)
        no_interior = ids[interior_count == 0]
        if no_interior.size:
            _rescue_thin(targets, labels, no_interior)
    if databar_rows > 0:
        targets[labels.shape[0] - databar_rows :] = IGNORE_INDEX
    return targets
