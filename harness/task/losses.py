"""The segmentation loss, the same for every method.

Cross-entropy with class weights (the thin boundary class is rare and decides whether touching
particles separate, so it weighs more) plus a soft Dice term on foreground (interior + boundary)
that keeps small particles from being drowned by background. Pixels at IGNORE_INDEX (data bar,
padding) count for nothing in either term.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.task.targets import BOUNDARY, IGNORE_INDEX, INTERIOR

CLASS_WEIGHTS = (1.0, 1.0, 3.0)  # background, interior, boundary
DICE_SMOOTH = 1.0  # keeps the Dice term defined (and 0) on crops without any particle


def segmentation_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    dice_weight: float = 1.0,
    class_weights: Sequence[float] = CLASS_WEIGHTS,
) -> torch.Tensor:
    """Weighted cross-entropy + ``dice_weight`` x soft foreground Dice, a scalar.

    ``logits``: (B, 3, H, W) float; ``targets``: (B, H, W) integer classes from
    :func:`harness.task.targets.make_targets` (IGNORE_INDEX = ignored). Pass float32 logits:
    the softmax and sums are not meant for bfloat16. The Dice term is computed over the whole
    batch, so one empty crop does not dominate it. A batch that is all ignored gives NaN
    cross-entropy (PyTorch's mean over no pixels); the batch sampler never draws one.
    """
    if logits.ndim != 4 or logits.shape[1] != len(class_weights):
        raise HarnessError(
            f"segmentation_loss: logits must be (B, {len(class_weights)}, H, W), got shape {tuple(logits.shape)}"
        )
    if targets.shape != logits.shape[:1] + logits.shape[2:]:
        raise HarnessError(
            f"segmentation_loss: targets shape {tuple(targets.shape)} does not match logits {tuple(logits.shape)}"
        )
    targets = targets.long()
    weights = torch.tensor(tuple(class_weights), device=logits.device, dtype=logits.dtype)
    ce = F.cross_entropy(logits, targets, weight=weights, ignore_index=IGNORE_INDEX)
    valid = (targets != IGNORE_INDEX).to(logits.dtype)
    truth = ((targets == INTERIOR) | (targets == BOUNDARY)).to(logits.dtype)
    return ce + dice_weight * foreground_dice(logits.softmax(dim=1), truth, valid)


def foreground_dice(probabilities: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice of the foreground (interior + boundary) of class ``probabilities`` (B, 3, H, W)
    against ``truth`` (B, H, W, 0/1) over ``valid`` pixels (0/1), summed over the whole batch."""
    foreground = (probabilities[:, INTERIOR] + probabilities[:, BOUNDARY]) * valid
    intersection = (foreground * truth).sum()
    return 1 - (2 * intersection + DICE_SMOOTH) / (foreground.sum() + truth.sum() + DICE_SMOOTH)
