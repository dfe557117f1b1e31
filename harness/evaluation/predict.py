"""Whole-image inference and scoring, shared by validation (model selection and threshold tuning)
and the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from harness.data.base import Dataset
from harness.data.intensity import to_unit_float
from harness.data.printed import drop_printed
from harness.data.sample import Sample
from harness.metrics import ImageScores, score_image
from harness.models import Network, members_of
from harness.task import InstanceTask
from harness.task.scale import (
    area_weighted_width_px,
    labels_from_instances,
    own_scale,
    probe_scale,
    resample_image,
)
from harness.training.runtime import Runtime

MapsAt = Callable[[Network, Sample, Runtime, InstanceTask, float], np.ndarray]


@torch.no_grad()
def maps_at(net: Network, sample: Sample, runtime: Runtime, task: InstanceTask,
            scale: float = 1.0) -> np.ndarray:
    """The task's output maps for the image rows above the data bar, resampled by ``scale``:
    (C, rows x scale, W x scale)."""
    batch = model_input(sample, runtime, scale)
    return _mean_maps(net, batch, runtime, task)


def _mean_maps(net: nn.Module, batch: torch.Tensor, runtime: Runtime, task: InstanceTask,
               turn_back: Callable[[torch.Tensor], torch.Tensor] = lambda logits: logits) -> np.ndarray:
    """The task's maps of ``batch`` (each member's logits turned back by ``turn_back``, then read as
    maps), averaged over an ensemble's members (harness.models.ensemble); a network's own otherwise."""
    total = None
    members = members_of(net)
    for member in members:
        with runtime.autocast():
            logits = member(batch)
        maps = task.maps(turn_back(logits))
        total = maps if total is None else total + maps
    assert total is not None
    return total if len(members) == 1 else total / len(members)


@torch.no_grad()
def dihedral_views(net: Network, sample: Sample, runtime: Runtime, task: InstanceTask,
                   scale: float = 1.0) -> Iterator[np.ndarray]:
    """The task's maps of each of the image's 8 flips and quarter turns, each turned back to the
    image's own orientation (as :func:`maps_at`, one view at a time)."""
    batch = model_input(sample, runtime, scale)
    for flip in (False, True):
        for quarter in range(4):
            view = torch.rot90(batch.flip(-1) if flip else batch, quarter, (-2, -1))

            def turn_back(logits: torch.Tensor, quarter: int = quarter, flip: bool = flip) -> torch.Tensor:
                # back to the image's orientation: undo the turn, then the mirror
                logits = logits.float()
                return task.orient(task.orient(logits, -quarter, False, channel_axis=1), 0, flip, channel_axis=1)

            yield _mean_maps(net, view, runtime, task, turn_back)


def dihedral_maps(net: Network, sample: Sample, runtime: Runtime, task: InstanceTask,
                  scale: float = 1.0) -> np.ndarray:
    """The mean of :func:`dihedral_views` (test-time augmentation): a particle's map no longer depends
    on which way up the micrograph was taken."""
    total = None
    for maps in dihedral_views(net, sample, runtime, task, scale):
        total = maps if total is None else total + maps
    assert total is not None
    return total / 8


def final_look(task: InstanceTask) -> MapsAt:
    """How a trained network's maps are read for tuning, the test and `harness predict`: with the
    task's test-time augmentation where it has one (model selection always reads :func:`maps_at`)."""
    return dihedral_maps if task.tta else maps_at


def predict_maps(net: Network, sample: Sample, runtime: Runtime, task: InstanceTask,
                 scale: float = 1.0, second_look_px: float | None = None, look: MapsAt | None = None) -> np.ndarray:
    """The task's output maps at the image's working resolution (:mod:`harness.task.scale`): the
    run's factor ``scale``, or, with a target ``second_look_px``, the image's own smaller factor when
    its particles (found with the task's default post-processing, at ``scale`` and at the coarser
    :func:`~harness.task.scale.probe_scale`; the wider estimate) are too large. Each look reads the
    maps with ``look`` (default: :func:`final_look`)."""
    look = final_look(task) if look is None else look
    maps = look(net, sample, runtime, task, scale)
    if second_look_px is None or scale >= 1.0:
        return maps
    shape = (sample.valid_rows, sample.image.shape[1])
    coarse = probe_scale(scale, shape)
    looks = {scale: maps}
    if coarse != scale:
        looks[coarse] = look(net, sample, runtime, task, coarse)
    widths = [area_weighted_width_px(labels_from_maps(m, sample, task)) for m in looks.values()]
    own = own_scale(max((w for w in widths if w is not None), default=None), shape, scale, second_look_px)
    return looks[own] if own in looks else look(net, sample, runtime, task, own)


