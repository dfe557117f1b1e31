"""Length-scale-aware particle metrics: count and size errors in nm, matching, pixel overlap.

Python API (the training pipeline and ``harness evaluate`` both use it)::

    from harness.metrics import score_image, aggregate, HEADLINE_METRIC

    scores = score_image(pred_labels, true_labels, pixel_size_nm=2.1, databar_rows=0)
    report = aggregate([scores, ...], ["high-mag", ...], seed=0)
    print(report.table())

Definitions, border/data-bar rules and empty-image rules: README.md, "Metrics".
"""

from harness.metrics.aggregate import (
    CONFIDENCE_LEVEL,
    GROUP_ORDER,
    OVERALL,
    GroupMetrics,
    Headline,
    HeadlineScore,
    MetricsReport,
    MetricSummary,
    aggregate,
    pooled_scores,
)
from harness.metrics.folders import FolderEvaluation, ImageResult, evaluate_folders, read_metadata
from harness.metrics.masks import binary_to_instances, check_labels, is_binary, prepare_labels
from harness.metrics.match import DEFAULT_IOU_THRESHOLD, Matching, Overlaps, match, overlaps
from harness.metrics.measure import Particles, measure_particles
from harness.metrics.scores import (
    COMPANION_METRIC,
    HEADLINE_METRIC,
    METRIC_NAMES,
    METRICS,
    ImageScores,
    score_image,
)

__all__ = [
    "COMPANION_METRIC",
    "CONFIDENCE_LEVEL",
    "DEFAULT_IOU_THRESHOLD",
    "GROUP_ORDER",
    "HEADLINE_METRIC",
    "METRICS",
    "METRIC_NAMES",
    "OVERALL",
    "FolderEvaluation",
    "GroupMetrics",
    "Headline",
    "HeadlineScore",
    "ImageResult",
    "ImageScores",
    "Matching",
    "MetricSummary",
    "MetricsReport",
    "Overlaps",
    "Particles",
    "aggregate",
    "binary_to_instances",
    "check_labels",
    "evaluate_folders",
    "is_binary",
    "match",
    "measure_particles",
    "overlaps",
    "pooled_scores",
    "prepare_labels",
    "read_metadata",
    "score_image",
]
