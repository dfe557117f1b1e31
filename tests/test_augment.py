"""The shared single-channel augmentations, each checked against an independent computation:
torch's own affine_grid / rot90 / flip, scipy's Gaussian filter, and plain statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from harness import augment


def images(b: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, size, size, generator=g)


def test_affine_grid_matches_torch():
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(16, 2, 3, generator=g)
    coeffs = [theta[:, i, j] for i in range(2) for j in range(3)]
    for size in (8, 33, 64):
        ours = augment._affine_grid(*coeffs, size, torch.zeros(1))
        ref = F.affine_grid(theta, [16, 1, size, size], align_corners=False)
        torch.testing.assert_close(ours, ref, atol=2e-6, rtol=1e-6)


def test_full_view_without_flip_or_rotation_is_the_identity():
    x = images()
    out = augment.random_geometry(x, 32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False, rot90=False)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_flips_and_quarter_turns_are_exact_dihedral_images():
    x = images(b=32)
    out = augment.random_geometry(x, 32, scale=(1.0, 1.0), ratio=(1.0, 1.0),
                                  generator=torch.Generator().manual_seed(3))
    seen = set()
    for i in range(x.shape[0]):
        candidates = {(k, f): torch.rot90(torch.flip(x[i], dims=(-1,)) if f else x[i], k, dims=(-2, -1))
                      for k in range(4) for f in (False, True)}
        hits = [key for key, c in candidates.items() if torch.allclose(out[i], c, atol=1e-5)]
        assert hits, f"sample {i} is not a flip/quarter turn of its input"
        seen.update(hits)
    assert len(seen) >= 4  # several different transforms were drawn


def test_brightness_contrast_is_a_per_sample_affine_map_within_range():
    x = 0.4 + 0.2 * images(b=16)  # mid-grey: no clipping at +-0.1
    out = augment.brightness_contrast(x, brightness=0.1, contrast=0.3, generator=torch.Generator().manual_seed(0))
    for i in range(16):
        a, b = np.polyfit(x[i].flatten().numpy(), out[i].flatten().numpy(), 1)
        assert 0.7 - 1e-4 <= a <= 1.3 + 1e-4
        mean = float(x[i].mean())
        shift = float(out[i].mean()) - mean  # the mean moves by the brightness shift only
        assert abs(shift) <= 0.1 + 1e-5
        residual = out[i] - (a * x[i] + b)
        assert float(residual.abs().max()) < 1e-5
    assert float(out.min()) >= 0 and float(out.max()) <= 1


@pytest.mark.parametrize("sigma", [0.4, 1.0])
def test_blur_matches_scipy(sigma):
    x = images(b=3)
    out = augment.gaussian_blur(x, (sigma, sigma), p=1.0)
    radius = max(1, int(np.ceil(3 * sigma)))
    for i in range(3):
        # torch's 'reflect' padding (edge pixel not repeated) is scipy's 'mirror'
        ref = ndimage.gaussian_filter(x[i, 0].double().numpy(), sigma, mode="mirror", truncate=radius / sigma)
        np.testing.assert_allclose(out[i, 0].numpy(), ref, atol=1e-5)


def test_probability_p_picks_about_p_of_the_samples_and_leaves_the_rest_untouched():
    x = images(b=10)
    g = torch.Generator().manual_seed(0)
    changed = []
    for _ in range(60):
        out = augment.gaussian_blur(x, (1.0, 1.0), p=0.3, generator=g)
        same = [bool(torch.equal(out[i], x[i])) for i in range(10)]
        changed.append(10 - sum(same))
    assert set(changed) <= {3, 4}  # floor(0.3 * 10 + u): only ever two counts
    assert abs(np.mean(changed) / 10 - 0.3) < 0.05
    assert torch.equal(augment.gaussian_blur(x, p=0.0), x)
    assert torch.equal(augment.gaussian_noise(x, p=0.0), x)


def test_noise_has_the_drawn_standard_deviation():
    x = torch.full((4, 1, 128, 128), 0.5)
    out = augment.gaussian_noise(x, (0.05, 0.05), p=1.0, generator=torch.Generator().manual_seed(0))
    stds = (out - x).flatten(1).std(dim=1)
    torch.testing.assert_close(stds, torch.full((4,), 0.05), atol=2e-3, rtol=0)
    # a batch of one with p = 0.5 is noisy about half the time, never half-noisy
    g = torch.Generator().manual_seed(1)
    noisy = [not torch.equal(augment.gaussian_noise(x[:1], p=0.5, generator=g), x[:1]) for _ in range(200)]
    assert 0.35 < np.mean(noisy) < 0.65


def test_em_views_are_single_channel_in_range_and_seeded():
    x = images(b=6, size=64)
    a = augment.em_views(x, 32, generator=torch.Generator().manual_seed(7))
    b = augment.em_views(x, 32, generator=torch.Generator().manual_seed(7))
    c = augment.em_views(x, 32, generator=torch.Generator().manual_seed(8))
    assert a.shape == (6, 1, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
