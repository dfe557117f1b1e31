"""Diagnostic: size the second look from the predicted foreground instead of the particles found?

Not part of the task. Where a run resamples (factor < 1, real folders), the second look
(:mod:`harness.task.scale`) sizes each image's particles from the instances the network finds, at the
run's factor and at the probe factor, and takes the wider. A particle too large for the network
comes back in pieces, so its instances understate its width; its predicted foreground might not.
This script reads a run's split and compares, per image, the shipped look with two rules written
down before validation was first read (2026-12-06):

- ``fg-run``: the width of the foreground's connected components (probability above 0.5,
  area-weighted, twice the largest inscribed radius, as the shipped look measures instances) at
  the run's factor;
- ``fg-wider``: the wider of that estimate at the run's factor and at the probe factor.

Each image's chosen factor is read through the 8 flips and quarter turns with the run's tuned
post-processing, as the task does. Declared bar: a rule is worth a task version only if its mean
count error is below the shipped look's and its mean F1 not more than 0.01 below. docs/emps.md states
what it gave.

    python scripts/foreground_look.py --run RUN_DIR --dataset FOLDER [--split val] [--out rows.json]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from harness.data.splits import make_manifest
from harness.evaluation.predict import dihedral_maps, labels_from_maps, score_labels
from harness.task.scale import area_weighted_width_px, labels_from_instances, own_scale, probe_scale
from harness.training.runtime import resolve_runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a file or loaded by path in tests
from _split_diagnostic import load_run, open_run_folder, paired, split_command

RULES = ("shipped", "fg-run", "fg-wider")


def _widest(widths: list[float | None]) -> float | None:
    return max((w for w in widths if w is not None), default=None)


def read_split(run_dir: Path, dataset: str, split: str, split_seed: int, progress: bool) -> list[dict[str, Any]]:
    """Per image: each rule's factor and its (count error, F1) there."""
    torch.set_num_threads(1)
    net, card, task, scale, params = load_run(run_dir)
    target = card.get("second_look_px")
    if scale >= 1.0 or target is None:
        raise click.UsageError(f"--run {run_dir}: works at native pixels; it has no second look")
    runtime = resolve_runtime("cpu")
    net = runtime.prepare(net)
    folder = open_run_folder(run_dir, dataset)
    rows = []
    for sample_id in tqdm(make_manifest(folder, split_seed).pools[split], desc=split, disable=not progress):
        rows.append({"id": sample_id, **_read_image(net, folder.load(sample_id), runtime, task, params, scale, target)})
    return rows


def _read_image(net, sample, runtime, task, params: dict[str, Any], scale: float, target: float) -> dict[str, Any]:
    shape = (sample.valid_rows, sample.image.shape[1])
    maps: dict[float, np.ndarray] = {}

    def at(factor: float) -> np.ndarray:  # each factor's 8-view maps, once
        if factor not in maps:
            maps[factor] = dihedral_maps(net, sample, runtime, task, factor)
        return maps[factor]

    coarse = probe_scale(scale, shape)
    looks = [scale] + ([coarse] if coarse != scale else [])
    found = [area_weighted_width_px(labels_from_maps(at(f), sample, task)) for f in looks]
    blobs = [ndimage.label(task.foreground(at(f)) > 0.5)[0].astype(np.int32) for f in looks]
    foreground = [area_weighted_width_px(labels_from_instances(b, sample)) for b in blobs]
    factors = {"shipped": own_scale(_widest(found), shape, scale, target),
               "fg-run": own_scale(foreground[0], shape, scale, target),
               "fg-wider": own_scale(_widest(foreground), shape, scale, target)}
    row: dict[str, Any] = {"factors": factors}
    for rule, factor in factors.items():
        s = score_labels(labels_from_maps(at(factor), sample, task, params), sample)
        row[rule] = [s.count_rel_error, s.f1 or 0.0]
    return row


def report(rows: list[dict[str, Any]]) -> list[str]:
    shipped = np.array([r["shipped"] for r in rows])
    lines = [f"{len(rows)} images; shipped look: mean count error {shipped[:, 0].mean():.3f}, "
             f"F1 {shipped[:, 1].mean():.3f}"]
    for rule in RULES[1:]:
        own = np.array([r[rule] for r in rows])
        p_count, p_f1, lower, higher = paired(own, shipped)
        changed = sum(r["factors"][rule] != r["factors"]["shipped"] for r in rows)
        lines.append(f"{rule}: count {own[:, 0].mean():.3f} (p {p_count:.2g}; lower on {lower}, higher on {higher}) "
                     f"F1 {own[:, 1].mean():.3f} (p {p_f1:.2g}); factor changed on {changed}")
    return lines


main = split_command(read_split, report,
                     "Compare foreground-sized looks with the task's second look (see the module docstring).")


if __name__ == "__main__":
    main()
