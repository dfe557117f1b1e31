"""Single-channel, batched tensor augmentations for EM images, shared by every method and by
fine-tuning.

Everything works on float tensors (B, 1, H, W) in [0, 1] on any device, draws its randomness per
sample from an optional ``torch.Generator`` (the global RNG otherwise), and never assumes colour:
there is no hue or saturation, and nothing turns one channel into three. Geometry (crop, scale,
flip, 90-degree rotation, small rotation) is one affine resampling per batch, so it costs one
``grid_sample`` whatever is combined.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=generator.device if generator else "cpu")
    return (low + (high - low) * u).to(device=like.device, dtype=torch.float32)


def random_geometry(
    images: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
    rot90: bool = True,
    max_rotation_deg: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random resized crops of area share ``scale``, resampled to ``size`` x ``size``, with
    random horizontal flips, 90-degree rotations and small rotations (shift-scale-rotate)."""
    b = images.shape[0]
    area = _uniform(b, *scale, images, generator)
    log_ratio = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), images, generator)
    aspect = torch.exp(log_ratio)
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (_uniform(b, -1, 1, images, generator)) * (1 - width)
    cy = (_uniform(b, -1, 1, images, generator)) * (1 - height)
    angle = torch.zeros(b, device=images.device)
    if rot90:
        quarter = torch.randint(0, 4, (b,), generator=generator, device=generator.device if generator else "cpu")
        angle = angle + quarter.to(images.device).float() * (math.pi / 2)
    if max_rotation_deg > 0:
        angle = angle + _uniform(b, -1, 1, images, generator) * math.radians(max_rotation_deg)
    sx = width
    if flip:
        flips = _uniform(b, 0, 1, images, generator) < 0.5
        sx = torch.where(flips, -width, width)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([sx * cos, -height * sin, cx], dim=1),
            torch.stack([sx * sin, height * cos, cy], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta.to(images.dtype), [b, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def brightness_contrast(
    images: torch.Tensor, brightness: float = 0.2, contrast: float = 0.2, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Scale contrast around each image's mean and shift brightness, per sample; clipped to [0, 1]."""
    b = images.shape[0]
    c = 1 + _uniform(b, -contrast, contrast, images, generator).view(b, 1, 1, 1)
    shift = _uniform(b, -brightness, brightness, images, generator).view(b, 1, 1, 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * c + mean + shift).clamp(0, 1)


def gaussian_blur(
    images: torch.Tensor,
    sigma: tuple[float, float] = (0.1, 1.0),
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Blur a random share ``p`` of the batch with a per-sample sigma (px); separable kernels."""
    b, c, h, w = images.shape
    sigmas = _uniform(b, *sigma, images, generator)
    apply = _uniform(b, 0, 1, images, generator) < p
    if not bool(apply.any()):
        return images
    radius = max(1, math.ceil(3 * sigma[1]))
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    kernels = torch.exp(-(x[None, :] ** 2) / (2 * sigmas[:, None] ** 2))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    identity = torch.zeros_like(kernels)
    identity[:, radius] = 1
    kernels = torch.where(apply[:, None], kernels, identity).to(images.dtype)
    flat = images.reshape(1, b * c, h, w)
    k = kernels.repeat_interleave(c, dim=0)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)


def gaussian_noise(
    images: torch.Tensor, std: tuple[float, float] = (0.0, 0.05), generator: torch.Generator | None = None
) -> torch.Tensor:
    """Additive detector-like noise with a per-sample standard deviation; clipped to [0, 1]."""
    b = images.shape[0]
    s = _uniform(b, *std, images, generator).view(b, 1, 1, 1).to(images.dtype)
    noise = torch.randn(images.shape, generator=generator, device=generator.device if generator else "cpu")
    return (images + s * noise.to(images.device, images.dtype)).clamp(0, 1)


def poisson_noise(
    images: torch.Tensor, dose: tuple[float, float] = (2.0, 50.0), generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shot noise at a random dose per sample (mean electron counts at intensity 1; log-uniform).

    Lower dose means noisier images: counts ~ Poisson(image * dose), returned as counts / dose.
    """
    b = images.shape[0]
    log_dose = _uniform(b, math.log(dose[0]), math.log(dose[1]), images, generator)
    d = torch.exp(log_dose).view(b, 1, 1, 1)
    rates = images.float().clamp(min=0) * d
    gen_device = generator.device if generator is not None else rates.device
    counts = torch.poisson(rates.to(gen_device), generator=generator).to(images.device)
    return (counts / d.to(images.device)).clamp(0, 1).to(images.dtype)


def em_views(
    images: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.25, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The standard EM view for contrastive methods: geometry, brightness/contrast 0.2,
    Gaussian blur sigma 0.1-1 (the source work's baseline recipe), mild detector noise."""
    x = random_geometry(images, size, scale=scale, max_rotation_deg=15.0, generator=generator)
    x = brightness_contrast(x, 0.2, 0.2, generator=generator)
    x = gaussian_blur(x, (0.1, 1.0), p=0.5, generator=generator)
    return gaussian_noise(x, (0.0, 0.03), generator=generator)


def multi_crop_views(
    images: torch.Tensor,
    global_size: int,
    local_size: int,
    n_local: int,
    global_scale: tuple[float, float] = (0.4, 1.0),
    local_scale: tuple[float, float] = (0.05, 0.4),
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """Multi-crop views (DINO, SwAV): two large global views, then ``n_local`` small local views.

    Every view is an :func:`em_views` view of the whole batch; local crops cover a small share of
    the image (``local_scale``) and are resampled to the smaller ``local_size``. One batched call
    per view: the cost follows the output pixels, and the input is never copied. Returns
    ``2 + n_local`` tensors, (B, 1, global_size, global_size) then (B, 1, local_size, local_size).
    """
    if n_local < 0:
        raise ValueError(f"n_local must be >= 0, got {n_local}")
    views = [em_views(images, global_size, global_scale, generator) for _ in range(2)]
    views += [em_views(images, local_size, local_scale, generator) for _ in range(n_local)]
    return views
