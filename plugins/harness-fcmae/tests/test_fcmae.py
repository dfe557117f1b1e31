"""FCMAE: the dense masked encoder never leaks hidden patches and matches sparse semantics; the
method learns, transfers, validates its config and registers through its entry point."""

from __future__ import annotations

import pytest
import torch
from harness_fcmae import FCMAE, FCMAEConfig
from harness_fcmae.encoder import DenseMaskedEncoder
from harness_fcmae.module import masked_patch_loss, patchify, random_patch_mask
from timm.layers.grn import GlobalResponseNorm
from timm.models.convnext import ConvNeXtBlock
from torch import nn

from harness.errors import HarnessError
from harness.models import create_backbone
from harness.testing import MethodContract, assert_transfers_strictly, fit_fixed_batch, smooth_batch

BACKBONE = "convnextv2_atto"  # 1x1-conv MLP blocks (NCHW GRN)
BACKBONE_NHWC = "convnextv2_tiny"  # linear MLP blocks (NHWC GRN)
SMALL = {"decoder_dim": 32}
# one fixed mask on the 2x2 patch grid of a 64 px crop: 1 = hidden
HIDDEN = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0]])


def smooth_images(seed: int = 0, batch: int = 2, size: int = 64) -> torch.Tensor:
    return smooth_batch(batch, size, seed)


def trained_looking(name: str = BACKBONE) -> nn.Module:
    """A backbone with every weight perturbed: at init GRN's gain and bias are zero (GRN is the
    identity) and would hide a leak through its global statistics."""
    torch.manual_seed(0)
    backbone = create_backbone(name, in_chans=1).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return backbone


def visible_grid(hidden: torch.Tensor) -> torch.Tensor:
    return (1 - hidden).view(hidden.shape[0], 1, 2, 2)


def at_resolution(grid: torch.Tensor, size: int) -> torch.Tensor:
    factor = size // grid.shape[-1]
    return grid.repeat_interleave(factor, 2).repeat_interleave(factor, 3)


def visible_difference(a: list[torch.Tensor], b: list[torch.Tensor], grid: torch.Tensor) -> list[float]:
    """Largest change at visible sites of each stage."""
    return [float(((x - y) * at_resolution(grid, x.shape[-1])).abs().max()) for x, y in zip(a, b)]


@torch.no_grad()
def test_with_nothing_hidden_the_encoder_is_the_plain_backbone():
    backbone = trained_looking()
    encoder = DenseMaskedEncoder(backbone)
    images = smooth_images()
    masked = encoder(images, torch.ones(2, 1, 2, 2))
    plain = backbone(images)
    assert len(masked) == len(plain) == 4
    for a, b in zip(masked, plain):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)


@torch.no_grad()
def test_changing_hidden_pixels_never_changes_visible_features():
    backbone = trained_looking()
    encoder = DenseMaskedEncoder(backbone)
    grid = visible_grid(HIDDEN)
    images = smooth_images()
    pixels = at_resolution(grid, 64)
    altered = images * pixels + torch.rand(images.shape, generator=torch.Generator().manual_seed(3)) * (1 - pixels)
    assert not torch.equal(images, altered)
    before, after = encoder(images, grid), encoder(altered, grid)
    assert max(visible_difference(before, after, grid)) <= 1e-6
    for feature in after:  # hidden sites hold nothing, as in a sparse tensor
        assert float((feature * (1 - at_resolution(grid, feature.shape[-1]))).abs().max()) == 0.0
    # the same check fails with masking disabled: the test can see a leak
    leaky = visible_difference(encoder(images, None), encoder(altered, None), grid)
    assert min(leaky) > 1e-3


def _inject_at_hidden_sites(encoder: DenseMaskedEncoder, seed: int) -> list[torch.utils.hooks.RemovableHandle]:
    """Write large random values at hidden sites at the input of every block, spatial conv and
    GRN, before the encoder's own masking sees them: a sparse encoder has no values there at all."""
    g = torch.Generator().manual_seed(seed)

    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        if isinstance(module, GlobalResponseNorm) and module.channel_dim == -1:
            keep = encoder.visible_at(x.shape[1], x.shape[2]).permute(0, 2, 3, 1)
        else:
            keep = encoder.visible_at(x.shape[-2], x.shape[-1])
        return (x + 5 * torch.randn(x.shape, generator=g) * (1 - keep), *args[1:])

    handles = []
    for stage in encoder.stages:
        for module in stage.modules():
            if isinstance(module, (ConvNeXtBlock, nn.Conv2d, GlobalResponseNorm)):
                handles.append(module.register_forward_pre_hook(hook, prepend=True))
    return handles


