"""The Pix2Pix networks: U-Net generator on the backbone, conditional PatchGAN discriminator."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import augment
from harness.errors import HarnessError
from harness.methods.base import PretrainModule, check_crops
from harness.models import SegmentationNet
from harness_pix2pix import Pix2PixConfig


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def patch_receptive_field(layers: int) -> int:
    """Side in px of the input patch that one discriminator output judges (3 layers: 70)."""
    field = 1 + 3 + 3  # the two stride-1 4x4 convs at the end
    for _ in range(layers):
        field = (field - 1) * 2 + 4
    return field


def min_input_size(layers: int) -> int:
    """Smallest crop side giving at least one discriminator output."""
    return 3 * 2**layers


class PatchDiscriminator(nn.Module):
    """pix2pix's PatchGAN: ``layers`` strided 4x4 convs, one stride-1 conv, a 1-channel 4x4 conv;
    LeakyReLU 0.2, no normalisation on the first layer. One logit per overlapping input patch."""

    def __init__(self, in_channels: int, width: int = 64, layers: int = 3, norm: str = "batch"):
        super().__init__()
        self.layers = layers
        use_bias = norm != "batch"  # a bias before batch norm is redundant
        modules: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        channels = width
        for i in range(1, layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            modules += [
                nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=use_bias),
                _norm(norm, out),
                nn.LeakyReLU(0.2, True),
            ]
            channels = out
        modules.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*modules)
        for m in self.modules():  # pix2pix's init: N(0, 0.02) weights, norm gains N(1, 0.02)
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([condition, image], dim=1))


class Pix2PixModule(PretrainModule):
    def __init__(self, backbone: nn.Module, config: Pix2PixConfig):
        super().__init__(backbone)
        self.config = config
        self.generator = SegmentationNet(backbone, num_outputs=1)
        self.discriminator = PatchDiscriminator(2, config.disc_width, config.disc_layers, config.disc_norm)
        # the latest loss terms, detached (for logging and tests; no device sync)
        self.last_terms: dict[str, torch.Tensor] = {}

    def restore(self, noisy: torch.Tensor) -> torch.Tensor:
        """The generator's clean estimate of ``noisy`` (B, 1, H, W), in [0, 1]."""
        return torch.sigmoid(self.generator(noisy))

    def views(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(noisy, clean) pairs: a random crop/flip/rotation of each crop, then shot noise."""
        size = min(images.shape[-2:])  # square views; harness crops are square anyway
        if size < min_input_size(self.config.disc_layers):
            raise HarnessError(
                f"pix2pix: crops of {images.shape[-2]}x{images.shape[-1]} px are too small for a "
                f"discriminator with disc_layers={self.config.disc_layers} (needs at least "
                f"{min_input_size(self.config.disc_layers)} px); lower disc_layers or enlarge the crop"
            )
        clean = augment.random_geometry(images, size, scale=self.config.crop_scale)
        noisy = augment.poisson_noise(clean, (self.config.dose_min, self.config.dose_max))
        return noisy, clean

    def losses(self, noisy: torch.Tensor, clean: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both players' losses on one batch; the discriminator's never reaches the generator."""
        fake = self.restore(noisy).float()
        noisy, clean = noisy.float(), clean.float()
        real_logits = self.discriminator(noisy, clean).float()
        fake_logits = self.discriminator(noisy, fake.detach()).float()
        d_loss = 0.5 * (
            F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        )
        fooled = self.discriminator(noisy, fake).float()
        adversarial = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))  # non-saturating
        l1 = F.l1_loss(fake, clean)
        g_loss = adversarial + self.config.l1_weight * l1
        self.last_terms = {
            "d_loss": d_loss.detach(), "g_adversarial": adversarial.detach(), "g_l1": l1.detach(),
        }
        return {"discriminator": d_loss, "generator": g_loss}

    def training_step(self, images: torch.Tensor, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        check_crops(images, "pix2pix")
        return self.losses(*self.views(images))

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "generator": [p for p in self.generator.parameters() if p.requires_grad],
            "discriminator": [p for p in self.discriminator.parameters() if p.requires_grad],
        }

    def group_options(self) -> dict[str, dict[str, Any]]:
        c = self.config
        lr = c.lr if c.lr is not None else 2e-4
        common = {
            "betas": c.betas if c.betas is not None else (0.5, 0.999),
            "weight_decay": c.weight_decay if c.weight_decay is not None else 0.0,
        }
        return {
            "generator": {"lr": lr, **common},
            "discriminator": {"lr": c.discriminator_lr if c.discriminator_lr is not None else lr, **common},
        }
