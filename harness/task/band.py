"""Task band-v1: a wider boundary band, and a loss weighted where particles come close (U-Net).

The three classes of ``3class-v1`` (background / interior / boundary), with two changes the issue
names. The boundary band is ``BAND_WIDTH`` px on each side of every particle edge instead of one, so
at the working resolution (particles about 32 px across) a touching pair is cut by a 4 px line the
network can place. And each pixel's cross-entropy is weighted as Ronneberger et al. (2015, U-Net)
weigh theirs: the class weight plus ``GAP_WEIGHT`` x exp(-(d1 + d2)^2 / (2 ``GAP_SIGMA``^2)), d1 and
d2 the pixel's distances to the nearest and the second-nearest particle, so the narrow gaps and
contacts between particles, the pixels that decide whether two particles stay two, weigh up to
``GAP_WEIGHT`` times more, while the inside of a lone particle weighs as any other pixel.

Instances as ``3class-v1`` reads them (:func:`harness.task.postprocess.to_instances`: confident
interior seeds, here 8-connected, watershed over the foreground), with the interior threshold and the
share of the image's largest particle tuned on validation, and the maps averaged over the 8 flips and
turns. Declared against distmap-v3 on EMPS validation, it failed (mean count error 0.240 against 0.149,
F1 0.828 against 0.850; docs/emps.md); on synthetic-sem it is no better either. It stays a version a lab
can try.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from harness.errors import HarnessError
from harness.task.distmap import IGNORE_VALUE
from harness.task.losses import CLASS_WEIGHTS, foreground_dice
from harness.task.postprocess import checked_maps, interior_instances, kept_over_share
from harness.task.targets import BACKGROUND, BOUNDARY, INTERIOR, checked_mask, make_targets

CLASS, WEIGHT = 0, 1  # the channels of a target
BAND_WIDTH = 2  # px on each side of an edge, at the working resolution
GAP_WEIGHT = 10.0  # U-Net's w0
GAP_SIGMA = 5.0  # U-Net's sigma, px


def gap_weights(labels: np.ndarray, weight: float = GAP_WEIGHT, sigma: float = GAP_SIGMA) -> np.ndarray:
    """float32 (H, W): U-Net's gap term ``weight`` x exp(-(d1 + d2)^2 / (2 sigma^2)) of every pixel,
    d1 <= d2 its Euclidean distances to the nearest and second-nearest particle (0 inside a particle).
    Where d1 + d2 exceeds the reach at which the term falls under 1e-3 of ``weight``, it is 0: each
    particle's distances are then computed only in its box widened by the reach, exact wherever the
    term is kept."""
    reach = sigma * math.sqrt(2 * math.log(1000))
    height, width = labels.shape
    if labels.size == 0:
        return np.zeros(labels.shape, dtype=np.float32)
    margin = int(math.ceil(reach)) + 1
    nearest = np.full(labels.shape, np.inf, dtype=np.float64)
    second = np.full(labels.shape, np.inf, dtype=np.float64)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        rows = slice(max(box[0].start - margin, 0), min(box[0].stop + margin, height))
        cols = slice(max(box[1].start - margin, 0), min(box[1].stop + margin, width))
        distance = ndimage.distance_transform_edt(labels[rows, cols] != index)
        near, sec = nearest[rows, cols], second[rows, cols]
        closer = distance < near
        sec[:] = np.where(closer, near, np.minimum(sec, distance))
        near[:] = np.where(closer, distance, near)
    total = nearest + second
    term = np.zeros(labels.shape, dtype=np.float32)
    within = total <= reach
    term[within] = (weight * np.exp(-(total[within] ** 2) / (2 * sigma**2))).astype(np.float32)
    return term


def band_targets(mask: np.ndarray, databar_rows: int = 0) -> np.ndarray:
    """float32 (H, W, 2): the class (background / interior / boundary of a ``BAND_WIDTH`` px band;
    IGNORE_VALUE in the data bar) and the pixel's loss weight (class weight + U-Net's gap term)."""
    labels = checked_mask(mask, databar_rows, "band_targets")
    classes = make_targets(labels, databar_rows, width=BAND_WIDTH).astype(np.float32)
    weights = gap_weights(labels)
    ignored = classes == IGNORE_VALUE
    weights += np.asarray(CLASS_WEIGHTS, dtype=np.float32)[np.where(ignored, BACKGROUND, classes).astype(np.int64)]
    return np.stack([classes, weights], axis=-1)


def band_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy weighted per pixel (the weighted mean over valid pixels) + soft foreground Dice.
    ``logits``: (B, 3, H, W) float32; ``targets``: (B, H, W, 2) from :func:`band_targets` (crops padded
    with IGNORE_VALUE, which marks a pixel ignored in both channels)."""
    if logits.ndim != 4 or logits.shape[1] != 3:
        raise HarnessError(f"band_loss: logits must be (B, 3, H, W), got shape {tuple(logits.shape)}")
    if targets.shape != (logits.shape[0], *logits.shape[2:], 2):
        raise HarnessError(f"band_loss: targets shape {tuple(targets.shape)} does not match logits "
                           f"{tuple(logits.shape)}")
    targets = targets.to(logits.dtype)
    classes = targets[..., CLASS]
    valid = classes != IGNORE_VALUE
    if not valid.any():
        raise HarnessError("band_loss: every pixel of the batch is ignored")
    labels = torch.where(valid, classes, torch.zeros_like(classes)).long()
    weights = torch.where(valid, targets[..., WEIGHT], torch.zeros_like(classes))
    ce = F.cross_entropy(logits, labels, reduction="none")
    weighted = (ce * weights).sum() / weights.sum()
    truth = ((labels == INTERIOR) | (labels == BOUNDARY)).to(logits.dtype)
    return weighted + foreground_dice(logits.softmax(dim=1), truth, valid.to(logits.dtype))


