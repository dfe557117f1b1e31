"""Pretraining throughput of every installed method, in one table (images/s).

Run: ``.venv/bin/pytest benchmarks/bench_methods.py --benchmark-enable -q -s``

Same backbone (ConvNeXt V2 atto, 1 channel), same batch (8 crops of 64 px on CPU; on a GPU
pass ``HARNESS_BENCH_CROP=224 HARNESS_BENCH_BATCH=64``), same optimiser step as the harness loop
(one AdamW per optimiser group), on the device ``--device auto`` would pick (bf16 autocast +
channels_last on CUDA). Multi-view methods process more pixels per input image; the table counts
input images, which is what a user's pretraining pool is measured in.
"""

from __future__ import annotations

import os
import time

import torch
from tabulate import tabulate

from harness.methods.registry import available_methods
from harness.models import create_backbone
from harness.training.loop import Optimisation
from harness.training.runtime import resolve_runtime

BACKBONE = "convnextv2_atto"
CROP = int(os.environ.get("HARNESS_BENCH_CROP", "64"))
BATCH = int(os.environ.get("HARNESS_BENCH_BATCH", "8"))
STEPS = 4


def seconds_per_step(name: str, runtime, batch: int = BATCH, crop: int = CROP, steps: int = STEPS) -> float:
    """Mean wall time of one full pretraining step of method ``name`` (its views, forward, loss,
    backward, every optimiser, after-step updates), after one warm-up step."""
    torch.manual_seed(0)
    entry = available_methods()[name]
    module = runtime.prepare(entry.cls().build(create_backbone(BACKBONE)))
    groups = module.optimizer_groups()
    optimisation = Optimisation.adamw(groups, {"lr": 1e-4}, module.group_options(), steps + 1, 0.0)
    images = runtime.batch(torch.rand(batch, 1, crop, crop))

    def step(i: int) -> None:
        with runtime.autocast():
            out = module(images, i, steps + 1)
        optimisation.step(out if isinstance(out, dict) else {"main": out}, groups)
        module.after_optimizer_step(i, steps + 1)

    step(0)  # warm-up
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def throughput(name: str, runtime) -> float:
    return BATCH / seconds_per_step(name, runtime)


def test_every_method_throughput():
    runtime = resolve_runtime("auto")
    names = [n for n, e in sorted(available_methods().items()) if e.cls.pretrains]
    rows = [{"method": n, "images/s": throughput(n, runtime)} for n in names]
    fastest = max(r["images/s"] for r in rows)
    for r in rows:
        r["relative"] = r["images/s"] / fastest
    device = runtime.describe()
    print(f"\npretraining throughput, {BACKBONE}, batch {BATCH} x {CROP} px, {device['name']} ({device['precision']}):")
    print(tabulate(rows, headers="keys", floatfmt=".2f"))
    assert all(r["images/s"] > 0 for r in rows)
