"""The downstream network: any backbone + a light U-Net decoder, full-resolution output.

The decoder climbs from the deepest features, adding every stage's skip connection, and ends in
a full-resolution block that also sees a shallow convolution of the input itself: ConvNeXt's stem
has stride 4, and the thin particle boundaries that separate touching particles need detail the
encoder's first stage no longer has. The full-resolution layers dominate the cost on a CPU, so
their width defaults to 16 channels (32 made fine-tuning 2.5x slower on 2 cores).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError
from harness.models.backbones import Backbone


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 conv + GroupNorm + GELU: GroupNorm, not BatchNorm, because batches are small."""
    groups = 8 if cout % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(groups, cout), nn.GELU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(groups, cout), nn.GELU(),
    )


class SegmentationNet(nn.Module):
    """Backbone (``.encoder``) + U-Net decoder; ``forward(x)`` gives (B, num_outputs, H, W) logits.

    Any H x W is accepted: the input is padded (reflect, replicate where it is too small to
    reflect) to a multiple of the backbone's total stride and the output cropped back. The decoder
    is the only part with parameters outside ``.encoder``, so freezing or loading the encoder
    touches exactly the transferred weights.
    """

    def __init__(self, backbone: Backbone, num_outputs: int = 3, decoder_width: int = 16):
        super().__init__()
        if num_outputs < 1:
            raise HarnessError(f"SegmentationNet: num_outputs must be >= 1, got {num_outputs}")
        if decoder_width < 1:
            raise HarnessError(f"SegmentationNet: decoder_width must be >= 1, got {decoder_width}")
        self.encoder = backbone
        self.num_outputs = num_outputs
        channels = backbone.channels
        # half the encoder width per stage keeps the decoder light next to the encoder
        widths = [max(decoder_width, c // 2) for c in channels]
        self.lateral = nn.ModuleList(nn.Conv2d(c, w, 1) for c, w in zip(channels, widths))
        self.up_blocks = nn.ModuleList(
            _conv_block(widths[i + 1] + widths[i], widths[i]) for i in range(len(channels) - 1)
        )
        self.input_stem = _conv_block(backbone.in_chans, decoder_width)
        self.full_res = _conv_block(widths[0] + decoder_width, decoder_width)
        self.head = nn.Conv2d(decoder_width, num_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.encoder.in_chans:
            raise HarnessError(
                f"SegmentationNet ({self.encoder.name}) expects (B, {self.encoder.in_chans}, H, W) input, "
                f"got shape {tuple(x.shape)}"
            )
        height, width = x.shape[-2:]
        stride = self.encoder.total_stride
        pad_h, pad_w = (-height) % stride, (-width) % stride
        if pad_h or pad_w:
            mode = "reflect" if min(height, width) > max(pad_h, pad_w) else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        features = self.encoder(x)
        y = self.lateral[-1](features[-1])
        for i in range(len(features) - 2, -1, -1):
            skip = self.lateral[i](features[i])
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = self.up_blocks[i](torch.cat([y, skip.to(y.dtype)], dim=1))
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        stem = self.input_stem(x)
        y = self.full_res(torch.cat([y, stem.to(y.dtype)], dim=1))
        return self.head(y)[..., :height, :width]
