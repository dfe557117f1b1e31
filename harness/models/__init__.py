"""Models: timm backbones with one input channel, and the downstream segmentation network."""

from harness.models.backbones import BACKBONES, Backbone, create_backbone, encoder_width, known_backbones, pooled
from harness.models.segmentation import SegmentationNet

__all__ = ["BACKBONES", "Backbone", "SegmentationNet", "create_backbone", "encoder_width", "known_backbones", "pooled"]
