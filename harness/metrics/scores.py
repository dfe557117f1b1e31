"""Per-image scores of a predicted instance mask against the true one.

Every score is a finite float or an explicit ``None`` meaning "undefined for this image", with one
rule per score (README.md, "Metrics" lists them all):

- count errors are None when the image has no true particles (a relative error of 0 is undefined;
  ``count_abs_error`` and the pooled count error still register false detections there);
- size errors are None when either side has no particle clear of the border (nothing to size);
- precision is None when nothing was predicted, recall when nothing is true; F1 is always defined
  (1 when both are empty: nothing to find and nothing found);
- mean matched IoU is None without matches; pixel IoU and Dice are 1 when both masks are empty.

The same formula functions compute the pooled scores in :mod:`harness.metrics.aggregate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator
from scipy.stats import wasserstein_distance

from harness.errors import HarnessError
from harness.metrics.masks import check_labels
from harness.metrics.match import DEFAULT_IOU_THRESHOLD, match, overlaps
from harness.metrics.measure import Units, check_pixel_size, crop_databar, dense_labels, measure_dense


@dataclass(frozen=True)
class MetricInfo:
    label: str
    better: Literal["lower", "higher", "zero"]  # "zero": closest to 0 is best
    description: str


#: Every score, in display order. Count and size errors are fractions (0.1 = 10 %).
METRICS: dict[str, MetricInfo] = {
    "count_rel_error": MetricInfo("rel. count error", "lower", "|N_pred - N_true| / N_true"),
    "count_signed_rel_error": MetricInfo(
        "signed rel. count error", "zero", "(N_pred - N_true) / N_true; > 0 over-, < 0 under-counts"
    ),
    "mean_diameter_rel_error": MetricInfo(
        "rel. mean diameter error", "lower", "|mean d_pred - mean d_true| / mean d_true"
    ),
    "median_diameter_rel_error": MetricInfo(
        "rel. median diameter error", "lower", "|median d_pred - median d_true| / median d_true"
    ),
    "size_w1_rel": MetricInfo("size distribution W1 / mean d", "lower", "W1(d_pred, d_true) / mean d_true"),
    "precision": MetricInfo("precision @IoU", "higher", "TP / N_pred"),
    "recall": MetricInfo("recall @IoU", "higher", "TP / N_true"),
    "f1": MetricInfo("F1 @IoU", "higher", "2 TP / (N_pred + N_true)"),
    "mean_matched_iou": MetricInfo("mean matched IoU", "higher", "mean IoU of matched pairs"),
    "pixel_iou": MetricInfo("foreground pixel IoU", "higher", "|P & T| / |P | T| over foreground pixels"),
    "dice": MetricInfo("foreground Dice", "higher", "2 |P & T| / (|P| + |T|) over foreground pixels"),
}
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)

#: The headline: relative particle-count error, the quantity the source work reports across
#: length scales. It is shown with :data:`COMPANION_METRIC` beside it, because a model can count
#: right and size wrong.
HEADLINE_METRIC = "count_rel_error"
COMPANION_METRIC = "mean_diameter_rel_error"


# ---- formulas, shared by per-image and pooled scores -------------------------------------------


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, None when the denominator is 0."""
    return None if denominator == 0 else float(numerator) / float(denominator)


def count_scores(n_pred: int, n_true: int) -> dict[str, float | None]:
    signed = ratio(n_pred - n_true, n_true)
    return {"count_rel_error": None if signed is None else abs(signed), "count_signed_rel_error": signed}


def size_scores(pred_diameters: np.ndarray, true_diameters: np.ndarray) -> dict[str, float | None]:
    """Relative mean/median diameter errors and the normalised 1-Wasserstein distance."""
    if pred_diameters.size == 0 or true_diameters.size == 0:
        return {"mean_diameter_rel_error": None, "median_diameter_rel_error": None, "size_w1_rel": None}
    true_mean = float(np.mean(true_diameters))
    true_median = float(np.median(true_diameters))
    return {
        "mean_diameter_rel_error": abs(float(np.mean(pred_diameters)) - true_mean) / true_mean,
        "median_diameter_rel_error": abs(float(np.median(pred_diameters)) - true_median) / true_median,
        "size_w1_rel": float(wasserstein_distance(pred_diameters, true_diameters)) / true_mean,
    }


def detection_scores(matched: int, n_pred: int, n_true: int, matched_iou_sum: float) -> dict[str, float | None]:
    empty = n_pred == 0 and n_true == 0
    return {
        "precision": 1.0 if empty else ratio(matched, n_pred),
        "recall": 1.0 if empty else ratio(matched, n_true),
        "f1": 1.0 if empty else 2.0 * matched / (n_pred + n_true),
        "mean_matched_iou": ratio(matched_iou_sum, matched),
    }


def pixel_scores(intersection: int, fg_pred: int, fg_true: int) -> dict[str, float]:
    if fg_pred == 0 and fg_true == 0:
        return {"pixel_iou": 1.0, "dice": 1.0}
    return {
        "pixel_iou": intersection / (fg_pred + fg_true - intersection),
        "dice": 2.0 * intersection / (fg_pred + fg_true),
    }


