"""Task v2: foreground plus a per-particle normalised distance map, split by seeded watershed.

Each particle pixel's target is its distance to the particle's own edge divided by the largest such
distance in that particle, so every particle peaks at 1 at its centre whatever its size, and the
neck between two touching particles stays low. Seeds are the regions above a threshold of that map;
they grow over the predicted foreground. This is the representation of the source authors'
downstream code (normalised distance regression + seed/mask thresholds + watershed). Unlike a
thin boundary class, the quantity to learn is smooth and wide, so a small network learns it within
a CPU budget (measured against the 3-class task: README, "The downstream task").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage import morphology

from harness.errors import HarnessError
from harness.task.postprocess import checked_maps, kept_over_share, labels_digest, seeded_watershed
from harness.task.targets import checked_mask, particle_distances

IGNORE_VALUE = 255.0  # channel 0 of a target at an ignored pixel (data bar, padding)
FOREGROUND, DISTANCE = 0, 1
DICE_SMOOTH = 1.0
DISTANCE_WEIGHT = 5.0  # the distance term decides the split; foreground alone is learnt quickly


def distance_targets(mask: np.ndarray, databar_rows: int = 0) -> np.ndarray:
    """float32 (H, W, 2): foreground (0/1, IGNORE_VALUE in the data bar) and normalised distance.

    The distance of a particle pixel is the Euclidean distance to the nearest pixel outside its own
    particle (background or another particle), over that particle's maximum, in (0, 1]. The image
    border is not an edge: a particle cut by it is not known to end there.
    """
    labels = checked_mask(mask, databar_rows, "distance_targets")
    distance = np.zeros(labels.shape, dtype=np.float32)
    for box, own, edt in particle_distances(labels):
        peak = edt.max()
        if peak > 0:
            distance[box][own] = (edt[own] / peak).astype(np.float32)
    targets = np.stack([(labels > 0).astype(np.float32), distance], axis=-1)
    if databar_rows > 0:
        targets[labels.shape[0] - databar_rows :, :, FOREGROUND] = IGNORE_VALUE
    return targets


def foreground_loss(logits: torch.Tensor, targets: torch.Tensor, channels: int,
                    who: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The part every map task's loss shares: shapes checked, then foreground BCE + soft Dice over the
    valid pixels (channel 0 of the targets is not IGNORE_VALUE). Returns that loss, the valid pixels
    (B, H, W) and the targets in the logits' dtype, for the task's own terms.

    ``logits``: (B, ``channels``, H, W) float32; ``targets``: (B, H, W, ``channels``) (crops padded
    with IGNORE_VALUE). Dice is over the whole batch, so one empty crop does not dominate it. ``who``
    names the caller in the one-line errors.
    """
    if logits.ndim != 4 or logits.shape[1] != channels:
        raise HarnessError(f"{who}: logits must be (B, {channels}, H, W), got shape {tuple(logits.shape)}")
    if targets.shape != (logits.shape[0], *logits.shape[2:], channels):
        raise HarnessError(f"{who}: targets shape {tuple(targets.shape)} does not match logits {tuple(logits.shape)}")
    targets = targets.to(logits.dtype)
    foreground = targets[..., FOREGROUND]
    valid = foreground != IGNORE_VALUE
    if not valid.any():
        raise HarnessError(f"{who}: every pixel of the batch is ignored")
    fg_logits = logits[:, FOREGROUND]
    truth = torch.where(valid, foreground, torch.zeros_like(foreground))
    bce = F.binary_cross_entropy_with_logits(fg_logits[valid], truth[valid])
    probability = torch.sigmoid(fg_logits) * valid
    dice = 1 - (2 * (probability * truth).sum() + DICE_SMOOTH) / (probability.sum() + truth.sum() + DICE_SMOOTH)
    return bce + dice, valid, targets


def distance_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Foreground BCE + soft Dice (:func:`foreground_loss`) + DISTANCE_WEIGHT x L1 of the sigmoid
    distance, over valid pixels. ``logits``: (B, 2, H, W) float32; ``targets``: (B, H, W, 2) from
    :func:`distance_targets` (crops padded with IGNORE_VALUE)."""
    foreground, valid, targets = foreground_loss(logits, targets, 2, "distance_loss")
    l1 = (torch.sigmoid(logits[:, DISTANCE])[valid] - targets[..., DISTANCE][valid]).abs().mean()
    return foreground + DISTANCE_WEIGHT * l1


def distance_maps(logits: torch.Tensor) -> np.ndarray:
    """(2, H, W) float32 maps of one image's logits (1, 2, H, W): foreground probability, distance."""
    return torch.sigmoid(logits.float())[0].cpu().numpy()


def truth_maps(mask: np.ndarray) -> np.ndarray:
    """The maps a perfect network would output for ``mask``: the oracle's input."""
    return np.moveaxis(distance_targets(mask), -1, 0)


def distance_instances(
    maps: np.ndarray,
    seed_threshold: float = 0.5,
    foreground_threshold: float = 0.5,
    smooth_sigma: float = 1.0,
    min_size_px: int = 4,
    seed_dynamic: float = 0.0,
    min_share: float = 0.0,
) -> np.ndarray:
    """Instance labels (int32, 0 = background, ids 1..N in raster order) from (2, H, W) maps.

    The distance map is smoothed (Gaussian, ``smooth_sigma`` px) against pixel noise; seeds are the
    4-connected regions of smoothed distance above ``seed_threshold`` inside the foreground
    (probability above ``foreground_threshold``); they flood the foreground along decreasing distance.
    With ``seed_dynamic`` > 0, a seed is instead a regional maximum of the smoothed distance at least
    that much above the saddle to any higher one (h-maxima) that rises above the seed threshold: a
    particle whose map has several shallow peaks gets one seed, while touching particles, whose
    normalised maps dip to a low neck between them, keep one each. 0 (the default) is distmap-v2's rule.
    Particles under ``min_size_px`` pixels or under ``min_share`` of the largest are dropped
    (:func:`~harness.task.postprocess.seeded_watershed`).
    """
    return next(distance_instances_grid(maps, [{
        "seed_threshold": seed_threshold, "foreground_threshold": foreground_threshold,
        "smooth_sigma": smooth_sigma, "min_size_px": min_size_px, "seed_dynamic": seed_dynamic,
        "min_share": min_share}]))


