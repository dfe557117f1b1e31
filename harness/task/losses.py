"""The segmentation loss, the same for every method.

Cross-entropy with class weights (the thin boundary class is rare and decides whether touching
particles separate, so it weighs more) plus a soft Dice term on foreground (interior + boundary)
that keeps small particles from being drowned by background. Pixels at IGNORE_INDEX (data bar,
padding) count for nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.task.targets import BOUNDARY, IGNORE_INDEX, INTERIOR

CLASS_WEIGHTS = (1.0, 1.0, 3.0)  # background, interior, boundary


def segmentation_loss(logits: torch.Tensor, targets: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    weights = torch.tensor(CLASS_WEIGHTS, device=logits.device, dtype=logits.dtype)
    ce = F.cross_entropy(logits, targets, weight=weights, ignore_index=IGNORE_INDEX)
    valid = targets != IGNORE_INDEX
    probabilities = logits.softmax(dim=1)
    foreground = (probabilities[:, INTERIOR] + probabilities[:, BOUNDARY]) * valid
    truth = ((targets == INTERIOR) | (targets == BOUNDARY)).to(logits.dtype)
    intersection = (foreground * truth).sum()
    dice = 1 - (2 * intersection + 1) / (foreground.sum() + truth.sum() + 1)
    return ce + dice_weight * dice
