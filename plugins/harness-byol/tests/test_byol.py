"""BYOL plugin: config, registration, momentum schedule and target, a falling loss on fixed views,
and that the ONLINE encoder is the one that transfers."""

from __future__ import annotations

import math

import pytest
import torch
from harness_byol import BYOL, BYOLConfig

from harness.testing import MethodContract, fit_fixed_batch, state_differs

SMALL = {"projection_hidden_dim": 64, "projection_dim": 32, "prediction_hidden_dim": 64}


class TestContract(MethodContract):
    method = BYOL
    distribution = "harness-byol"
    small_config = SMALL
    bad_configs = [
        ({"momentum_start": 1.5}, "momentum_start"),
        ({"momentum_end": -0.1}, "momentum_end"),
        ({"momentum_start": 0.999, "momentum_end": 0.99}, "momentum_start"),
        ({"projection_dim": 0}, "projection_dim"),
        ({"crop_scale": (0.5, 1.2)}, "crop_scale"),
        ({"target_decay": 0.99}, "target_decay"),  # extra fields are forbidden
    ]
    min_loss_drop = 0.05
    min_batch = 2  # its heads hold BatchNorm
    transfers_from = "backbone"  # the online encoder


build, crops = TestContract().build, TestContract().batch  # the kit's: seeded, small config, test backbone


def test_config_defaults_follow_recipe() -> None:
    config = BYOL().config
    assert isinstance(config, BYOLConfig)
    assert (config.projection_hidden_dim, config.projection_dim, config.prediction_hidden_dim) == (4096, 256, 4096)
    assert (config.momentum_start, config.momentum_end) == (0.99, 1.0)


def test_momentum_follows_cosine_schedule() -> None:
    module = build()
    values = [module.momentum(step, 11) for step in range(11)]
    assert values[0] == pytest.approx(0.99)
    assert values[5] == pytest.approx(0.995)  # half way along the cosine
    assert values[-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_target_starts_as_frozen_copy() -> None:
    module = build()
    assert not state_differs(module.backbone.state_dict(), module.target_backbone.state_dict())
    assert not any(p.requires_grad for p in module.target_backbone.parameters())
    assert not any(p.requires_grad for p in module.target_projection_head.parameters())
    trained = {id(p) for group in module.optimizer_groups().values() for p in group}
    assert not trained & {id(p) for p in module.target_backbone.parameters()}


def test_loss_falls_on_fixed_views() -> None:
    losses = fit_fixed_batch(build(), crops(), steps=6)
    assert all(math.isfinite(v) for v in losses)
    assert -1 <= min(losses) and max(losses) <= 1  # mean negative cosine similarity
    assert losses[-1] < losses[0] - 0.05, losses


def test_target_follows_online_by_momentum() -> None:
    module = build(momentum_start=0.5, momentum_end=0.5)
    target_before = {k: v.clone() for k, v in module.target_backbone.state_dict().items()}
    fit_fixed_batch(module, crops(), steps=1)
    online = module.backbone.state_dict()
    target = module.target_backbone.state_dict()
    for name, param in module.target_backbone.named_parameters():
        expected = 0.5 * target_before[name] + 0.5 * online[name]
        torch.testing.assert_close(param, expected)
    assert state_differs(target_before, target)


def test_online_encoder_transfers_not_target() -> None:
    module = build()
    fit_fixed_batch(module, crops(), steps=3)
    state, target = module.transfer_state(), module.target_backbone.state_dict()
    assert state_differs(module.backbone.state_dict(), target)  # after steps the two have parted
    assert state_differs(state, target)  # and the kit checks that state is the online encoder's own