# ---- the per-image record ----------------------------------------------------------------------


class ImageScores(BaseModel):
    """Measurements and scores of one image; JSON-serialisable, every float finite or None.

    Diameters (equivalent circular, of particles clear of the border) are in :attr:`units`:
    nm when the pixel size is known, px otherwise. Pixel counts exclude the data bar.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    units: Units
    pixel_size_nm: float | None
    databar_rows: int
    iou_threshold: float
    n_true: int
    n_pred: int
    n_true_border: int
    n_pred_border: int
    true_diameters: list[float]
    pred_diameters: list[float]
    true_mean_diameter: float | None
    pred_mean_diameter: float | None
    true_median_diameter: float | None
    pred_median_diameter: float | None
    matched: int
    false_positives: int
    false_negatives: int
    matched_iou_sum: float
    fg_true_px: int
    fg_pred_px: int
    fg_intersection_px: int
    count_abs_error: int
    count_rel_error: float | None
    count_signed_rel_error: float | None
    mean_diameter_rel_error: float | None
    median_diameter_rel_error: float | None
    size_w1_rel: float | None
    precision: float | None
    recall: float | None
    f1: float
    mean_matched_iou: float | None
    pixel_iou: float
    dice: float

    @model_validator(mode="after")
    def _finite(self) -> ImageScores:
        for name, value in self:
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise ValueError(f"{name} must be finite or None, got a non-finite value")
        return self

    def metric(self, name: str) -> float | None:
        """The score ``name`` (one of :data:`METRIC_NAMES`)."""
        if name not in METRICS:
            raise HarnessError(f"unknown metric {name!r}; known: {', '.join(METRIC_NAMES)}")
        return getattr(self, name)


def _summary(values: np.ndarray) -> tuple[float | None, float | None]:
    if values.size == 0:
        return None, None
    return float(np.mean(values)), float(np.median(values))


def score_image(
    pred: np.ndarray,
    truth: np.ndarray,
    pixel_size_nm: float | None,
    databar_rows: int = 0,
    *,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
) -> ImageScores:
    """Score a predicted instance label image against the true one (both 0 = background).

    ``pixel_size_nm`` None means unknown (sizes in px). The ``databar_rows`` bottom rows are
    removed from both masks before anything is measured. Particles touching the border are
    counted and matched but left out of size statistics. Binary masks must first go through
    :func:`harness.metrics.binary_to_instances`.
    """
    pred = check_labels(pred, "pred")
    truth = check_labels(truth, "truth")
    if pred.shape != truth.shape:
        raise HarnessError(f"pred and truth shapes differ: {pred.shape} vs {truth.shape}")
    if not (isinstance(iou_threshold, (int, float)) and 0 < iou_threshold <= 1):
        raise HarnessError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    pixel_size_nm = check_pixel_size(pixel_size_nm)
    pred = crop_databar(pred, databar_rows, "pred")
    truth = crop_databar(truth, databar_rows, "truth")

    pred_dense, pred_ids, pred_areas = dense_labels(pred)
    truth_dense, truth_ids, truth_areas = dense_labels(truth)
    pred_particles = measure_dense(pred_dense, pred_ids, pred_areas, pixel_size_nm)
    truth_particles = measure_dense(truth_dense, truth_ids, truth_areas, pixel_size_nm)
    pairs = overlaps(pred_dense, truth_dense, pred_areas, truth_areas)
    matching = match(pairs, float(iou_threshold))

    n_pred, n_true, matched = pred_particles.count, truth_particles.count, matching.count
    matched_iou_sum = float(matching.iou.sum())
    pred_d, true_d = pred_particles.sized_diameters, truth_particles.sized_diameters
    fg_pred, fg_true = int(pred_areas.sum()), int(truth_areas.sum())
    pred_mean, pred_median = _summary(pred_d)
    true_mean, true_median = _summary(true_d)
    return ImageScores(
        units=truth_particles.units,
        pixel_size_nm=pixel_size_nm,
        databar_rows=int(databar_rows),
        iou_threshold=float(iou_threshold),
        n_true=n_true,
        n_pred=n_pred,
        n_true_border=int(truth_particles.touches_border.sum()),
        n_pred_border=int(pred_particles.touches_border.sum()),
        true_diameters=true_d.tolist(),
        pred_diameters=pred_d.tolist(),
        true_mean_diameter=true_mean,
        pred_mean_diameter=pred_mean,
        true_median_diameter=true_median,
        pred_median_diameter=pred_median,
        matched=matched,
        false_positives=n_pred - matched,
        false_negatives=n_true - matched,
        matched_iou_sum=matched_iou_sum,
        fg_true_px=fg_true,
        fg_pred_px=fg_pred,
        fg_intersection_px=pairs.foreground_intersection,
        count_abs_error=abs(n_pred - n_true),
        **count_scores(n_pred, n_true),
        **size_scores(pred_d, true_d),
        **detection_scores(matched, n_pred, n_true, matched_iou_sum),
        **pixel_scores(pairs.foreground_intersection, fg_pred, fg_true),
    )
