"""Diagnostic: would another rule for each image's working factor beat the task's second look?

Not part of the task. Where a run resamples (factor < 1, real folders), the second look
(:mod:`harness.task.scale`) picks each image's factor from the widths of the particles it finds. This
script reads every validation image of a run's folder at a ladder of factors (MULTIPLIERS times the
run's, at most native pixels), each through the 8 flips and quarter turns, with the run's tuned
post-processing, and compares rules that pick a factor per image from the network's own output
(none looks at the truth, except the `oracle` line, the headroom):

- `run`: the run's factor for every image (no second look);
- `agree`: the factor whose 8 views agree best on the particle count (relative spread);
- `dis` / `disfg`: the least spread of the distance map over the foreground / of the foreground map;
- `peak`: the highest median seed peak (a particle seen at its size has a centre near 1);
- `width`: the found particles' width closest to the 32 px the network is trained at;
- `plateau`: the factor where the count changes least between its neighbours (scale-space stability);
- `oracle`: each image's best factor from the truth.

Each is printed with and without factors above the run's (enlarging), against the task's own look,
paired over images (Wilcoxon). The rules were written down before the first read of the
validation split; docs/emps.md states what they gave.

    python scripts/look_rules.py --run RUN_DIR --dataset FOLDER [--out features.json]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from tqdm import tqdm

from harness.data.splits import make_manifest
from harness.evaluation.predict import dihedral_views, predict_instances, score_labels
from harness.task.scale import MIN_SIDE_PX, area_weighted_width_px, labels_from_instances
from harness.training.runtime import resolve_runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a file or loaded by path in tests
from _split_diagnostic import load_run, open_run_folder, paired, split_command

MULTIPLIERS = (0.354, 0.5, 0.707, 1.0, 1.414, 2.0)  # times the run's factor, half-octave steps
TRAINED_WIDTH_PX = 32.0  # the second look's target (the run's card states it)
RULES = ("run", "agree", "dis", "disfg", "peak", "width", "plateau", "oracle")


def _count(labels: np.ndarray) -> int:
    return int(np.unique(labels[labels > 0]).size)


def features(run_dir: Path, dataset: str, split: str, split_seed: int, progress: bool) -> list[dict[str, Any]]:
    """Per image: the task's own look's scores, and per factor the scores and the rules' features."""
    torch.set_num_threads(1)
    net, card, task, scale, params = load_run(run_dir, distmap_only=True)
    if scale >= 1.0:
        raise click.UsageError(f"--run {run_dir}: works at native pixels; it has no look to compare")
    folder = open_run_folder(run_dir, dataset)
    runtime = resolve_runtime("cpu")
    net = runtime.prepare(net)
    rows = []
    for sample_id in tqdm(make_manifest(folder, split_seed).pools[split], desc=split, disable=not progress):
        sample = folder.load(sample_id)
        shipped = predict_instances(net, sample, runtime, task, params, scale, card.get("second_look_px"))
        own = score_labels(shipped, sample)
        row: dict[str, Any] = {"id": sample_id, "look": [own.count_rel_error, own.f1 or 0.0], "factors": []}
        short = min(sample.valid_rows, sample.image.shape[1])
        for mult in MULTIPLIERS:
            factor = round(min(1.0, scale * mult), 4)
            if short * factor < MIN_SIDE_PX or any(g["factor"] == factor for g in row["factors"]):
                continue
            views = np.stack(list(dihedral_views(net, sample, runtime, task, factor)))
            mean = views.mean(0)  # equal to the task's dihedral_maps, summed in the same order
            instances = task.to_instances(mean, params)
            scores = score_labels(labels_from_instances(instances, sample), sample)
            foreground = mean[0] > 0.5
            peaks = [float(mean[1][instances == i].max()) for i in np.unique(instances[instances > 0])]
            row["factors"].append({
                "mult": mult, "factor": factor, "err": scores.count_rel_error, "f1": scores.f1 or 0.0,
                "n": _count(instances), "counts": [_count(task.to_instances(v, params)) for v in views],
                "dis": float(views[:, 1].std(0)[foreground].mean()) if foreground.any() else 0.0,
                "disfg": float(views[:, 0].std(0).mean()),
                "peak": float(np.median(peaks)) if peaks else 0.0,
                "width": area_weighted_width_px(instances)})
        rows.append(row)
    return rows


def pick(row: dict[str, Any], rule: str, enlarge: bool) -> dict[str, Any]:
    """The factor ``rule`` chooses for one image (ties go to the factor nearest the run's)."""
    options = sorted((g for g in row["factors"] if enlarge or g["mult"] <= 1.0), key=lambda g: g["mult"])

    def nearest(g: dict[str, Any]) -> float:
        return abs(float(np.log(g["mult"])))

    if rule == "run":
        return min(options, key=nearest)
    if rule == "oracle":
        return min(options, key=lambda g: (g["err"], -g["f1"], nearest(g)))
    if rule == "agree":
        return min(options, key=lambda g: (np.std(g["counts"]) / max(np.mean(g["counts"]), 1.0), nearest(g)))
    if rule in ("dis", "disfg"):
        return min(options, key=lambda g: (g[rule], nearest(g)))
    if rule == "peak":
        return max(options, key=lambda g: (g["peak"], -nearest(g)))
    if rule == "width":
        return min(options, key=lambda g: (abs(np.log((g["width"] or 1e-3) / TRAINED_WIDTH_PX)), nearest(g)))
    if rule == "plateau":
        if len(options) < 3:
            return min(options, key=nearest)
        counts = [max(g["n"], 1) for g in options]
        inner = range(1, len(options) - 1)
        return options[min(inner, key=lambda i: (abs(np.log(counts[i + 1] / counts[i - 1])), nearest(options[i])))]
    raise ValueError(rule)


def report(rows: list[dict[str, Any]]) -> list[str]:
    look = np.array([r["look"][0] for r in rows])
    look_f1 = np.array([r["look"][1] for r in rows])
    lines = [f"{len(rows)} images; the task's look: mean count error {look.mean():.3f}, F1 {look_f1.mean():.3f}"]
    for enlarge in (False, True):
        lines.append("with enlarging" if enlarge else "shrinking only")
        for rule in RULES:
            chosen = [pick(r, rule, enlarge) for r in rows]
            err = np.array([g["err"] for g in chosen])
            f1 = np.array([g["f1"] for g in chosen])
            p, p_f1, lower, higher = paired(np.column_stack([err, f1]), np.column_stack([look, look_f1]))
            lines.append(f"  {rule:8s} count {err.mean():.3f} (p {p:.2g}; lower on {lower}, higher on {higher})  "
                         f"F1 {f1.mean():.3f} (p {p_f1:.2g})")
    return lines


main = split_command(features, report,
                     "Compare per-image factor rules with the task's second look (see the module docstring).")


if __name__ == "__main__":
    main()
