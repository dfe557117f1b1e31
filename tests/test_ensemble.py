"""`--ensemble K`: K networks fine-tuned from their own seeds and read as one (harness.models.ensemble).

Member 0 is the network a run of the same seed without the option trains; the record states every
member's seed and model selection; the model folder keeps all K, and whatever reads it (the test,
`harness predict`, the diagnostics) averages their maps. Records of one network keep their bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from harness.cli import main
from harness.errors import HarnessError

EMPS = Path(__file__).parent / "data" / "emps-mini"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory) -> tuple[Path, Path]:
    """A sweep cell of one network and the same cell with --ensemble 2 (smoke, `none`, 2 labels)."""
    out = tmp_path_factory.mktemp("ensemble")
    args = ["sweep", "--methods", "none", "--budgets", "2", "--seeds", "3", "--profile", "smoke", "--quiet",
            "--out", str(out)]
    for extra in ([], ["--ensemble", "2"]):
        result = invoke(*args, *extra)
        assert result.exit_code == 0, result.output
    one, = out.glob("*/none-2-finetune-seed3")
    two, = out.glob("*/none-2-finetune-seed3-ensemble2")
    return one, two


def test_an_ensemble_states_its_members_and_member_0_is_the_single_run(one_and_two):
    from harness.pipeline import member_seeds
    from harness.results.artifacts import load_model

    one, two = one_and_two
    a, b = (json.loads((d / "record.json").read_text()) for d in (one, two))
    assert "ensemble" not in a["settings"] and "members" not in a  # one network: the record as before
    assert b["settings"]["ensemble"] == 2 and {**b["settings"], "ensemble": 1} != a["settings"]
    seeds = member_seeds(3, 2)
    assert seeds[0] == 3 and seeds[1] != 3 and member_seeds(4, 2)[1] not in seeds  # apart from other runs' seeds
    assert [m["seed"] for m in b["members"]] == seeds
    for key in ("best_step", "best_score", "finetune_steps_run"):
        assert b["members"][0][key] == a["selection"][key] == b["selection"][key]
    single, card_a = load_model(one)
    ensemble, card_b = load_model(two)
    assert "ensemble" not in card_a and card_b["ensemble"] == 2
    assert len(ensemble.members) == 2
    first, second = (m.state_dict() for m in ensemble.members)
    assert all(torch.equal(first[k], v) for k, v in single.state_dict().items())  # the same network, bitwise
    assert not all(torch.equal(second[k], v) for k, v in first.items())  # its own seed trained another


def test_an_ensemble_is_read_as_the_mean_of_its_members_maps(one_and_two):
    from harness.data.registry import open_dataset
    from harness.evaluation.predict import dihedral_maps, maps_at
    from harness.results.artifacts import load_model
    from harness.task import get_task
    from harness.training.runtime import resolve_runtime

    _, two = one_and_two
    ensemble, card = load_model(two)
    task, runtime = get_task(card["task"]), resolve_runtime("cpu")
    dataset = open_dataset("synthetic-sem", profile="smoke")
    sample = dataset.load(dataset.index()["id"].iloc[0])
    for look in (maps_at, dihedral_maps):
        each = [look(member, sample, runtime, task, 1.0) for member in ensemble.members]
        assert np.allclose(look(ensemble, sample, runtime, task, 1.0), (each[0] + each[1]) / 2, atol=1e-6)
        assert not np.allclose(each[0], each[1], atol=1e-3)  # a mean of two different readings


def test_an_ensemble_run_reproduces_applies_and_files_apart(one_and_two, tmp_path):
    from harness.predict import predict_folder
    from harness.reproduce import request_for
    from harness.results.leaderboard import RecordStore
    from harness.results.record import read_record

    one, two = one_and_two
    assert request_for(read_record(two / "record.json")).ensemble == 2
    assert request_for(read_record(one / "record.json")).ensemble is None
    store = RecordStore(tmp_path / "lb")
    store.add(one)
    store.add(two)  # another cell: its settings differ
    filed = {p.name: json.loads(p.read_text()) for p in (tmp_path / "lb").rglob("*.json") if p.parent.name != "lb"}
    members = [r for r in filed.values() if isinstance(r, dict) and "members" in r]
    assert len(members) == 1 and len(members[0]["members"]) == 2
    summary = predict_folder(two, EMPS / "images", tmp_path / "predicted", device="cpu", progress=False)
    assert summary.images > 0 and len(list((tmp_path / "predicted" / "masks").glob("*.png"))) == summary.images


def test_what_an_ensemble_cannot_be_is_refused(tmp_path):
    from harness.pipeline import RunRequest, run_one
    from harness.results.artifacts import _check_card

    with pytest.raises(HarnessError, match="--ensemble averages the segment task's maps"):
        run_one(RunRequest(method="none", budget="2/class", dataset="synthetic-nanowire", profile="smoke",
                           task="classify", ensemble=2, progress=False, out=tmp_path / "c"), log=lambda _m: None)
    card = {"backbone": "resnet18", "task": "distmap-v3", "working_scale": 1.0, "postprocess": {}, "ensemble": "2"}
    with pytest.raises(HarnessError, match="ensemble is '2', not a number of networks"):
        _check_card(card, tmp_path / "model.json")
    bad = invoke("run", "--method", "none", "--budget", "2", "--profile", "smoke", "--ensemble", "0")
    assert bad.exit_code == 2 and "--ensemble" in bad.output