def model_input(sample: Sample, runtime: Runtime, scale: float = 1.0) -> torch.Tensor:
    """The network's input for a whole image: the rows above the data bar, in [0, 1], at the
    working resolution ``scale``, as a (1, 1, H, W) batch on the runtime's device."""
    image = resample_image(to_unit_float(sample.image, sample.databar_rows)[: sample.valid_rows], scale)
    return runtime.batch(torch.from_numpy(np.ascontiguousarray(image))[None, None])


def labels_from_maps(maps: np.ndarray, sample: Sample, task: InstanceTask,
                     params: Mapping[str, Any] | None = None) -> np.ndarray:
    """Instance labels of the whole image, in its own pixels, from its maps at any working resolution
    (the data bar rows stay 0; particles on printed marks are dropped, :mod:`harness.data.printed`)."""
    return labels_from_instances(task.to_instances(maps, params), sample)


def predict_instances(net: Network, sample: Sample, runtime: Runtime, task: InstanceTask,
                      params: Mapping[str, Any] | None = None, scale: float = 1.0,
                      second_look_px: float | None = None, look: MapsAt | None = None) -> np.ndarray:
    """Instance labels for the whole image (the data bar rows stay 0)."""
    return labels_from_maps(predict_maps(net, sample, runtime, task, scale, second_look_px, look), sample, task,
                            params)


def score_split(
    net: Network,
    dataset: Dataset,
    ids: list[str],
    runtime: Runtime,
    task: InstanceTask,
    params: Mapping[str, Any] | None = None,
    scale: float = 1.0,
    second_look_px: float | None = None,
    desc: str = "evaluate",
    progress: bool = True,
    keep: Callable[[Sample, np.ndarray], None] | None = None,
    look: MapsAt | None = None,
) -> tuple[list[ImageScores], list[str]]:
    """Predict and score every image in ``ids``; returns per-image scores and their length scales."""
    net.eval()
    return score_predictions(dataset, ids, lambda sample: predict_instances(net, sample, runtime, task, params, scale,
                                                                              second_look_px, look),
                             desc, progress, keep)


def scored_truth(sample: Sample) -> np.ndarray:
    """What a prediction of ``sample`` is scored against (:func:`score_labels`): its truth without the
    true particles on print."""
    return drop_printed(sample.truth, sample)


def score_labels(labels: np.ndarray, sample: Sample, truth: np.ndarray | None = None) -> ImageScores:
    """The one way a prediction of ``sample`` (instance labels over the whole image) is scored: against
    its truth without the true particles on print, as the prediction lost its own there
    (:func:`~harness.data.printed.drop_printed`, the data bar's rule): what the harness takes for print
    is scored on neither side. Print is never labelled, so this drops no truth where the reading of
    print is right; where it is not (the OCR reading a clump of particles as a digit), the clump is
    no longer counted as missed. ``truth``: :func:`scored_truth` of ``sample``, where the caller scores
    many labellings of one image."""
    truth = scored_truth(sample) if truth is None else truth
    return score_image(labels, truth, sample.pixel_size_nm, sample.databar_rows)


def score_predictions(dataset: Dataset, ids: list[str], predict: Callable[[Sample], np.ndarray],
                      desc: str = "evaluate", progress: bool = True,
                      keep: Callable[[Sample, np.ndarray], None] | None = None) -> tuple[list[ImageScores], list[str]]:
    """Score ``predict(sample)`` (instance labels) on every image in ``ids``, with their length scales:
    the one scoring loop of trained networks and of the reference rows. ``keep(sample, labels)``
    sees each prediction (the run folder keeps them)."""
    scores, scales = [], []
    for sample_id in tqdm(ids, desc=desc, unit="img", disable=not progress, leave=False):
        sample = dataset.load(sample_id)
        labels = predict(sample)
        scores.append(score_labels(labels, sample))
        scales.append(sample.length_scale)
        if keep is not None:
            keep(sample, labels)
    return scores, scales
