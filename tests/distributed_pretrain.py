"""Run by ``tests/test_distributed.py`` under ``torchrun`` (not collected by pytest).

Pretrains METHOD on the smoke dataset with the harness loop, then writes, per rank, a digest of
every parameter of the whole pretraining module (heads, predictors, discriminators included) and
of the transferred weights, to OUT/METHOD-rank{R}.json.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from harness.data.registry import open_dataset
from harness.data.splits import make_manifest
from harness.methods.registry import get_method
from harness.training.batches import ImageStore
from harness.training.loop import pretrain
from harness.training.runtime import rank, resolve_runtime, world_size
from harness.training.settings import settings_for


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def main(method_name: str, out: Path) -> None:
    runtime = resolve_runtime("cpu")  # joins the gloo process group torchrun describes
    dataset = open_dataset("synthetic-sem", profile="smoke", seed=0)
    manifest = make_manifest(dataset, 0)
    method = get_method(method_name).cls({})
    built: list[torch.nn.Module] = []
    build = method.build
    method.build = lambda backbone: built.append(build(backbone)) or built[-1]  # keep the whole module
    store = ImageStore(dataset, manifest.pools["unlabeled"])
    transferred, log = pretrain(method, store, settings_for("smoke"), runtime, seed=0, progress=False)
    result = {
        "world_size": world_size(),
        "losses": log.losses,
        "parameters": {k: digest(p) for k, p in built[0].named_parameters()},
        "transferred": {k: digest(v) for k, v in transferred.items()},
    }
    (out / f"{method_name}-rank{rank()}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
