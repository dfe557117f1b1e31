"""A slow, independent implementation of :func:`harness.metrics.score_image`, for tests and benchmarks.

It shares no code with the fast path: sizes and border contact come from
``skimage.measure.regionprops``, every (pred, truth) pair's IoU is computed from the two
particles' own pixel masks (pairs whose bounding boxes do not overlap have IoU 0 exactly), the
matching runs on the full pairwise matrix, and the Wasserstein distance is integrated from the
two empirical CDFs by hand. Only the definitions (README.md, "Metrics") are common.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.measure import regionprops


def _regions(labels: np.ndarray, scale: float) -> list[dict[str, Any]]:
    height, width = labels.shape
    regions = []
    for prop in regionprops(labels.astype(np.int64)):
        min_r, min_c, max_r, max_c = prop.bbox
        regions.append(
            {
                "area": int(prop.area),
                "diameter": float(prop.equivalent_diameter_area) * scale,
                "border": min_r == 0 or min_c == 0 or max_r == height or max_c == width,
                "bbox": prop.bbox,
                "image": prop.image,
            }
        )
    return regions


def _pair_iou(a: dict[str, Any], b: dict[str, Any]) -> float:
    r0, c0 = max(a["bbox"][0], b["bbox"][0]), max(a["bbox"][1], b["bbox"][1])
    r1, c1 = min(a["bbox"][2], b["bbox"][2]), min(a["bbox"][3], b["bbox"][3])
    if r0 >= r1 or c0 >= c1:
        return 0.0
    wa = a["image"][r0 - a["bbox"][0] : r1 - a["bbox"][0], c0 - a["bbox"][1] : c1 - a["bbox"][1]]
    wb = b["image"][r0 - b["bbox"][0] : r1 - b["bbox"][0], c0 - b["bbox"][1] : c1 - b["bbox"][1]]
    inter = int(np.count_nonzero(wa & wb))
    return inter / (a["area"] + b["area"] - inter)


def _iou_matrix(pr: list[dict[str, Any]], tr: list[dict[str, Any]]) -> np.ndarray:
    return np.array([[_pair_iou(a, b) for b in tr] for a in pr], dtype=np.float64).reshape(len(pr), len(tr))


def reference_iou_matrix(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU of every (pred particle, true particle) pair, both in order of label id."""
    return _iou_matrix(_regions(pred, 1.0), _regions(truth, 1.0))


def reference_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Pairs (pred index, truth index, IoU): most matches at IoU >= threshold, then most total IoU."""
    if iou.size == 0:
        return []
    big = float(min(iou.shape) + 1)
    weights = np.where(iou >= threshold, big + iou, 0.0)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if weights[r, c] > 0]


def reference_w1(u: np.ndarray, v: np.ndarray) -> float:
    """1-Wasserstein distance of two samples: the area between their empirical CDFs."""
    grid = np.sort(np.concatenate([u, v]))
    cdf_u = np.searchsorted(np.sort(u), grid[:-1], side="right") / u.size
    cdf_v = np.searchsorted(np.sort(v), grid[:-1], side="right") / v.size
    return float(np.sum(np.abs(cdf_u - cdf_v) * np.diff(grid)))


def reference_score_image(
    pred: np.ndarray, truth: np.ndarray, pixel_size_nm: float | None, databar_rows: int = 0, iou_threshold: float = 0.5
) -> dict[str, Any]:
    """The numeric fields of :class:`~harness.metrics.ImageScores`, computed the slow way."""
    rows = pred.shape[0] - databar_rows
    pred, truth = np.asarray(pred)[:rows], np.asarray(truth)[:rows]
    scale = 1.0 if pixel_size_nm is None else float(pixel_size_nm)
    pr, tr = _regions(pred, scale), _regions(truth, scale)
    iou = _iou_matrix(pr, tr)
    pairs = reference_match(iou, iou_threshold)
    pred_d = np.array([r["diameter"] for r in pr if not r["border"]])
    true_d = np.array([r["diameter"] for r in tr if not r["border"]])
    n_pred, n_true, tp = len(pr), len(tr), len(pairs)
    fg_p, fg_t = int(np.count_nonzero(pred)), int(np.count_nonzero(truth))
    fg_i = int(np.count_nonzero((pred > 0) & (truth > 0)))
    fg_u = int(np.count_nonzero((pred > 0) | (truth > 0)))
    out: dict[str, Any] = {
        "n_pred": n_pred,
        "n_true": n_true,
        "n_pred_border": sum(r["border"] for r in pr),
        "n_true_border": sum(r["border"] for r in tr),
        "pred_diameters": pred_d.tolist(),
        "true_diameters": true_d.tolist(),
        "pred_areas_px": [r["area"] for r in pr],
        "true_areas_px": [r["area"] for r in tr],
        "matched": tp,
        "matched_pairs": pairs,
        "false_positives": n_pred - tp,
        "false_negatives": n_true - tp,
        "matched_iou_sum": sum(p[2] for p in pairs),
        "fg_pred_px": fg_p,
        "fg_true_px": fg_t,
        "fg_intersection_px": fg_i,
        "count_abs_error": abs(n_pred - n_true),
        "count_rel_error": abs(n_pred - n_true) / n_true if n_true else None,
        "count_signed_rel_error": (n_pred - n_true) / n_true if n_true else None,
        "precision": (tp / n_pred if n_pred else None) if (n_pred or n_true) else 1.0,
        "recall": (tp / n_true if n_true else None) if (n_pred or n_true) else 1.0,
        "f1": 2 * tp / (n_pred + n_true) if (n_pred or n_true) else 1.0,
        "mean_matched_iou": float(np.mean([p[2] for p in pairs])) if pairs else None,
        "pixel_iou": fg_i / fg_u if fg_u else 1.0,
        "dice": 2 * fg_i / (fg_p + fg_t) if (fg_p + fg_t) else 1.0,
    }
    if pred_d.size and true_d.size:
        mean_t, median_t = float(np.mean(true_d)), float(np.median(true_d))
        out["mean_diameter_rel_error"] = abs(float(np.mean(pred_d)) - mean_t) / mean_t
        out["median_diameter_rel_error"] = abs(float(np.median(pred_d)) - median_t) / median_t
        out["size_w1_rel"] = reference_w1(pred_d, true_d) / mean_t
    else:
        out["mean_diameter_rel_error"] = out["median_diameter_rel_error"] = out["size_w1_rel"] = None
    if any(isinstance(v, float) and not math.isfinite(v) for v in out.values()):
        raise ValueError("reference produced a non-finite score")
    return out
