"""Models: timm backbones with one input channel, the downstream segmentation network, and ensembles of it."""

from harness.models.backbones import BACKBONES, Backbone, create_backbone, encoder_width, known_backbones, pooled
from harness.models.ensemble import Ensemble, Network, members_of
from harness.models.segmentation import SegmentationNet

__all__ = ["BACKBONES", "Backbone", "Ensemble", "Network", "SegmentationNet", "create_backbone", "encoder_width",
           "known_backbones", "members_of", "pooled"]
