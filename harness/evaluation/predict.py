"""Whole-image inference and scoring, shared by validation (model selection) and the test."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from harness.data.base import Dataset
from harness.data.intensity import to_unit_float
from harness.data.sample import Sample
from harness.metrics import ImageScores, score_image
from harness.models import SegmentationNet
from harness.task.postprocess import to_instances
from harness.training.runtime import Runtime


@torch.no_grad()
def predict_instances(net: SegmentationNet, sample: Sample, runtime: Runtime) -> np.ndarray:
    """Instance labels for the whole image (the data bar rows stay 0)."""
    rows = sample.valid_rows
    image = to_unit_float(sample.image, sample.databar_rows)[:rows]
    batch = runtime.batch(torch.from_numpy(np.ascontiguousarray(image))[None, None])
    with runtime.autocast():
        logits = net(batch)
    probabilities = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()
    labels = np.zeros(sample.image.shape[:2], dtype=np.int32)
    labels[:rows] = to_instances(probabilities)
    return labels


def score_split(
    net: SegmentationNet,
    dataset: Dataset,
    ids: list[str],
    runtime: Runtime,
    desc: str = "evaluate",
    progress: bool = True,
) -> tuple[list[ImageScores], list[str]]:
    """Predict and score every image in ``ids``; returns per-image scores and their length scales."""
    net.eval()
    scores, scales = [], []
    for sample_id in tqdm(ids, desc=desc, unit="img", disable=not progress, leave=False):
        sample = dataset.load(sample_id)
        prediction = predict_instances(net, sample, runtime)
        scores.append(score_image(prediction, sample.mask, sample.pixel_size_nm, sample.databar_rows))
        scales.append(sample.length_scale)
    return scores, scales
