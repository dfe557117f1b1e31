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


def _draw_device(generator: torch.Generator | None) -> torch.device:
    """Where per-sample parameters are drawn: the generator's device, else the CPU's global RNG."""
    return generator.device if generator is not None else torch.device("cpu")


def _to(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Move a few drawn parameters to ``like``'s device without waiting for queued GPU work (a
    blocking host-to-device copy synchronises the stream, once per parameter per view)."""
    return tensor.to(like.device, non_blocking=True)


def _uniform(n: int, low: float, high: float, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=_draw_device(generator))
    return _to(low + (high - low) * u, like)


def _affine_grid(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor, e: torch.Tensor, f: torch.Tensor,
    size: int, like: torch.Tensor,
) -> torch.Tensor:
    """Sampling grid (B, size, size, 2) of the per-sample affine maps x' = a x + b y + c,
    y' = d x + e y + f, in ``grid_sample``'s normalised coordinates (pixel centres,
    ``align_corners=False``).

    What ``F.affine_grid`` computes (to float rounding), about 3x cheaper on CPU than its batched
    matmul over a full (B, H*W, 3) base grid, which cost a third of a view.
    """
    centres = (torch.arange(size, device=like.device, dtype=torch.float32) * 2 + 1) / size - 1
    along_w, along_h = centres[None, None, :], centres[None, :, None]
    grid = torch.empty(a.shape[0], size, size, 2, device=like.device, dtype=torch.float32)
    # each coordinate is a (B, 1, W) row term plus a (B, H, 1) column term, added straight into its
    # strided slot of the grid: one pass over the output, no full-size temporaries
    torch.add(a[:, None, None] * along_w, b[:, None, None] * along_h + c[:, None, None], out=grid[..., 0])
    torch.add(d[:, None, None] * along_w, e[:, None, None] * along_h + f[:, None, None], out=grid[..., 1])
    return grid.to(like.dtype)


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
        quarter = torch.randint(0, 4, (b,), generator=generator, device=_draw_device(generator))
        angle = angle + _to(quarter, images).float() * (math.pi / 2)
    if max_rotation_deg > 0:
        angle = angle + _uniform(b, -1, 1, images, generator) * math.radians(max_rotation_deg)
    sx = width
    if flip:
        flips = _uniform(b, 0, 1, images, generator) < 0.5
        sx = torch.where(flips, -width, width)
    cos, sin = torch.cos(angle), torch.sin(angle)
    grid = _affine_grid(sx * cos, -height * sin, cx, sx * sin, height * cos, cy, size, images)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def brightness_contrast(
    images: torch.Tensor, brightness: float = 0.2, contrast: float = 0.2, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Scale contrast around each image's mean and shift brightness, per sample; clipped to [0, 1]."""
    b = images.shape[0]
    c = 1 + _uniform(b, -contrast, contrast, images, generator).view(b, 1, 1, 1)
    shift = _uniform(b, -brightness, brightness, images, generator).view(b, 1, 1, 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    # (x - mean) * c + mean + shift, as one fused pass: x * c + (mean * (1 - c) + shift)
    return torch.addcmul(mean * (1 - c) + shift, images, c.to(images.dtype)).clamp_(0, 1)


def _choose(b: int, p: float, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Indices (sorted) of a random share ``p`` of a batch of ``b``: each sample is chosen with
    probability ``p``, and the count is ``floor(p * b + u)`` (u uniform), so it only ever takes
    two values. Fixed shapes matter on CPU: oneDNN compiles a convolution per new group count,
    and independent per-sample coin flips would draw a new count nearly every call."""
    # the count is read where it was drawn: reading it back from a GPU would wait for the GPU
    count = int(math.floor(p * b + float(torch.rand(1, generator=generator, device=_draw_device(generator)))))
    order = torch.randperm(b, generator=generator, device=_draw_device(generator))
    return _to(order[: min(count, b)].sort().values, like)


def _on_chosen(images: torch.Tensor, index: torch.Tensor, fn) -> torch.Tensor:
    """``fn(subset, index)`` applied to the samples at ``index``; the others pass unchanged.

    Work is spent on the chosen samples only (gathered, transformed, written into a copy),
    which is what makes a probability-``p`` augmentation cost ``p`` of a full pass."""
    if index.numel() == 0:
        return images
    if index.numel() == images.shape[0]:
        return fn(images, index)
    return images.index_copy(0, index, fn(images.index_select(0, index), index))


def gaussian_blur(
    images: torch.Tensor,
    sigma: tuple[float, float] = (0.1, 1.0),
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Blur a random share ``p`` of the batch with a per-sample sigma (px); separable Gaussian
    kernels of radius ceil(3 sigma_max), reflect padding (a constant image stays constant)."""
    b = images.shape[0]
    sigmas = _uniform(b, *sigma, images, generator)
    radius = max(1, math.ceil(3 * sigma[1]))

    def blur(chosen: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        n, c, h, w = chosen.shape
        x = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
        kernels = torch.exp(-(x[None, :] ** 2) / (2 * sigmas[index, None] ** 2))
        k = (kernels / kernels.sum(dim=1, keepdim=True)).to(images.dtype).repeat_interleave(c, dim=0)
        flat = chosen.reshape(1, n * c, h, w)  # one group per sample and channel: per-sample kernels
        flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=n * c)
        flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=n * c)
        return flat.reshape(n, c, h, w)

    return _on_chosen(images, _choose(b, p, images, generator), blur)


def gaussian_noise(
    images: torch.Tensor,
    std: tuple[float, float] = (0.0, 0.05),
    p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Additive detector-like noise on a random share ``p`` of the batch, with a per-sample
    standard deviation; noisy samples are clipped to [0, 1]."""
    b = images.shape[0]
    s = _uniform(b, *std, images, generator).view(b, 1, 1, 1).to(images.dtype)

    def add_noise(chosen: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        # drawn where the images are unless a generator says otherwise: a full-size draw on the CPU
        # and its copy would cost a GPU run more than the rest of the view
        device = generator.device if generator is not None else chosen.device
        noise = torch.randn(chosen.shape, generator=generator, device=device)
        # one fused multiply-add and an in-place clamp: the noise is the only full-size temporary
        return torch.addcmul(chosen, noise.to(chosen.device, chosen.dtype), s[index]).clamp_(0, 1)

    return _on_chosen(images, _choose(b, p, images, generator), add_noise)


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
    Gaussian blur sigma 0.1-1 with p 0.5 (the source work's baseline recipe), and mild detector
    noise (std 0-0.03), also with p 0.5: like blur, it is drawn with a probability, as the
    contrastive recipes draw each photometric augmentation, so half the views stay noise-free."""
    x = random_geometry(images, size, scale=scale, max_rotation_deg=15.0, generator=generator)
    x = brightness_contrast(x, 0.2, 0.2, generator=generator)
    x = gaussian_blur(x, (0.1, 1.0), p=0.5, generator=generator)
    return gaussian_noise(x, (0.0, 0.03), p=0.5, generator=generator)


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


def two_views(images: torch.Tensor, view_size: int | None, crop_scale: tuple[float, float],
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent :func:`em_views` of every crop (``view_size`` None: the crops' own size)."""
    size = view_size or images.shape[-1]
    return (em_views(images, size, crop_scale, generator), em_views(images, size, crop_scale, generator))
