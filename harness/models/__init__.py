"""Models: timm backbones with one input channel, and the downstream segmentation network."""

from harness.models.backbones import BACKBONES, Backbone, create_backbone, known_backbones
from harness.models.segmentation import SegmentationNet

__all__ = ["BACKBONES", "Backbone", "SegmentationNet", "create_backbone", "known_backbones"]
