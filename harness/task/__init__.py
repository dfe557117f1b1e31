"""The downstream task, owned by the core: particle instance segmentation.

The network predicts three classes per pixel (background, particle interior, particle
boundary); seeded watershed turns them into instances, so touching particles separate.
"""

from harness.task.losses import CLASS_WEIGHTS, segmentation_loss
from harness.task.postprocess import to_instances
from harness.task.targets import BACKGROUND, BOUNDARY, IGNORE_INDEX, INTERIOR, make_targets

__all__ = [
    "BACKGROUND",
    "BOUNDARY",
    "CLASS_WEIGHTS",
    "IGNORE_INDEX",
    "INTERIOR",
    "make_targets",
    "segmentation_loss",
    "to_instances",
]
