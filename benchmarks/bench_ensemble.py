"""Reading an ensemble (``--ensemble 2``) against reading its two networks one after the other and
averaging their maps by hand, side by side.

Run: ``.venv/bin/pytest benchmarks/bench_ensemble.py --benchmark-enable -q -s``

An ensemble costs K forward passes per view; what :func:`harness.evaluation.predict.dihedral_maps`
adds for it (a loop over members, turning each member's logits back, the sum and the division)
should cost nothing next to them. The reference: :func:`dihedral_maps` of each network alone (the
single-network path every run takes), then the mean of the two maps. Same two networks (distmap-v3
heads on ConvNeXt V2 atto, random weights), the same 4 quick synthetic-sem images (256 px), 8 views
each; the maps must agree; interleaved, best of 3. Target: the ensemble's throughput at least 0.95
of the reference's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from timing import best_seconds  # benchmarks/timing.py (pytest puts benchmarks/ on the path)

from harness.data.synthetic import SyntheticDataset
from harness.evaluation.predict import dihedral_maps
from harness.models import Ensemble
from harness.task import get_task
from harness.training.loop import build_segmentation_net
from harness.training.runtime import resolve_runtime

VERSION, BACKBONE, IMAGES, TARGET = "distmap-v3", "convnextv2_atto", 4, 0.95


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    import os

    os.environ["HARNESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("bench-ensemble"))
    ds = SyntheticDataset("SEM", "quick")
    return [ds.load(i) for i in list(ds.index()["id"][:IMAGES])]


def test_ensemble_reading_vs_members_averaged_by_hand(samples):
    task, runtime = get_task(VERSION), resolve_runtime("cpu")
    torch.manual_seed(0)
    nets = [build_segmentation_net(BACKBONE, None, task).eval() for _ in range(2)]
    ensemble = Ensemble(nets)

    def by_hand() -> list[np.ndarray]:
        return [(dihedral_maps(nets[0], s, runtime, task) + dihedral_maps(nets[1], s, runtime, task)) / 2
                for s in samples]

    def as_one() -> list[np.ndarray]:
        return [dihedral_maps(ensemble, s, runtime, task) for s in samples]

    for hand, one in zip(by_hand(), as_one(), strict=True):
        assert np.allclose(hand, one, atol=1e-6)
    best = best_seconds({"members by hand": by_hand, "ensemble": as_one}, rounds=3)
    per_image = {name: IMAGES / seconds for name, seconds in best.items()}
    ratio = per_image["ensemble"] / per_image["members by hand"]
    print(
        f"\n{VERSION} on {BACKBONE}, 2 networks, {IMAGES} images of {samples[0].image.shape} px, 8 views, "
        f"{torch.get_num_threads()} threads (best of 3), the same maps:\n"
        f"  members by hand {per_image['members by hand']:6.2f} img/s\n"
        f"  ensemble        {per_image['ensemble']:6.2f} img/s\n"
        f"  ratio {ratio:.3f}  (target >= {TARGET})"
    )
    assert ratio >= TARGET - 0.05, f"reading the ensemble runs at {ratio:.3f} of its members read by hand"