def band_instances(maps: np.ndarray, interior_threshold: float = 0.5, min_size_px: int = 4,
                   min_share: float = 0.0) -> np.ndarray:
    """Instance labels (int32, ids 1..N in raster order) from (3, H, W) class probabilities: seeds are
    the 8-connected regions of interior probability above ``interior_threshold``; they grow by
    watershed over the foreground (background not the likeliest class) along decreasing interior, and
    particles under ``min_size_px`` or under ``min_share`` of the image's largest are dropped
    (:func:`~harness.task.postprocess.seeded_watershed`)."""
    return next(band_instances_grid(maps, [{"interior_threshold": interior_threshold, "min_size_px": min_size_px,
                                            "min_share": min_share}]))


def band_instances_grid(maps: np.ndarray, candidates: Sequence[Mapping[str, Any]]) -> Iterator[np.ndarray]:
    """:func:`band_instances` for each parameter set in turn; one watershed serves every share."""
    maps = checked_maps(maps, 3, "band_instances")
    return _read_each(maps, [dict(c) for c in candidates])


def _read_each(maps: np.ndarray, candidates: list[dict[str, Any]]) -> Iterator[np.ndarray]:
    foreground = maps.argmax(axis=0) != BACKGROUND
    last: tuple[tuple[float, int], np.ndarray] | None = None
    for candidate in candidates:
        unknown = set(candidate) - {"interior_threshold", "min_size_px", "min_share"}
        if unknown:
            raise HarnessError(f"band_instances: unknown parameters {', '.join(sorted(unknown))}")
        threshold = float(candidate.get("interior_threshold", 0.5))
        given = candidate.get("min_size_px", 4)
        if not isinstance(given, (int, np.integer)) or given < 0:
            raise HarnessError(f"band_instances: min_size_px must be a whole number >= 0, got {given!r}")
        min_size = int(given)
        if last is None or last[0] != (threshold, min_size):
            # 8-connected: the 2 px band erodes a particle's interior as a diamond, which leaves parts of
            # a concave particle touching only at corners (4-connected seeds: the oracle's count error
            # on synthetic-sem's first 90 images 0.022, 8-connected 0.006); touching particles' interiors
            # lie 4 px apart
            labels = interior_instances(maps[INTERIOR], foreground, threshold, min_size, diagonal_seeds=True)
            last = (threshold, min_size), labels
        yield kept_over_share(last[1], float(candidate.get("min_share", 0.0)))
