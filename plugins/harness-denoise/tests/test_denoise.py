"""The denoising pretext: it learns, it transfers, its config validates, its entry point works."""

from __future__ import annotations

import pytest
import torch

from harness.errors import HarnessError
from harness.methods.registry import get_method
from harness.models import create_backbone
from harness_denoise import Denoise, DenoiseConfig

BACKBONE = "convnextv2_atto"


def fixed_batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    base = torch.rand(4, 1, 8, 8, generator=g)
    return torch.nn.functional.interpolate(base, size=64, mode="bilinear")  # smooth, learnable images


def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    torch.manual_seed(0)
    module = Denoise().build(create_backbone(BACKBONE))
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    images = fixed_batch()
    losses = []
    for step in range(8):
        torch.manual_seed(123)  # the same noise and views at every step: a fixed batch
        loss = module(images, step, 8)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


def test_the_encoder_transfers_without_missing_or_unexpected_keys():
    module = Denoise().build(create_backbone(BACKBONE))
    state = module.transfer_state()
    fresh = create_backbone(BACKBONE)
    result = fresh.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # the transferred weights are the U-Net's own encoder
    key = next(iter(state))
    assert state[key].data_ptr() == module.net.encoder.state_dict()[key].data_ptr()


@pytest.mark.parametrize("bad", [{"dose_min": 0}, {"dose_min": 60.0}, {"loss": "huber"}, {"colour": 1}])
def test_bad_configs_are_refused(bad):
    with pytest.raises(HarnessError, match="invalid config for method 'denoise'"):
        Denoise(bad)


def test_defaults_follow_the_source_work():
    config = DenoiseConfig()
    assert config.dose_min < config.dose_max and config.loss == "l1"


def test_entry_point_registers_the_method():
    entry = get_method("denoise")
    assert entry.cls is Denoise and entry.plugin.distribution == "harness-denoise"
