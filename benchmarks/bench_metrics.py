"""Particle metrics: harness's whole-array scorer against the regionprops-based reference.

Run: ``.venv/bin/pytest benchmarks/bench_metrics.py --benchmark-enable -q -s``

Workload: 4 pairs of 512x512 instance masks with about 200 true particles each (discs of
4-14 px radius, some touching, some cut by the border, a 32-row data bar) and a prediction
derived from them (particles shifted, eroded, missed, merged, plus false ones), pixel size 2 nm.

- ours: :func:`harness.metrics.score_image`: ``np.bincount`` for areas, one joint-label pass for
  all overlaps, ``linear_sum_assignment`` only for ambiguous candidates.
- reference: :func:`harness.metrics.reference.reference_score_image`: ``skimage.measure.regionprops``
  for areas, diameters and border contact, the IoU of every (pred, truth) pair from the two
  particles' own pixel masks (bounding-box test first, which keeps it exact and already far
  faster than comparing full-image masks), matching on the full pairwise matrix.

Both must give the same numbers (asserted to 1e-12) before any time is compared.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from timing import best_seconds  # benchmarks/timing.py (pytest puts benchmarks/ on the path)

from harness.metrics import score_image
from harness.metrics.reference import reference_score_image

SIZE = 512
N_PARTICLES = 200
N_IMAGES = 4
PIXEL_SIZE_NM = 2.0
DATABAR_ROWS = 32
TARGET_SPEEDUP = 3.0  # the target, asserted as it stands: the margin is large


def truth_mask(seed: int) -> np.ndarray:
    """About N_PARTICLES discs; later discs overwrite earlier ones where they overlap."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((SIZE, SIZE), np.int32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for pid in range(1, N_PARTICLES + 1):
        cy, cx, r = rng.uniform(0, SIZE), rng.uniform(0, SIZE), rng.uniform(4, 14)
        y0, y1 = int(max(cy - r, 0)), int(min(cy + r + 1, SIZE))
        x0, x1 = int(max(cx - r, 0)), int(min(cx + r + 1, SIZE))
        window = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= r * r
        labels[y0:y1, x0:x1][window] = pid
    return labels


def predicted_mask(truth: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pred = np.zeros_like(truth)
    for pid in range(1, int(truth.max()) + 1):
        region = truth == pid
        action = rng.random()
        if action < 0.1:
            continue  # missed
        if action < 0.3:
            region = np.roll(region, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1))
        elif action < 0.45:
            region = ndimage.binary_erosion(region, iterations=2)
        pred[region] = pid if action < 0.9 else 1  # a tenth merge into particle 1
    false = truth_mask(seed + 1000)[:, ::-1]
    add = (false > 0) & (pred == 0) & (false % 10 == 0)
    pred[add] = false[add] + 1000
    return pred


@pytest.fixture(scope="module")
def pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i in range(N_IMAGES):
        truth = truth_mask(i)
        out.append((predicted_mask(truth, 100 + i), truth))
    return out


def ours(pairs):
    return [score_image(p, t, PIXEL_SIZE_NM, DATABAR_ROWS) for p, t in pairs]


def reference(pairs):
    return [reference_score_image(p, t, PIXEL_SIZE_NM, DATABAR_ROWS) for p, t in pairs]


def assert_same_numbers(fast: list, slow: list[dict]) -> None:
    for scores, ref in zip(fast, slow):
        for name, value in scores.model_dump().items():
            if name not in ref:
                continue
            if isinstance(value, list):
                np.testing.assert_allclose(value, ref[name], rtol=1e-12, atol=1e-12, err_msg=name)
            elif value is None or ref[name] is None:
                assert value is None and ref[name] is None, name
            else:
                assert value == pytest.approx(ref[name], rel=1e-12, abs=1e-12), name


def test_same_numbers(pairs) -> None:
    fast, slow = ours(pairs), reference(pairs)
    assert_same_numbers(fast, slow)
    assert all(150 <= s.n_true <= 260 for s in fast)  # the workload is what it claims
    assert all(s.matched > 50 and s.n_true_border > 0 for s in fast)


@pytest.mark.benchmark(group=f"score_image, {N_IMAGES} x {SIZE}px, ~{N_PARTICLES} particles")
def test_bench_ours(benchmark, pairs) -> None:
    result = benchmark.pedantic(ours, args=(pairs,), rounds=10, warmup_rounds=1)
    assert len(result) == N_IMAGES


@pytest.mark.benchmark(group=f"score_image, {N_IMAGES} x {SIZE}px, ~{N_PARTICLES} particles")
def test_bench_reference(benchmark, pairs) -> None:
    result = benchmark.pedantic(reference, args=(pairs,), rounds=3, warmup_rounds=1)
    assert len(result) == N_IMAGES


def test_speedup_per_image(pairs) -> None:
    """Both implementations side by side in one run: equal numbers first, then time and ratio."""
    fast, slow = ours(pairs), reference(pairs)
    assert_same_numbers(fast, slow)
    best = best_seconds({"ours": lambda: ours(pairs), "reference": lambda: reference(pairs)}, rounds=5)
    per_image = {k: v / N_IMAGES for k, v in best.items()}
    ratio = per_image["reference"] / per_image["ours"]
    n_true = sum(s.n_true for s in fast) / N_IMAGES
    n_pred = sum(s.n_pred for s in fast) / N_IMAGES
    print(
        f"\nscore_image on {SIZE}x{SIZE} px, {n_true:.0f} true / {n_pred:.0f} predicted particles per image "
        f"(best of 5, per image; same numbers asserted):\n"
        f"  harness (bincount + joint labels + sparse assignment): {per_image['ours'] * 1e3:8.2f} ms  ({ratio:.1f}x)\n"
        f"  reference (regionprops + pairwise IoU + full matrix):  {per_image['reference'] * 1e3:8.2f} ms  (1.0x)\n"
        f"  target >= {TARGET_SPEEDUP:.0f}x"
    )
    assert ratio >= TARGET_SPEEDUP, f"only {ratio:.2f}x faster than the regionprops reference"