def distance_instances_grid(maps: np.ndarray, candidates: Sequence[Mapping[str, Any]]) -> Iterator[np.ndarray]:
    """:func:`distance_instances` of ``maps`` for each parameter set in ``candidates``, in order, one
    at a time (the maps and the seed parameters are checked first, the sizes and shares as each is read).

    The same labels as one call per candidate; a stage is computed once for the candidates that
    share the parameters it reads (the smoothing, the h-maxima domes, the seeds, the watershed before
    the share), which makes tuning a grid of them several times faster.
    """
    maps = checked_maps(maps, 2, "distance_instances")
    readouts = [_Readout(**candidate) for candidate in candidates]
    return _read_each(maps, readouts)


def _read_each(maps: np.ndarray, readouts: list[_Readout]) -> Iterator[np.ndarray]:
    # Each stage is cached on the parameters it reads, so the candidates that agree on them share it.
    # The caches are bounded (memory stays a few images' worth on large micrographs) and sized for the
    # order of InstanceTask.candidates(), where the last grid key varies fastest: the share reads one
    # watershed 4 times in a row, while the h-maxima peaks serve every seed threshold (the first key).
    # Any other order gives the same labels, only more slowly.

    @lru_cache(maxsize=4)
    def distance(sigma: float) -> np.ndarray:
        smoothed = maps[DISTANCE].astype(np.float32)
        return ndimage.gaussian_filter(smoothed, sigma) if sigma > 0 else smoothed

    @lru_cache(maxsize=4)
    def foreground(threshold: float) -> np.ndarray:
        return maps[FOREGROUND] > threshold

    @lru_cache(maxsize=8)
    def tops(sigma: float, dynamic: float) -> np.ndarray:
        # the domes of the map lowered by h (reconstruction) have one flat top per h-significant
        # peak, also where two equal peaks meet above their saddle (skimage's h_maxima keeps both
        # there); each top is one seed, kept when its peak passes the threshold
        domes = morphology.reconstruction(distance(sigma) - dynamic, distance(sigma), method="dilation")
        return morphology.local_maxima(domes)

    @lru_cache(maxsize=16)
    def peaks(sigma: float, dynamic: float, fg: float) -> tuple[np.ndarray, np.ndarray]:
        labelled, count = ndimage.label(tops(sigma, dynamic) & foreground(fg))
        heights = np.asarray(ndimage.maximum(distance(sigma), labelled, np.arange(1, count + 1)), dtype=np.float32)
        return labelled, heights

    @lru_cache(maxsize=1)
    def seeds(sigma: float, dynamic: float, fg: float, threshold: float) -> np.ndarray:
        if dynamic > 0:
            labelled, heights = peaks(sigma, dynamic, fg)
            return ndimage.label(np.concatenate([[False], heights > threshold])[labelled])[0]
        return ndimage.label((distance(sigma) > threshold) & foreground(fg))[0]

    # several seed rules often mark the same seeds (every peak passes thresholds 0.3-0.7 on a clean
    # map), so the watershed is kept by what it reads: the smoothing, the foreground, the minimum
    # size and the seeds' digest; 12 entries span one seed threshold's 3 x 4 foregrounds and dynamics
    watersheds: dict[tuple[float, float, int, bytes], np.ndarray] = {}

    def watershed_labels(sigma: float, dynamic: float, fg: float, threshold: float, min_size: int) -> np.ndarray:
        markers = seeds(sigma, dynamic, fg, threshold)
        key = (sigma, fg, min_size, labels_digest(markers))
        if key not in watersheds:
            if len(watersheds) >= 12:
                del watersheds[next(iter(watersheds))]  # the oldest
            watersheds[key] = seeded_watershed(-distance(sigma), markers, foreground(fg), min_size)
        return watersheds[key]

    for r in readouts:
        labels = watershed_labels(r.smooth_sigma, r.seed_dynamic, r.foreground_threshold, r.seed_threshold,
                                  r.min_size_px)
        yield kept_over_share(labels, r.min_share)


@dataclass(frozen=True)
class _Readout:
    """One parameter set of :func:`distance_instances`, checked."""

    seed_threshold: float = 0.5
    foreground_threshold: float = 0.5
    smooth_sigma: float = 1.0
    min_size_px: int = 4
    seed_dynamic: float = 0.0
    min_share: float = 0.0

    def __post_init__(self) -> None:
        for name, value in (("seed_threshold", self.seed_threshold),
                            ("foreground_threshold", self.foreground_threshold)):
            if not 0.0 < value < 1.0:
                raise HarnessError(f"distance_instances: {name} must lie in (0, 1), got {value}")
        if self.smooth_sigma < 0:
            raise HarnessError(f"distance_instances: smooth_sigma must be >= 0, got {self.smooth_sigma}")
        if not 0.0 <= self.seed_dynamic < 1.0:
            raise HarnessError(f"distance_instances: seed_dynamic must lie in [0, 1), got {self.seed_dynamic}")
        # min_size_px and min_share are checked where they act: seeded_watershed, drop_under_share
