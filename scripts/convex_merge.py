"""Diagnostic: merge the pieces of a particle the network shattered, where its foreground is convex?

Not part of the task. On EMPS the mean count error is carried by a few images of one to six large
particles, each found as several instances (docs/emps.md). The watershed splits a particle wherever
its predicted distance map has two peaks, even where the predicted foreground around them is one
convex blob; touching particles, which the split is for, meet at a neck, so their blob is not
convex (two equal touching disks: solidity 0.88; chains and clusters less). This script reads a
run's split with the task's own look (the second look's factor, the 8 flips and quarter turns, the
run's tuned post-processing) and compares, per image, the task's instances with two rules written
down before validation was first read (2026-12-06, docs/emps.md):

- ``merge-0.90`` / ``merge-0.95``: each connected component of the predicted foreground (probability
  above the run's tuned foreground threshold) that holds two or more instances, and whose solidity
  (area over convex-hull area, at the working resolution) is at least 0.90 / 0.95, becomes one
  instance (the union of its instances).

Declared bar: a rule is worth a folder version only if, on validation, its mean count error is below
the task's, its mean F1 not more than 0.01 below, and it changes more images for the better (count
error) than for the worse. docs/emps.md states what it gave.

    python scripts/convex_merge.py --run RUN_DIR --dataset FOLDER [--split val] [--out rows.json]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from skimage.measure import regionprops
from skimage.segmentation import relabel_sequential
from tqdm import tqdm

from harness.data.splits import make_manifest
from harness.evaluation.predict import predict_maps, score_labels
from harness.task.scale import labels_from_instances
from harness.training.runtime import resolve_runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a file or loaded by path in tests
from _split_diagnostic import load_run, open_run_folder, paired, split_command

SOLIDITY = {"merge-0.90": 0.90, "merge-0.95": 0.95}


def merge_convex(instances: np.ndarray, foreground: np.ndarray, min_solidity: float) -> np.ndarray:
    """``instances`` with every foreground component of solidity >= ``min_solidity`` that holds two or
    more instances made one; other pixels unchanged; ids renumbered 1..N."""
    components, _ = ndimage.label(foreground)
    merged = instances.copy()
    for region in regionprops(components):
        if region.solidity < min_solidity:
            continue
        inside = components == region.label
        ids = np.unique(instances[inside & (instances > 0)])
        if ids.size >= 2:
            merged[np.isin(instances, ids)] = ids.min()
    return relabel_sequential(merged)[0]


def read_split(run_dir: Path, dataset: str, split: str, split_seed: int, progress: bool) -> list[dict[str, Any]]:
    """Per image: the task's and each rule's (count error, F1, instances found)."""
    torch.set_num_threads(1)
    net, card, task, scale, params = load_run(run_dir, distmap_only=True)
    runtime = resolve_runtime("cpu")
    net = runtime.prepare(net).eval()
    folder = open_run_folder(run_dir, dataset)
    rows = []
    for sample_id in tqdm(make_manifest(folder, split_seed).pools[split], desc=split, disable=not progress):
        sample = folder.load(sample_id)
        maps = predict_maps(net, sample, runtime, task, scale, card.get("second_look_px"))
        instances = task.to_instances(maps, params)
        foreground = maps[0] > params["foreground_threshold"]
        row: dict[str, Any] = {"id": sample_id}
        for rule, labels in [("task", instances)] + [(r, merge_convex(instances, foreground, s))
                                                     for r, s in SOLIDITY.items()]:
            s = score_labels(labels_from_instances(labels, sample), sample)
            row[rule] = [s.count_rel_error, s.f1 or 0.0, s.n_pred]
        rows.append(row)
    return rows


def report(rows: list[dict[str, Any]]) -> list[str]:
    base = np.array([r["task"][:2] for r in rows])
    lines = [f"{len(rows)} images; the task: mean count error {base[:, 0].mean():.3f}, F1 {base[:, 1].mean():.3f}"]
    for rule in SOLIDITY:
        own = np.array([r[rule][:2] for r in rows])
        p_count, p_f1, better, worse = paired(own, base)
        passes = own[:, 0].mean() < base[:, 0].mean() and own[:, 1].mean() >= base[:, 1].mean() - 0.01 \
            and better > worse
        lines.append(f"{rule}: count {own[:, 0].mean():.3f} (p {p_count:.2g}; better on {better}, worse on {worse}) "
                     f"F1 {own[:, 1].mean():.3f} (p {p_f1:.2g}); declared bar {'passed' if passes else 'not passed'}")
    return lines


main = split_command(read_split, report,
                     "Compare convex merging of shattered particles with the task's reading (module docstring).")


if __name__ == "__main__":
    main()
