"""Overlaps between predicted and true particles, and one-to-one matching at an IoU threshold.

Overlaps come from one pass over a joint encoding ``pred * (K_true + 1) + truth`` of the pixels
where both masks are foreground, so only particle pairs that actually share pixels are ever
looked at. Matching maximises, among pairs with IoU >= threshold, first the number of matches and
then the summed IoU (``scipy.optimize.linear_sum_assignment``). At threshold 0.5 and above a
particle can only exceed the threshold with one partner except in exact ties, so the assignment
solver is only called when some particle has two or more candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

DEFAULT_IOU_THRESHOLD = 0.5

#: Joint id ranges up to this many entries per pixel are counted with ``np.bincount``.
_BINCOUNT_FACTOR = 4


@dataclass(frozen=True, eq=False)
class Overlaps:
    """Every (pred, truth) pair sharing at least one pixel, with dense ids starting at 1."""

    pred: np.ndarray  # dense pred ids, int64
    truth: np.ndarray  # dense truth ids, int64
    intersection: np.ndarray  # shared pixels, int64
    iou: np.ndarray  # float64

    @property
    def foreground_intersection(self) -> int:
        """Pixels that are foreground in both masks."""
        return int(self.intersection.sum())


def overlaps(
    pred_dense: np.ndarray, truth_dense: np.ndarray, pred_areas: np.ndarray, truth_areas: np.ndarray
) -> Overlaps:
    """Pairwise intersections and IoUs of two consecutive-id label images of the same shape."""
    both = (pred_dense > 0) & (truth_dense > 0)
    n_truth = truth_areas.size
    key = pred_dense[both].astype(np.int64) * (n_truth + 1) + truth_dense[both]
    span = (pred_areas.size + 1) * (n_truth + 1)
    if span <= _BINCOUNT_FACTOR * pred_dense.size + 65536:
        counts = np.bincount(key, minlength=0)
        codes = np.flatnonzero(counts)
        inter = counts[codes]
    else:
        codes, inter = np.unique(key, return_counts=True)
    pred_ids, truth_ids = np.divmod(codes, n_truth + 1)
    inter = inter.astype(np.int64)
    union = pred_areas[pred_ids - 1] + truth_areas[truth_ids - 1] - inter
    return Overlaps(pred=pred_ids, truth=truth_ids, intersection=inter, iou=inter / union)


@dataclass(frozen=True, eq=False)
class Matching:
    """One-to-one matched pairs (dense ids) and their IoU."""

    pred: np.ndarray
    truth: np.ndarray
    iou: np.ndarray

    @property
    def count(self) -> int:
        return int(self.iou.size)


def match(pairs: Overlaps, threshold: float = DEFAULT_IOU_THRESHOLD) -> Matching:
    """Optimal one-to-one matching among pairs with IoU >= ``threshold``."""
    keep = pairs.iou >= threshold
    pred, truth, iou = pairs.pred[keep], pairs.truth[keep], pairs.iou[keep]
    if iou.size == 0:
        return Matching(pred=pred, truth=truth, iou=iou)
    pred_rows, pred_index = np.unique(pred, return_inverse=True)
    truth_cols, truth_index = np.unique(truth, return_inverse=True)
    if pred_rows.size == pred.size and truth_cols.size == truth.size:
        return Matching(pred=pred, truth=truth, iou=iou)  # no particle has two candidates
    # Weight BIG + IoU: any extra match outweighs every possible IoU gain (each IoU <= 1).
    big = float(min(pred_rows.size, truth_cols.size) + 1)
    table = np.zeros((pred_rows.size, truth_cols.size))
    table[pred_index, truth_index] = iou
    weights = np.where(table > 0, big + table, 0.0)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    chosen = table[rows, cols] > 0
    rows, cols = rows[chosen], cols[chosen]
    return Matching(pred=pred_rows[rows], truth=truth_cols[cols], iou=table[rows, cols])
