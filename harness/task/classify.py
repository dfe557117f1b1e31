"""The classification task ``classify-v1``: one class per image from a frozen encoder.

Lu et al. 2022 classify nanowire morphologies with a frozen SSL encoder and a few labels per
class. Here, identically for every method: each whole image (data bar cut, unit-float scaled)
goes once through the frozen encoder; its deepest feature map, global-average pooled, is the
image's feature vector. Two readers of those features, both chosen on the validation split only:

- a **linear probe**: multinomial logistic regression on features standardised with the
  budget's own mean and spread, fitted to convergence by L-BFGS; its L2 strength is picked from
  :data:`PROBE_L2` by validation accuracy (ties: the stronger penalty);
- **kNN**: cosine similarity to the budget's images, majority vote (ties: the larger summed
  similarity); k from :data:`KNN_K` (at most the budget's size), by validation accuracy (ties: the
  smaller k).

The probe is the headline; kNN needs no fitting at all, so it shows what the features hold
without a learned reader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from harness.data.base import Dataset
from harness.data.intensity import to_unit_float
from harness.errors import HarnessError
from harness.metrics.classification import CLASSIFY_TASK
from harness.models import pooled
from harness.training.runtime import Runtime

#: Candidate L2 strengths of the linear probe (on standardised features).
PROBE_L2 = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: Candidate neighbour counts of kNN.
KNN_K = (1, 3, 5, 7, 11)
PROBE_ITERATIONS = 200

__all__ = ["CLASSIFY_TASK", "KNN_K", "PROBE_L2", "Reader", "class_indices", "image_features", "knn", "linear_probe"]


@torch.no_grad()
def image_features(encoder: torch.nn.Module, dataset: Dataset, ids: Sequence[str], runtime: Runtime,
                   progress: Callable[[], None] | None = None) -> np.ndarray:
    """(N, C) float64: the frozen encoder's pooled deepest features of each whole image."""
    encoder.eval()
    rows = []
    for sample_id in ids:
        sample = dataset.load(sample_id)
        image = to_unit_float(sample.image, sample.databar_rows)[: sample.valid_rows]
        with runtime.autocast():
            features = pooled(encoder, runtime.batch(torch.from_numpy(np.ascontiguousarray(image))[None, None]))
        rows.append(features.float().cpu().numpy()[0])
        if progress is not None:
            progress()
    return np.asarray(rows, dtype=np.float64)


@dataclass(frozen=True)
class Reader:
    """A fitted reader of features: its chosen parameter, its validation accuracy, and predictions."""

    name: str
    param: float
    val_accuracy: float
    predict: Callable[[np.ndarray], np.ndarray]  # (N, C) features -> (N,) class indices


def _accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(predicted == truth)) if truth.size else 0.0


def _fit_logistic(x: np.ndarray, y: np.ndarray, classes: int, l2: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights (C, K) and bias (K,) of an L2-penalised multinomial logistic regression, by L-BFGS."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.from_numpy(x)
    labels = torch.from_numpy(y).long()
    weight = (0.01 * torch.randn(x.shape[1], classes, generator=generator, dtype=torch.float64)).requires_grad_()
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=PROBE_ITERATIONS, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(features @ weight + bias, labels) + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach().numpy(), bias.detach().numpy()


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, classes: int,
                 seed: int) -> Reader:
    """The probe of the L2 strength with the best validation accuracy (ties: the stronger one)."""
    mean = train_x.mean(axis=0)
    spread = train_x.std(axis=0)
    spread[spread == 0] = 1.0

    def standard(x: np.ndarray) -> np.ndarray:
        return (x - mean) / spread

    best: Reader | None = None
    for l2 in sorted(PROBE_L2, reverse=True):
        weight, bias = _fit_logistic(standard(train_x), train_y, classes, l2, seed)

        def predict(x: np.ndarray, w: np.ndarray = weight, b: np.ndarray = bias) -> np.ndarray:
            return np.argmax(standard(x) @ w + b, axis=1)

        accuracy = _accuracy(predict(val_x), val_y)
        if best is None or accuracy > best.val_accuracy:
            best = Reader("probe", l2, accuracy, predict)
    assert best is not None
    return best


def _knn_predict(train_x: np.ndarray, train_y: np.ndarray, x: np.ndarray, k: int, classes: int) -> np.ndarray:
    def unit(a: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(a, axis=1, keepdims=True)
        return a / np.where(norm == 0, 1.0, norm)

    similarity = unit(x) @ unit(train_x).T
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    predicted = np.empty(x.shape[0], dtype=np.int64)
    for row, neighbours in enumerate(nearest):
        votes = np.bincount(train_y[neighbours], minlength=classes).astype(np.float64)
        weight = np.bincount(train_y[neighbours], weights=similarity[row, neighbours], minlength=classes)
        # most votes; among equal votes the larger summed similarity; then the lower class index
        predicted[row] = int(np.lexsort((-np.arange(classes), weight, votes))[-1])
    return predicted


def knn(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, classes: int) -> Reader:
    """kNN of the k with the best validation accuracy (ties: the smaller k)."""
    best: Reader | None = None
    for k in [k for k in KNN_K if k <= len(train_y)] or [1]:
        def predict(x: np.ndarray, k: int = k) -> np.ndarray:
            return _knn_predict(train_x, train_y, x, k, classes)

        accuracy = _accuracy(predict(val_x), val_y)
        if best is None or accuracy > best.val_accuracy:
            best = Reader("knn", k, accuracy, predict)
    assert best is not None
    return best


def class_indices(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    position = {c: i for i, c in enumerate(classes)}
    unknown = sorted({c for c in labels if c not in position})
    if unknown:
        raise HarnessError(f"image classes {', '.join(unknown)} are not among the training classes "
                           f"({', '.join(classes)})")
    return np.array([position[c] for c in labels], dtype=np.int64)
