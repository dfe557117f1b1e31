"""Data never limits training: generating, cached reading, and one training step, side by side.

Run: ``.venv/bin/pytest benchmarks/bench_data.py --benchmark-enable -q -s``

One 512x512 synthetic SEM image: (a) rendered from its parameters, (b) read back from the
on-disk cache (``SyntheticDataset.load`` on a warm cache: image, mask and particle table), and
(c) one forward + backward pass of timm's ConvNeXt V2 atto (1 input channel) on it. Target:
cached reading costs under 5% of the training step.
"""

from __future__ import annotations

import time

import pytest
import torch

from harness.data.synthetic import SyntheticDataset, draw_params, render_image
from harness.models import create_backbone

SIZE = 512
TARGET_READ_SHARE = 0.05


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    import os

    os.environ["HARNESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("bench-cache"))
    ds = SyntheticDataset("SEM", "smoke", image_size=SIZE)
    sample_id = ds.index()["id"][1]
    ds.load(sample_id)  # fills the cache
    return ds, sample_id


def generate():
    return render_image(draw_params(0, "SEM", 1, SIZE), 0)


def read(ds, sample_id):
    return ds.load(sample_id)


@pytest.fixture(scope="module")
def step():
    torch.manual_seed(0)
    model = create_backbone("convnextv2_atto")
    x = torch.rand(1, 1, SIZE, SIZE)

    def run():
        model.zero_grad(set_to_none=True)
        loss = sum(f.float().mean() for f in model(x))
        loss.backward()

    run()  # warm-up
    return run


def best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.benchmark(group="one 512x512 image")
def test_bench_generate(benchmark):
    benchmark.pedantic(generate, rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="one 512x512 image")
def test_bench_cached_read(benchmark, warm):
    benchmark.pedantic(read, args=warm, rounds=50, warmup_rounds=2)


@pytest.mark.benchmark(group="one 512x512 image")
def test_bench_train_step(benchmark, step):
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)


def test_side_by_side(warm, step):
    ds, sample_id = warm
    gen = best(generate, 5)
    cached = best(lambda: read(ds, sample_id), 50)
    train = best(step, 5)
    rows = [
        ("generate (render from parameters)", gen),
        ("read from the on-disk cache", cached),
        ("convnextv2_atto forward+backward, 1 channel", train),
    ]
    print(f"\none {SIZE}x{SIZE} image (best of several runs):")
    for name, seconds in rows:
        print(f"  {name:<44} {seconds * 1e3:9.2f} ms  ({seconds / train:6.1%} of a training step)")
    print(f"  target: cached read < {TARGET_READ_SHARE:.0%} of the step")
    assert cached / train < TARGET_READ_SHARE
