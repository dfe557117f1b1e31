"""The validation criterion of model selection: which fine-tuning step is kept, and which
post-processing thresholds (:mod:`harness.evaluation.tuning`). One criterion, so that the step and
the thresholds are chosen for the same thing.

- ``f1``: mean matched-instance F1 (at IoU 0.5).
- ``f1-count``: mean F1 minus the mean relative count error (capped at 1 per image). F1 alone
  may prefer a state that splits or merges many particles yet matches a few more; the headline
  is the count error, so the criterion weighs it too. An image with no true particle contributes
  0 when nothing is predicted on it and 1 otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from harness.errors import HarnessError
from harness.metrics import ImageScores

Criterion = Literal["f1", "f1-count"]
CRITERIA: dict[str, str] = {
    "f1": "validation matched-instance F1 (higher is better)",  # as records before the choice said
    "f1-count": "mean validation matched-instance F1 minus mean relative count error capped at 1 (higher is better)",
}


def count_penalty(score: ImageScores) -> float:
    """The relative count error of one image, capped at 1 (defined for images without particles)."""
    if score.count_rel_error is None:
        return 0.0 if score.n_pred == 0 else 1.0
    return min(float(score.count_rel_error), 1.0)


def selection_score(scores: Sequence[ImageScores], criterion: str) -> float:
    """The criterion over the validation images' scores; higher is better."""
    if criterion not in CRITERIA:
        raise HarnessError(f"unknown selection criterion {criterion!r}: choose one of {', '.join(CRITERIA)}")
    if not scores:
        raise HarnessError("model selection needs at least one validation image")
    f1 = float(np.mean([s.f1 for s in scores]))
    if criterion == "f1":
        return f1
    return f1 - float(np.mean([count_penalty(s) for s in scores]))
