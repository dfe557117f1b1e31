"""From per-pixel class probabilities to instance labels, by seeded watershed.

Confident interior gives one seed per particle (the boundary class keeps touching particles'
interiors apart); the seeds then grow over everything the network calls foreground, so each
particle gets its boundary band back and touching particles meet along the boundary line.
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from harness.errors import HarnessError
from harness.task.targets import BACKGROUND, INTERIOR


def to_instances(
    probabilities: np.ndarray,
    interior_threshold: float = 0.5,
    min_size_px: int = 4,
) -> np.ndarray:
    """Instance labels (int32, 0 = background, ids 1..N) from (3, H, W) class probabilities.

    Seeds are the connected components (4-connected) of interior probability above
    ``interior_threshold``; each seed grows by watershed over the foreground (where background
    is not the most likely class), flooding along decreasing interior probability, so the
    low-interior boundary band is reached last and split between the particles on either side.
    A foreground component without any confident interior becomes an instance of its own;
    instances under ``min_size_px`` pixels are dropped. Ids are consecutive, numbered in raster
    order of each instance's first pixel: the same input always gives the same labels.
    """
    probabilities = checked_maps(probabilities, 3, "to_instances")
    if min_size_px < 0:
        raise HarnessError(f"to_instances: min_size_px must be >= 0, got {min_size_px}")
    foreground = probabilities.argmax(axis=0) != BACKGROUND
    return interior_instances(probabilities[INTERIOR], foreground, interior_threshold, min_size_px)


def interior_instances(interior: np.ndarray, foreground: np.ndarray, interior_threshold: float, min_size_px: int,
                       diagonal_seeds: bool = False) -> np.ndarray:
    """:func:`to_instances` from its interior probability and foreground, for the class tasks' readers
    (which compute the foreground once for a grid of thresholds). ``diagonal_seeds``: seeds are the
    8-connected rather than 4-connected regions above the threshold."""
    if not 0.0 < interior_threshold < 1.0:
        raise HarnessError(f"interior_threshold must lie in (0, 1), got {interior_threshold}")
    structure = np.ones((3, 3), dtype=bool) if diagonal_seeds else None
    seeds, _ = ndimage.label(interior > interior_threshold, structure=structure)
    return seeded_watershed(-interior, seeds, foreground, min_size_px)


def seeded_watershed(flood: np.ndarray, seeds: np.ndarray, foreground: np.ndarray, min_size_px: int,
                     min_share: float = 0.0) -> np.ndarray:
    """Grow labelled ``seeds`` over ``foreground`` by watershed on ``flood`` (low floods first).

    Shared by every task version. A foreground blob without any seed is still a particle (a weakly
    trained network may miss a small particle's centre): it becomes its own instance. Instances
    under ``min_size_px`` pixels, or under ``min_share`` of the image's largest instance, are dropped
    (the share catches the specks and shards beside a micrograph's real particles, whatever their
    size in pixels); the survivors are renumbered 1..N in raster order of their first pixel, so the
    same input always gives the same labels.
    """
    if min_size_px < 0:
        raise HarnessError(f"seeded_watershed: min_size_px must be >= 0, got {min_size_px}")
    _check_share(min_share)
    seeds = seeds.astype(np.int32, copy=True)
    count = int(seeds.max(initial=0))
    blobs, n_blobs = ndimage.label(foreground)
    if n_blobs:
        seeded = np.zeros(n_blobs + 1, dtype=bool)
        seeded[np.unique(blobs[seeds > 0])] = True
        orphans = (blobs > 0) & ~seeded[blobs]
        if orphans.any():
            extra, n_extra = ndimage.label(orphans)
            seeds = np.where(orphans, extra + count, seeds)
            count += n_extra
    if count == 0:
        return np.zeros(foreground.shape, dtype=np.int32)
    labels = watershed(flood, markers=seeds, mask=foreground | (seeds > 0))
    sizes = np.bincount(labels.ravel())
    labels[(sizes < min_size_px)[labels]] = 0
    return drop_under_share(renumbered(labels), min_share)


def checked_maps(maps: np.ndarray, channels: int, who: str) -> np.ndarray:
    """``maps`` as a float array of ``channels`` maps (C, H, W), after the checks every task's
    post-processing needs (``who`` names the caller in the one-line error)."""
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.shape[0] != channels:
        raise HarnessError(f"{who}: expected ({channels}, H, W) maps, got shape {maps.shape}")
    if not np.issubdtype(maps.dtype, np.floating):
        raise HarnessError(f"{who}: maps must be floats, got dtype {maps.dtype}")
    if not np.isfinite(maps).all():
        raise HarnessError(f"{who}: maps contain NaN or infinity (did training diverge?)")
    return maps


def drop_under_share(labels: np.ndarray, min_share: float) -> np.ndarray:
    """``labels`` without the instances under ``min_share`` of the largest one's area, renumbered
    1..N in raster order of their first pixel; ``labels`` itself where the share drops nothing.

    The last step of :func:`seeded_watershed`, apart so that a grid of shares reads one watershed.
    ``labels`` must be as that function numbers them (ids 1..N in raster order of their first pixel):
    the instances kept then keep their order, so they are renumbered by a lookup, without a sort.
    """
    _check_share(min_share)
    if min_share == 0.0 or labels.max() == 0:
        return labels
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    small = sizes < min_share * sizes.max()
    if not small[1:].any():
        return labels
    kept = ~small
    kept[0] = False
    lookup = np.zeros(sizes.size, dtype=np.int32)
    lookup[kept] = np.arange(1, int(kept.sum()) + 1, dtype=np.int32)
    return lookup[labels]


def kept_over_share(labels: np.ndarray, min_share: float) -> np.ndarray:
    """:func:`drop_under_share` as a new array always: for the grid readers, which cache ``labels``
    for the next candidate while their callers own what they are given."""
    kept = drop_under_share(labels, min_share)
    return kept.copy() if kept is labels else kept


def labels_digest(labels: np.ndarray) -> bytes:
    """A key for an array's contents (its shape, dtype and pixels), for stages that are computed once
    per distinct input: the grid reader's watershed per seed set, tuning's scores per labelling. sha1
    is not for security here: it hashes 256 KB in 0.15 ms on these machines, blake2b in 0.4."""
    contiguous = np.ascontiguousarray(labels)
    header = repr((contiguous.shape, contiguous.dtype.str)).encode()
    return header + hashlib.sha1(contiguous.data, usedforsecurity=False).digest()


def _check_share(min_share: float) -> None:
    if not 0.0 <= min_share < 1.0:
        raise HarnessError(f"min_share must lie in [0, 1), got {min_share}")


def renumbered(labels: np.ndarray) -> np.ndarray:
    """Ids 1..N in raster order of each instance's first pixel (int32), whatever ids ``labels`` used."""
    ids, first = np.unique(labels.ravel(), return_index=True)
    keep = ids > 0
    ids = ids[keep][np.argsort(first[keep], kind="stable")]
    lookup = np.zeros(labels.max() + 1, dtype=np.int32)
    lookup[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lookup[labels]
