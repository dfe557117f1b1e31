"""Post-processing thresholds chosen per run, on the validation split only.

The network's maps for every validation image are computed once; each candidate of the task's
grid is then scored by the model-selection criterion (:mod:`harness.evaluation.selection`), and the
best is kept, the task's defaults winning ties. The test split never takes part.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from harness.data.base import Dataset
from harness.data.sample import Sample
from harness.evaluation.predict import predict_maps, score_labels, scored_truth
from harness.evaluation.selection import CRITERIA, selection_score
from harness.metrics import ImageScores
from harness.models import Network
from harness.task import InstanceTask
from harness.task.postprocess import labels_digest
from harness.task.scale import labels_from_instances
from harness.training.runtime import Runtime


class Tuning(BaseModel):
    """What a record states about its post-processing."""

    model_config = ConfigDict(frozen=True)

    task: str
    params: dict[str, Any]
    criterion: str = "mean validation matched F1 (higher is better)"
    score: float
    default_score: float
    candidates: int
    # the working resolution (harness.task.scale): the factor and the budget's median diameter it came from
    working_scale: float = 1.0
    budget_median_diameter_px: float | None = None
    # the target of each image's second look (harness.task.scale); None: every image at working_scale
    # (so records made before the second look read as what they were)
    second_look_px: float | None = None


def tune_postprocessing(net: Network, dataset: Dataset, ids: list[str], runtime: Runtime,
                        task: InstanceTask, scale: float = 1.0, diameter_px: float | None = None,
                        criterion: str = "f1", second_look_px: float | None = None) -> Tuning:
    """Pick the task's post-processing parameters on the images ``ids`` (the validation split)."""
    net.eval()
    samples = [dataset.load(i) for i in ids]
    maps = [predict_maps(net, s, runtime, task, scale, second_look_px) for s in samples]
    candidates = task.candidates()
    results = [selection_score(scores, criterion) for scores in score_candidates(maps, samples, task, candidates)]
    best = int(np.argmax(results))  # the first maximum: the defaults come first
    # F1 keeps the wording records stated before the criterion was a setting
    stated = Tuning.model_fields["criterion"].default if criterion == "f1" else CRITERIA[criterion]
    return Tuning(task=task.version, params=dict(candidates[best]), criterion=stated,
                  score=results[best], default_score=results[0],
                  candidates=len(candidates), working_scale=scale, budget_median_diameter_px=diameter_px,
                  second_look_px=second_look_px)


def score_candidates(maps: list[np.ndarray], samples: list[Sample], task: InstanceTask,
                     candidates: list[dict[str, Any]]) -> list[list[ImageScores]]:
    """Each candidate's scores on every image (``maps[i]`` read from ``samples[i]``), in order.

    Per image, every candidate's labels come at once: the task shares the stages they have in common.
    Candidates often label an image identically (a share that drops nothing, a dynamic that merges
    no seed), so each distinct labelling is scored once and its scores serve every candidate that gave it.
    """
    per_image = [_score_each(task.to_instances_each(m, candidates), s) for m, s in zip(maps, samples, strict=True)]
    return [[scores[c] for scores in per_image] for c in range(len(candidates))]


def _score_each(labellings: Iterable[np.ndarray], sample: Sample) -> list[ImageScores]:
    """The scores of each labelling of ``sample`` in turn, each distinct one scored once (by digest)."""
    scored: dict[bytes, ImageScores] = {}
    out = []
    truth = scored_truth(sample)  # once per image: finding its print is not free
    for instances in labellings:
        key = labels_digest(instances)
        if key not in scored:
            scored[key] = score_labels(labels_from_instances(instances, sample), sample, truth)
        out.append(scored[key])
    return out
