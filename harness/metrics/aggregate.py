"""Aggregating per-image scores per length-scale bin and overall.

Two views of every score, because they answer different questions:

- **mean over images** with a 95 % bootstrap confidence interval over images (BCa,
  ``scipy.stats.bootstrap``, fixed seed): how well does the model do on a typical micrograph?
  Images where a score is undefined (None) are left out of that score's mean and counted.
- **pooled**: the same formula applied to the sums over all images (all particles, all pixels,
  all sizeable diameters in one distribution): how well does it do on the material as a whole?
  Pooled size scores need one unit, so they are None for a group mixing nm and px images.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.stats import bootstrap
from tabulate import tabulate

from harness.data.scales import SCALE_NAMES, UNKNOWN_SCALE
from harness.errors import HarnessError
from harness.metrics.scores import (
    COMPANION_METRIC,
    HEADLINE_METRIC,
    METRIC_NAMES,
    METRICS,
    ImageScores,
    count_scores,
    detection_scores,
    pixel_scores,
    size_scores,
)

OVERALL = "overall"
GROUP_ORDER: tuple[str, ...] = (*SCALE_NAMES, UNKNOWN_SCALE, OVERALL)
CONFIDENCE_LEVEL = 0.95
N_RESAMPLES = 9999
_BETTER = {"lower": "lower", "higher": "higher", "zero": "near 0"}


class MetricSummary(BaseModel):
    """Mean over the images where a score is defined, with its bootstrap CI.

    ``ci_low``/``ci_high`` are None with fewer than two defined values; equal to the mean when
    all values are equal (no spread to resample).
    """

    model_config = ConfigDict(frozen=True)

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    n_undefined: int


class GroupMetrics(BaseModel):
    """One length-scale bin (or all images): per-image means and pooled scores."""

    model_config = ConfigDict(frozen=True)

    name: str
    n_images: int
    n_true: int
    n_pred: int
    units: Literal["nm", "px", "mixed"]
    per_image: dict[str, MetricSummary]
    pooled: dict[str, float | None]


def group_summary(groups: Mapping[str, Any], group: str, metric: str) -> MetricSummary | None:
    """``groups[group].per_image[metric]`` of a report (segment or classify); None where absent."""
    return groups[group].per_image.get(metric) if group in groups else None


def group_images(groups: Mapping[str, Any], group: str) -> int | None:
    return groups[group].n_images if group in groups else None


class HeadlineScore(BaseModel):
    """The headline metric and its companion in one group of images, as a record states them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float | None
    ci95: tuple[float | None, float | None]
    n_images: int
    companion_value: float | None
    companion_ci95: tuple[float | None, float | None]

    @staticmethod
    def fields(head: MetricSummary, companion: MetricSummary, n_images: int) -> dict[str, Any]:
        """The fields of a score from its two metrics' summaries, for a HeadlineScore or a Headline."""
        return {"value": head.mean, "ci95": (head.ci_low, head.ci_high), "n_images": n_images,
                "companion_value": companion.mean, "companion_ci95": (companion.ci_low, companion.ci_high)}


class Headline(HeadlineScore):
    """A record's headline: the headline metric and its companion overall, and per length-scale bin."""

    metric: str
    companion_metric: str
    per_length_scale: dict[str, HeadlineScore]