@pytest.mark.parametrize("name", [BACKBONE, BACKBONE_NHWC])
@torch.no_grad()
def test_values_at_hidden_sites_inside_the_network_never_reach_visible_outputs(name):
    backbone = trained_looking(name)
    grid = visible_grid(HIDDEN)
    images = smooth_images()
    encoder = DenseMaskedEncoder(backbone)
    clean = encoder(images, grid)
    handles = _inject_at_hidden_sites(encoder, seed=4)
    dirty = encoder(images, grid)
    for h in handles:
        h.remove()
    encoder.remove_hooks()
    assert max(visible_difference(clean, dirty, grid)) <= 1e-5
    # masking only after the stem and the stages (the naive dense encoder) lets them through
    naive = DenseMaskedEncoder(backbone, inner_masking=False)
    clean = naive(images, grid)
    handles = _inject_at_hidden_sites(naive, seed=4)
    dirty = naive(images, grid)
    for h in handles:
        h.remove()
    assert min(visible_difference(clean, dirty, grid)) > 1e-3


@pytest.mark.parametrize("name", [BACKBONE, BACKBONE_NHWC, "test_convnext"])
@torch.no_grad()
def test_visible_features_equal_the_backbone_run_on_the_visible_region_alone(name):
    """An independent reference for sparse semantics: with the left patch column visible, a sparse
    encoder computes exactly what the dense backbone computes on the left half (convs read
    nothing beyond it, GRN sums over it only)."""
    backbone = trained_looking(name)
    grid = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    images = smooth_images()
    reference = backbone(images[..., :32])
    for inner, expect_equal in [(True, True), (False, False)]:
        encoder = DenseMaskedEncoder(backbone, inner_masking=inner)
        features = encoder(images, grid)
        encoder.remove_hooks()
        # relative to each map's scale: a different input width may change the conv algorithm
        gaps = [
            float((f[..., : f.shape[-1] // 2] - r).abs().max() / r.abs().max()) for f, r in zip(features, reference)
        ]
        if expect_equal:
            assert max(gaps) <= 1e-5, gaps
        else:
            assert max(gaps) > 1e-3, gaps  # (a one-block first stage reads only zeros even then)


def test_random_patch_mask_hides_the_same_share_in_every_sample():
    torch.manual_seed(0)
    mask = random_patch_mask(5, 4, 5, 0.6, torch.device("cpu"))
    assert mask.shape == (5, 20)
    assert torch.all(mask.sum(dim=1) == 20 - int(20 * 0.4))
    assert len({tuple(row.tolist()) for row in mask}) > 1  # different per sample
    tiny = random_patch_mask(3, 1, 2, 0.99, torch.device("cpu"))
    assert torch.all(tiny.sum(dim=1) == 1)  # one visible, one hidden, whatever the ratio


def test_loss_counts_hidden_patches_only():
    torch.manual_seed(0)
    images = torch.rand(2, 1, 64, 64)
    prediction = torch.rand(2, 32 * 32, 2, 2, requires_grad=True)
    loss = masked_patch_loss(prediction, images, HIDDEN, 32, norm_pix_loss=False)
    loss.backward()
    grad_per_patch = prediction.grad.abs().sum(dim=1).view(2, 4)
    assert torch.all(grad_per_patch[HIDDEN == 0] == 0) and torch.all(grad_per_patch[HIDDEN == 1] > 0)
    # the value: MSE over the hidden patches' pixels
    pred = prediction.detach().reshape(2, 1024, 4).transpose(1, 2)
    errors = (pred - patchify(images, 32)).pow(2).mean(-1)
    assert torch.isclose(loss, errors[HIDDEN == 1].mean())
    # normalised targets: a patch that is its target's standardised version costs nothing
    target = patchify(images, 32)
    standard = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    perfect = standard.transpose(1, 2).reshape(2, 1024, 2, 2)
    assert float(masked_patch_loss(perfect, images, HIDDEN, 32, norm_pix_loss=True)) < 1e-10


def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    torch.manual_seed(0)
    module = FCMAE(SMALL).build(create_backbone(BACKBONE, in_chans=1))
    # the same flips and mask at every step: a fixed batch
    losses = fit_fixed_batch(module, smooth_images(batch=4), 10, view_seed=123, lr=3e-3, betas=(0.9, 0.95))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0], losses


def test_the_loss_is_deterministic_for_a_seed():
    module = FCMAE(SMALL).build(create_backbone(BACKBONE, in_chans=1))
    images = smooth_images()
    torch.manual_seed(7)
    first = module(images, 0, 1)
    torch.manual_seed(7)
    assert torch.equal(first, module(images, 0, 1))


def test_gradients_reach_the_encoder_decoder_and_mask_token():
    torch.manual_seed(0)
    module = FCMAE(SMALL).build(create_backbone(BACKBONE, in_chans=1))
    module(smooth_images(), 0, 1).backward()
    assert module.mask_token.grad is not None and module.mask_token.grad.abs().sum() > 0
    stem = next(p for n, p in module.backbone.named_parameters() if "stem" in n)
    assert stem.grad is not None and stem.grad.abs().sum() > 0


def test_the_encoder_transfers_without_missing_or_unexpected_keys():
    module = FCMAE(SMALL).build(create_backbone(BACKBONE, in_chans=1))
    assert_transfers_strictly(module, BACKBONE, source=module.backbone)
    state = module.transfer_state()
    fresh = create_backbone(BACKBONE, in_chans=1)
    fresh.load_state_dict(state, strict=True)
    # the decoder stays behind, and the hooks leave the backbone's own forward unchanged
    assert not any(k.startswith(("proj", "decoder", "pred", "mask_token")) for k in state)
    images = smooth_images()
    with torch.no_grad():
        for a, b in zip(module.backbone.eval()(images), fresh.eval()(images)):
            assert torch.allclose(a, b, atol=1e-6)


def test_crops_are_cut_to_whole_patches_and_tiny_crops_refused():
    torch.manual_seed(0)
    module = FCMAE(SMALL).build(create_backbone(BACKBONE, in_chans=1))
    assert torch.isfinite(module(torch.rand(2, 1, 80, 70), 0, 1))  # cut to 64 x 64
    with pytest.raises(HarnessError, match="fewer than two 32 px patches"):
        module(torch.rand(2, 1, 40, 40), 0, 1)


def test_gradient_checkpointing_is_refused():
    # its backward-time recomputation would run the stages without the mask
    backbone = create_backbone(BACKBONE, in_chans=1)
    module = FCMAE(SMALL).build(backbone)
    backbone.body.set_grad_checkpointing(True)
    with pytest.raises(HarnessError, match="gradient checkpointing"):
        module(smooth_images(), 0, 1)


def test_non_convnext_backbones_are_refused_by_name():
    with pytest.raises(HarnessError, match="resnet18"):
        FCMAE(SMALL).build(create_backbone("resnet18", in_chans=1))


def test_defaults_follow_the_source_recipe():
    config = FCMAEConfig()
    assert config.mask_ratio == 0.6 and config.decoder_dim == 512 and config.decoder_depth == 1
    assert config.betas == (0.9, 0.95) and config.weight_decay == 0.05 and config.lr is None
    assert not config.norm_pix_loss and config.flip


class TestContract(MethodContract):
    method = FCMAE
    distribution = "harness-fcmae"
    transfers_from = "backbone"
    small_config = SMALL
    backbones = ("test_convnext",)  # ConvNeXt only (test_non_convnext_backbones_are_refused_by_name)
    crop_size = 64  # whole 32 px patches
    bad_configs = [({"mask_ratio": 0.0}, "mask_ratio"), ({"mask_ratio": 1.0}, "mask_ratio"),
                   ({"decoder_dim": 0}, "decoder_dim"), ({"decoder_depth": 0}, "decoder_depth"),
                   ({"betas": (0.9, 1.5)}, "betas"), ({"weight_decay": -1}, "weight_decay"),
                   ({"patch_size": 16}, "patch_size")]


def test_the_rule_without_learning_inpaints_the_same_masks_as_training():
    """reference_loss: the views and masks training_step would draw, hidden pixels filled by the
    best normalised convolution of the visible ones; here recomputed pixel by pixel with scipy."""
    import numpy as np
    from scipy import ndimage

    module = FCMAE(SMALL).build(create_backbone(BACKBONE, in_chans=1))
    images = smooth_images(batch=3, size=96)
    torch.manual_seed(5)
    value = module.reference_loss(images, 0, 1)
    torch.manual_seed(5)  # the same draws, in training_step's order
    views = module._views(images)
    mask = random_patch_mask(3, 3, 3, module.config.mask_ratio, views.device)
    x = views[:, 0].numpy().astype(np.float64)
    hidden = np.kron(mask.view(3, 3, 3).numpy(), np.ones((32, 32)))
    losses = []
    for sigma in (2.0, 4.0, 8.0, 16.0):
        weighted = ndimage.gaussian_filter(x * (1 - hidden), (0, sigma, sigma), mode="reflect")
        weight = ndimage.gaussian_filter(1 - hidden, (0, sigma, sigma), mode="reflect")
        mean = (x * (1 - hidden)).sum(axis=(1, 2), keepdims=True) / (1 - hidden).sum(axis=(1, 2), keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            fill = np.where(weight > 0, weighted / weight, mean)  # out of the kernel's reach: the visible mean
        losses.append(((fill - x) ** 2 * hidden).sum() / hidden.sum())
    assert value == pytest.approx(min(losses), rel=1e-4)
    assert value > 0
