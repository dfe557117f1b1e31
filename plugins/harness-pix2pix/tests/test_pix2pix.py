"""Pix2Pix denoising: two players learn from their own losses only, the generator's L1 falls on
a fixed batch, the encoder transfers, the config validates, the entry point works."""

from __future__ import annotations

import pytest
import torch
from harness_pix2pix import Pix2Pix, Pix2PixConfig
from harness_pix2pix.module import PatchDiscriminator, min_input_size, patch_receptive_field

from harness.errors import HarnessError
from harness.models import create_backbone
from harness.testing import MethodContract, assert_transfers_strictly, fit_fixed_batch, smooth_batch

BACKBONE = "convnextv2_atto"
SMALL = {"disc_width": 16, "disc_layers": 2}  # a 34x34 PatchGAN for 64 px crops


def test_the_groups_split_the_parameters_and_follow_pix2pix():
    module = Pix2Pix(SMALL).build(create_backbone(BACKBONE, in_chans=1))
    groups = module.optimizer_groups()
    assert set(groups) == {"generator", "discriminator"}
    gen, disc = {id(p) for p in groups["generator"]}, {id(p) for p in groups["discriminator"]}
    assert not gen & disc and gen | disc == {id(p) for p in module.parameters()}
    assert {id(p) for p in module.backbone.parameters()} <= gen  # the encoder is the generator's
    for options in module.group_options().values():
        assert options == {"lr": 2e-4, "betas": (0.5, 0.999), "weight_decay": 0.0}


def test_each_loss_reaches_only_its_own_player():
    torch.manual_seed(0)
    module = Pix2Pix(SMALL).build(create_backbone(BACKBONE, in_chans=1))
    groups = module.optimizer_groups()
    out = module(smooth_batch(4, 64), 0, 1)
    assert set(out) == {"discriminator", "generator"}
    # the discriminator's loss sees the restored image detached: no gradient to the generator
    to_generator = torch.autograd.grad(out["discriminator"], groups["generator"], retain_graph=True, allow_unused=True)
    assert all(g is None for g in to_generator)
    expected = torch.autograd.grad(out["discriminator"], groups["discriminator"], retain_graph=True)
    # the harness's way: after both backward passes, D holds exactly the gradients of D's loss
    out["discriminator"].backward(inputs=groups["discriminator"], retain_graph=True)
    out["generator"].backward(inputs=groups["generator"])
    for p, g in zip(groups["discriminator"], expected):
        assert torch.equal(p.grad, g)
    assert all(p.grad is not None for p in groups["generator"][:5])
    # while the generator's loss alone would have changed them: the separation is what keeps them
    module.zero_grad(set_to_none=True)
    out = module(smooth_batch(4, 64), 0, 1)
    through = torch.autograd.grad(out["generator"], groups["discriminator"], allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in through)


def test_a_few_steps_on_a_fixed_batch_lower_the_generators_l1():
    torch.manual_seed(0)
    module = Pix2Pix({**SMALL, "lr": 1e-3}).build(create_backbone(BACKBONE, in_chans=1))
    l1 = []
    # the same views and noise at every step (a fixed batch), each player stepped on its own loss
    fit_fixed_batch(module, smooth_batch(4, 64), 8, view_seed=123,
                    after_step=lambda step: l1.append(float(module.last_terms["g_l1"])))
    assert all(torch.isfinite(torch.tensor(l1)))
    assert l1[-1] < 0.7 * l1[0], l1


def test_the_encoder_transfers_without_missing_or_unexpected_keys():
    module = Pix2Pix(SMALL).build(create_backbone(BACKBONE, in_chans=1))
    # the transferred weights are the generator's own encoder
    assert_transfers_strictly(module, BACKBONE, source=module.generator.encoder)


@pytest.mark.parametrize("layers, field", [(1, 16), (2, 34), (3, 70)])
def test_the_discriminator_judges_patches_of_the_stated_size(layers, field):
    assert patch_receptive_field(layers) == field
    torch.manual_seed(0)
    disc = PatchDiscriminator(2, width=4, layers=layers, norm="none")
    size = 2 * field + 16
    image = torch.rand(1, 1, size, size, requires_grad=True)
    logits = disc(torch.zeros(1, 1, size, size), image)
    h, w = logits.shape[-2:]
    logits[0, 0, h // 2, w // 2].backward()
    rows = torch.nonzero(image.grad[0, 0].abs().sum(dim=1)).flatten()
    cols = torch.nonzero(image.grad[0, 0].abs().sum(dim=0)).flatten()
    assert int(rows[-1] - rows[0]) + 1 == field and int(cols[-1] - cols[0]) + 1 == field
    smallest = torch.zeros(1, 1, min_input_size(layers), min_input_size(layers))
    assert disc(smallest, smallest).shape[-1] == 1


def test_crops_too_small_for_the_discriminator_are_refused():
    module = Pix2Pix({"disc_width": 8, "disc_layers": 3}).build(create_backbone(BACKBONE, in_chans=1))
    with pytest.raises(HarnessError, match="disc_layers=3"):
        module(torch.rand(2, 1, 16, 16), 0, 1)


def test_defaults_follow_pix2pix():
    config = Pix2PixConfig()
    assert config.l1_weight == 100 and config.lr == 2e-4 and config.betas == (0.5, 0.999)
    assert config.weight_decay == 0 and config.disc_layers == 3 and patch_receptive_field(3) == 70


class TestContract(MethodContract):
    method = Pix2Pix
    distribution = "harness-pix2pix"
    transfers_from = "generator.encoder"
    small_config = SMALL
    crop_size = 64
    bad_configs = [({"dose_min": 0}, "dose_min"), ({"dose_min": 60.0}, "dose_min"), ({"l1_weight": -1}, "l1_weight"),
                   ({"disc_layers": 0}, "disc_layers"), ({"disc_norm": "group"}, "disc_norm"),
                   ({"betas": (1.0, 0.9)}, "betas"), ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
                   ({"discriminator_lr": 0}, "discriminator_lr"), ({"colour": 1}, "colour")]