class MetricsReport(BaseModel):
    """Scores per length-scale bin and overall; ``groups`` is ordered as :data:`GROUP_ORDER`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    headline_metric: str = HEADLINE_METRIC
    companion_metric: str = COMPANION_METRIC
    iou_threshold: float
    confidence_level: float = CONFIDENCE_LEVEL
    n_resamples: int = N_RESAMPLES
    seed: int
    groups: dict[str, GroupMetrics]

    def group(self, name: str = OVERALL) -> GroupMetrics:
        if name not in self.groups:
            raise HarnessError(f"no images in length-scale group {name!r}; present: {', '.join(self.groups)}")
        return self.groups[name]

    def overall_mean(self, metric: str) -> float:
        """Mean over all images of ``metric``; a HarnessError when no image defines it."""
        if metric not in METRICS:
            raise HarnessError(f"unknown metric {metric!r}; known: {', '.join(METRIC_NAMES)}")
        value = self.group(OVERALL).per_image[metric].mean
        if value is None:
            raise HarnessError(f"metric {metric!r} is undefined on every image (see the README, section Metrics)")
        return value

    def summary(self, group: str, metric: str) -> MetricSummary | None:
        """The per-image summary of ``metric`` in ``group``; None where the group or metric is absent."""
        return group_summary(self.groups, group, metric)

    def n_images(self, group: str = OVERALL) -> int | None:
        return group_images(self.groups, group)

    def headline(self) -> Headline:
        """The headline metric and its companion, overall and per bin."""

        def entry(group: GroupMetrics) -> dict[str, Any]:
            per_image = group.per_image
            return HeadlineScore.fields(per_image[self.headline_metric], per_image[self.companion_metric],
                                        group.n_images)

        return Headline(
            metric=self.headline_metric,
            companion_metric=self.companion_metric,
            **entry(self.group(OVERALL)),
            per_length_scale={name: HeadlineScore(**entry(g)) for name, g in self.groups.items() if name != OVERALL},
        )

    def table(self, metrics: Sequence[str] | None = None) -> str:
        """Plain-text tables (tabulate): per-image means with CIs, then pooled scores."""
        names = list(metrics) if metrics is not None else list(METRIC_NAMES)
        unknown = [m for m in names if m not in METRICS]
        if unknown:
            raise HarnessError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRIC_NAMES)}")
        groups = list(self.groups.values())
        headers = ["", "better", *(g.name for g in groups)]
        facts = [
            ["images", "", *(g.n_images for g in groups)],
            ["particles true / pred", "", *(f"{g.n_true} / {g.n_pred}" for g in groups)],
            ["size units", "", *(g.units for g in groups)],
        ]

        def label(name: str) -> str:
            mark = " *" if name == self.headline_metric else (" +" if name == self.companion_metric else "")
            return METRICS[name].label + mark

        means = [[label(m), _BETTER[METRICS[m].better], *(_cell(g.per_image[m], g.n_images) for g in groups)]
                 for m in names]
        pooled = [[label(m), _BETTER[METRICS[m].better], *(_number(g.pooled[m]) for g in groups)]
                  for m in names]
        level = round(self.confidence_level * 100)
        return "\n".join(
            [
                f"Mean over images [{level}% bootstrap CI]  (IoU threshold {self.iou_threshold:g})",
                tabulate(facts + means, headers=headers, disable_numparse=True),
                "",
                "Pooled over all particles and pixels",
                tabulate(pooled, headers=headers, disable_numparse=True),
                "",
                f"* headline ({self.headline_metric})  + shown beside it ({self.companion_metric});"
                " n/a = undefined, (n=k) = defined on k images only; errors are fractions (0.1 = 10%)",
            ]
        )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _cell(summary: MetricSummary, n_images: int) -> str:
    if summary.mean is None:
        return "n/a"
    text = _number(summary.mean)
    if summary.ci_low is not None and summary.ci_high is not None:
        text += f" [{summary.ci_low:.3f}, {summary.ci_high:.3f}]"
    if summary.n < n_images:
        text += f" (n={summary.n})"
    return text


def _seed_for(seed: int, group: str, metric: str) -> np.random.Generator:
    """A generator per (group, metric), so a CI does not depend on which other groups exist."""
    return np.random.default_rng([seed, zlib.crc32(f"{group}/{metric}".encode())])


def summarise(values: Sequence[float | None], seed: int, group: str, metric: str) -> MetricSummary:
    """Mean and 95 % bootstrap CI over the defined values (BCa; percentile if BCa degenerates)."""
    defined = np.array([v for v in values if v is not None], dtype=np.float64)
    n_undefined = len(values) - defined.size
    if defined.size == 0:
        return MetricSummary(mean=None, ci_low=None, ci_high=None, n=0, n_undefined=n_undefined)
    mean = float(defined.mean())
    if defined.size < 2:
        return MetricSummary(mean=mean, ci_low=None, ci_high=None, n=1, n_undefined=n_undefined)
    if np.all(defined == defined[0]):
        return MetricSummary(mean=mean, ci_low=mean, ci_high=mean, n=int(defined.size), n_undefined=n_undefined)
    low = high = float("nan")
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BCa warns on tiny samples; the fallback handles it
            result = bootstrap(
                (defined,),
                np.mean,
                confidence_level=CONFIDENCE_LEVEL,
                n_resamples=N_RESAMPLES,
                method=method,
                rng=_seed_for(seed, group, metric),
                vectorized=True,
            )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            break
    if not (np.isfinite(low) and np.isfinite(high)):  # pragma: no cover - percentile is always finite here
        low, high = float(defined.min()), float(defined.max())
    return MetricSummary(mean=mean, ci_low=low, ci_high=high, n=int(defined.size), n_undefined=n_undefined)


def pooled_scores(scores: Sequence[ImageScores]) -> dict[str, float | None]:
    """Each formula applied to totals over ``scores`` (sizes only when all share one unit)."""
    n_pred = sum(s.n_pred for s in scores)
    n_true = sum(s.n_true for s in scores)
    matched = sum(s.matched for s in scores)
    if len({s.units for s in scores}) == 1:
        pred_d = np.array([d for s in scores for d in s.pred_diameters], dtype=np.float64)
        true_d = np.array([d for s in scores for d in s.true_diameters], dtype=np.float64)
        sizes = size_scores(pred_d, true_d)
    else:
        sizes = size_scores(np.empty(0), np.empty(0))
    values = {
        **count_scores(n_pred, n_true),
        **sizes,
        **detection_scores(matched, n_pred, n_true, sum(s.matched_iou_sum for s in scores)),
        **pixel_scores(
            sum(s.fg_intersection_px for s in scores),
            sum(s.fg_pred_px for s in scores),
            sum(s.fg_true_px for s in scores),
        ),
    }
    return {name: values[name] for name in METRIC_NAMES}


def _group(name: str, scores: Sequence[ImageScores], seed: int) -> GroupMetrics:
    units = {s.units for s in scores}
    return GroupMetrics(
        name=name,
        n_images=len(scores),
        n_true=sum(s.n_true for s in scores),
        n_pred=sum(s.n_pred for s in scores),
        units=units.pop() if len(units) == 1 else "mixed",
        per_image={m: summarise([s.metric(m) for s in scores], seed, name, m) for m in METRIC_NAMES},
        pooled=pooled_scores(scores),
    )


def aggregate(scores: list[ImageScores], length_scales: list[str], seed: int = 0) -> MetricsReport:
    """Scores per length-scale bin (names from :mod:`harness.data.scales`, incl. "unknown") and overall.

    ``length_scales[i]`` is the bin of ``scores[i]``. Bins without images are left out.
    Deterministic for a given ``seed``.
    """
    if len(scores) != len(length_scales):
        raise HarnessError(f"{len(scores)} image scores but {len(length_scales)} length scales")
    if not scores:
        raise HarnessError("no images to aggregate")
    known = (*SCALE_NAMES, UNKNOWN_SCALE)
    bad = sorted({s for s in length_scales if s not in known})
    if bad:
        raise HarnessError(f"unknown length scale(s) {', '.join(map(repr, bad))}; known: {', '.join(known)}")
    thresholds = {s.iou_threshold for s in scores}
    if len(thresholds) != 1:
        raise HarnessError(f"images were scored at different IoU thresholds: {sorted(thresholds)}")
    groups = {
        name: _group(name, [s for s, scale in zip(scores, length_scales) if scale == name], seed)
        for name in known
        if name in length_scales
    }
    groups[OVERALL] = _group(OVERALL, scores, seed)
    return MetricsReport(iou_threshold=thresholds.pop(), seed=seed, groups=groups)
