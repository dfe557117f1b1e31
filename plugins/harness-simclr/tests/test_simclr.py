"""SimCLR plugin: config, registration, views, a falling loss on fixed views, strict transfer."""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from harness.errors import HarnessError  # noqa: E402
from harness.methods.registry import get_method  # noqa: E402
from harness.models.backbones import create_backbone  # noqa: E402
from harness_simclr import SimCLR, SimCLRConfig  # noqa: E402

BACKBONE = "test_convnext"  # the harness's tiny test backbone
SIZE = 48
SMALL = {"hidden_dim": 64, "output_dim": 32}  # small heads keep the test fast


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: a second OpenMP thread only adds barriers, and on a shared 2-core machine a
    busy neighbour makes each barrier wait (seen: 2 s instead of 30 ms per step). Restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def crops(n: int = 8, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """A fixed batch of smooth single-channel crops in [0, 1] (blurred noise, like grainy EM)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 1, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(noise, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def build(seed: int = 0, backbone: str = BACKBONE, **config) -> torch.nn.Module:
    torch.manual_seed(seed)
    return SimCLR({**SMALL, **config}).build(create_backbone(backbone, in_chans=1))


def train(module: torch.nn.Module, images: torch.Tensor, steps: int, lr: float = 2e-3) -> list[float]:
    """AdamW steps on one batch with the SAME views every step (global RNG re-seeded per step)."""
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    module.train()
    losses = []
    for step in range(steps):
        torch.manual_seed(1234)
        loss = module(images, step, steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        module.after_optimizer_step(step, steps)
        losses.append(float(loss.detach()))
    return losses


def test_entry_point_registers_simclr() -> None:
    entry = get_method("simclr")
    assert entry.cls is SimCLR
    assert entry.plugin.distribution == "harness-simclr"


def test_config_defaults_follow_recipe() -> None:
    config = SimCLR().config
    assert isinstance(config, SimCLRConfig)
    assert config.temperature == 0.5
    assert config.output_dim == 128 and config.num_layers == 2
    assert config.hidden_dim is None and config.view_size is None
    assert config.crop_scale == (0.25, 1.0)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"output_dim": 0}, "output_dim"),
        ({"num_layers": 1}, "num_layers"),
        ({"view_size": 4}, "view_size"),
        ({"crop_scale": (0.6, 0.3)}, "crop_scale"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
        ({"colour_jitter": 0.4}, "colour_jitter"),  # extra fields are forbidden
    ],
)
def test_config_rejects_bad_values(bad: dict, field: str) -> None:
    with pytest.raises(HarnessError, match=rf"'simclr'.*{field}"):
        SimCLR(bad)


def test_views_are_single_channel_and_differ() -> None:
    module = build(view_size=32)
    images = crops()
    first, second = module.views(images, torch.Generator().manual_seed(0))
    assert first.shape == second.shape == (8, 1, 32, 32)
    assert 0 <= float(first.min()) and float(first.max()) <= 1
    assert not torch.allclose(first, second)
    again, _ = module.views(images, torch.Generator().manual_seed(0))
    assert torch.equal(first, again)  # seeded generator: identical views


def test_head_reads_pooled_last_feature_map() -> None:
    module = build()
    width = create_backbone(BACKBONE, in_chans=1).channels[-1]
    assert module.projection_head.layers[0].in_features == width
    assert module.embed(crops(4)).shape == (4, SMALL["output_dim"])


def test_loss_falls_on_fixed_views() -> None:
    losses = train(build(), crops(), steps=6)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.05, losses


def test_same_seed_same_loss() -> None:
    images = crops()
    assert train(build(seed=3), images, 2) == train(build(seed=3), images, 2)


@pytest.mark.parametrize("backbone", [BACKBONE, "test_resnet"])  # LayerNorm; BatchNorm buffers
def test_transfer_state_loads_strictly_into_fresh_backbone(backbone: str) -> None:
    module = build(backbone=backbone)
    before = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    train(module, crops(), steps=2)
    state = module.transfer_state()
    fresh = create_backbone(backbone, in_chans=1)
    result = fresh.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(state) == set(fresh.state_dict())
    assert any(not torch.equal(before[k], state[k]) for k in state)  # it is the trained encoder


@pytest.mark.parametrize("shape", [(1, 1, SIZE, SIZE), (4, 3, SIZE, SIZE)])
def test_bad_batches_are_explained(shape: tuple[int, ...]) -> None:
    with pytest.raises(HarnessError, match="simclr"):
        build().training_step(torch.rand(shape), 0, 1)
