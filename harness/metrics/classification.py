"""Classification scores of the ``classify`` task: accuracy and macro-F1, overall and per
length-scale bin, each with a 95 % bootstrap confidence interval over test images.

Accuracy is the mean of per-image correctness, so its interval is the same bootstrap as every
particle metric's (:func:`harness.metrics.aggregate.summarise`). Macro-F1 is the unweighted mean
over classes of 2 TP / (2 TP + FP + FN); a class neither present nor predicted in a group is left
out of that group's mean. Its interval resamples images with their (truth, prediction) pairs
(percentile bootstrap: the statistic is not smooth in the data).
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.stats import bootstrap

from harness.data.scales import SCALE_NAMES, UNKNOWN_SCALE
from harness.metrics.aggregate import (
    CONFIDENCE_LEVEL,
    N_RESAMPLES,
    OVERALL,
    Headline,
    HeadlineScore,
    MetricSummary,
    group_images,
    group_summary,
    summarise,
)
from harness.metrics.scores import MetricInfo

#: The classification task's version (harness.task.classify); here, where torch-free readers of
#: records (the leaderboard) can see it.
CLASSIFY_TASK = "classify-v1"
ACCURACY = "accuracy"
MACRO_F1 = "macro_f1"
#: The classification scores as the tables know metrics (the headline first).
CLASSIFICATION_METRICS: dict[str, MetricInfo] = {
    ACCURACY: MetricInfo("accuracy", "higher", "share of test images whose class the probe gets right"),
    MACRO_F1: MetricInfo("macro-F1", "higher", "mean over classes of 2 TP / (2 TP + FP + FN)"),
}


def macro_f1(truth: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    """Unweighted mean over the classes present in ``truth`` or ``predicted`` of their F1."""
    scores = []
    for c in range(classes):
        tp = int(np.sum((truth == c) & (predicted == c)))
        fp = int(np.sum((truth != c) & (predicted == c)))
        fn = int(np.sum((truth == c) & (predicted != c)))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def _macro_f1_interval(truth: np.ndarray, predicted: np.ndarray, classes: int, seed: int,
                       group: str) -> tuple[float | None, float | None]:
    if truth.size < 2:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate resample distribution warns; the interval is still right
        result = bootstrap((truth, predicted), lambda t, p: macro_f1(t, p, classes), paired=True, vectorized=False,
                           confidence_level=CONFIDENCE_LEVEL, n_resamples=N_RESAMPLES // 5, method="percentile",
                           rng=np.random.default_rng([seed, zlib.crc32(f"{group}/{MACRO_F1}".encode())]))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return (low, high) if np.isfinite(low) and np.isfinite(high) else (None, None)


class ClassScores(BaseModel):
    """One reader's test scores in one group of images."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_images: int
    accuracy: MetricSummary
    macro_f1: MetricSummary


def class_scores(truth: Sequence[int], predicted: Sequence[int], length_scales: Sequence[str], classes: int,
                 seed: int = 0) -> dict[str, ClassScores]:
    """Scores per length-scale bin present and :data:`~harness.metrics.aggregate.OVERALL`."""
    t, p, scales = np.asarray(truth), np.asarray(predicted), np.asarray(length_scales)
    groups: dict[str, ClassScores] = {}
    for group in (*SCALE_NAMES, UNKNOWN_SCALE, OVERALL):
        chosen = np.ones(t.size, bool) if group == OVERALL else scales == group
        if not chosen.any():
            continue
        gt, gp = t[chosen], p[chosen]
        correct = [float(v) for v in (gt == gp)]
        f1 = macro_f1(gt, gp, classes)
        low, high = _macro_f1_interval(gt, gp, classes, seed, group)
        groups[group] = ClassScores(
            n_images=int(chosen.sum()),
            accuracy=summarise(correct, seed, group, ACCURACY),
            macro_f1=MetricSummary(mean=f1, ci_low=low, ci_high=high, n=int(chosen.sum()), n_undefined=0),
        )
    return groups


#: The readers of a classification record; the first is the headline's.
READERS = ("probe", "knn")


class ClassGroup(BaseModel):
    """The headline reader's scores in one group, in the shape of a segmentation group (the tables
    read both alike)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_images: int
    per_image: dict[str, MetricSummary]


class ClassificationReport(BaseModel):
    """The ``metrics`` of a classification record: every reader's scores, and the headline reader's
    again as ``groups``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: Literal["classify-v1"]  # CLASSIFY_TASK (a Literal must spell its value)
    classes: list[str]
    seed: int
    reader: str
    groups: dict[str, ClassGroup]
    readers: dict[str, dict[str, ClassScores]]

    def summary(self, group: str, metric: str) -> MetricSummary | None:
        return group_summary(self.groups, group, metric)

    def n_images(self, group: str = OVERALL) -> int | None:
        return group_images(self.groups, group)


class ClassificationHeadline(Headline):
    """A classification record's headline (accuracy, with macro-F1 as companion) and its reader."""

    reader: str


def _score(summary: ClassScores) -> dict[str, Any]:
    return HeadlineScore.fields(summary.accuracy, summary.macro_f1, summary.n_images)


def classification_report(rows: Sequence[dict[str, Any]], classes: Sequence[str],
                          seed: int) -> tuple[ClassificationReport, ClassificationHeadline]:
    """The metrics and headline of a classification record from its per-image rows (``truth``,
    each reader's prediction, ``length_scale``): what a run writes and what the leaderboard
    recomputes."""
    position = {c: i for i, c in enumerate(classes)}
    truth = [position[r["truth"]] for r in rows]
    scales = [r["length_scale"] for r in rows]
    readers = {name: class_scores(truth, [position[r[name]] for r in rows], scales, len(classes), seed)
               for name in READERS}
    head = readers[READERS[0]]
    metrics = ClassificationReport(
        task=CLASSIFY_TASK, classes=list(classes), seed=seed, reader=READERS[0],
        groups={g: ClassGroup(n_images=s.n_images, per_image={ACCURACY: s.accuracy, MACRO_F1: s.macro_f1})
                for g, s in head.items()},
        readers=readers,
    )
    headline = ClassificationHeadline(
        metric=ACCURACY, companion_metric=MACRO_F1, reader=READERS[0], **_score(head[OVERALL]),
        per_length_scale={g: HeadlineScore(**_score(s)) for g, s in head.items() if g != OVERALL},
    )
    return metrics, headline


def check_rows(rows: Any, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Per-image rows of a classification record, or ValueError naming what is wrong."""
    if not isinstance(rows, list):
        raise ValueError("not a list of per-image rows")
    needed = ("id", "length_scale", "truth", *READERS, ACCURACY)
    for k, row in enumerate(rows):
        if not isinstance(row, dict) or any(key not in row for key in needed):
            raise ValueError(f"row {k} lacks one of {', '.join(needed)}")
        unknown = [row[key] for key in ("truth", *READERS) if row[key] not in classes]
        if unknown:
            raise ValueError(f"row {k}: class {unknown[0]!r} is not one of {', '.join(classes)}")
        if row[ACCURACY] != float(row["truth"] == row[READERS[0]]):
            raise ValueError(f"row {k}: accuracy {row[ACCURACY]} disagrees with its truth and prediction")
    return rows
