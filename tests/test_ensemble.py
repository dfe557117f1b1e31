"""`--ensemble K`: K networks fine-tuned from their own seeds and read as one (harness.models.ensemble).

Member 0 is the network a run of the same seed without the option trains, and member k the network
of a plain run with member k's seed; the record states every member's seed and model selection; the
model folder keeps all K, and whatever reads it (the test, `harness predict`, the diagnostics) averages
their maps. Records of one network keep their bytes."""

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
def runs(tmp_path_factory) -> dict[str, Path]:
    """On the vendored EMPS folder (smoke, `none`, 100%): sweep cells of one network (seed 3) and of an
    ensemble of two (seed 3), and a plain run with the seed of the ensemble's member 1."""
    from harness.pipeline import member_seeds

    out = tmp_path_factory.mktemp("ensemble")
    common = ["--profile", "smoke", "--dataset", str(EMPS), "--quiet"]
    for extra in ([], ["--ensemble", "2"]):
        result = invoke("sweep", "--methods", "none", "--budgets", "100%", "--seeds", "3", "--out", str(out),
                        *common, *extra)
        assert result.exit_code == 0, result.output
    second = out / "second"
    result = invoke("run", "--method", "none", "--budget", "100%", "--seed", str(member_seeds(3, 2)[1]),
                    "--out", str(second), *common)
    assert result.exit_code == 0, result.output
    one, = out.glob("*/none-100pct-finetune-seed3")
    two, = out.glob("*/none-100pct-finetune-seed3-ensemble2")
    return {"one": one, "two": two, "second": second}


def test_an_ensemble_states_its_members_and_each_is_a_plain_run(runs):
    from harness.pipeline import member_seeds
    from harness.results.artifacts import load_model

    a, b, c = (json.loads((runs[k] / "record.json").read_text()) for k in ("one", "two", "second"))
    assert "ensemble" not in a["settings"] and "members" not in a  # one network: the record as before
    assert b["settings"]["ensemble"] == 2
    assert {k: v for k, v in b["settings"].items() if k != "ensemble"} == a["settings"]
    seeds = member_seeds(3, 2)
    assert seeds[0] == 3 and member_seeds(3, 3)[:2] == seeds  # a member's seed does not depend on K
    others = {m for s in range(20) for m in member_seeds(s, 4)[1:]}
    assert len(others) == 60 and not others & set(range(1000))  # a sweep's seeds share no member
    assert [m["seed"] for m in b["members"]] == seeds
    for key in ("best_step", "best_score", "finetune_steps_run"):
        assert b["members"][0][key] == a["selection"][key] == b["selection"][key]
        assert b["members"][1][key] == c["selection"][key]
    ensemble, card = load_model(runs["two"])
    assert card["ensemble"] == 2 and "ensemble" not in load_model(runs["one"])[1]
    for member, plain in zip(ensemble.members, ("one", "second"), strict=True):
        assert all(torch.equal(member.state_dict()[k], v)  # the same networks, bitwise
                   for k, v in load_model(runs[plain])[0].state_dict().items())


def test_an_ensemble_is_read_as_the_mean_of_its_members_maps(runs):
    from harness.data.registry import open_dataset
    from harness.evaluation.predict import dihedral_maps, maps_at
    from harness.models import Ensemble
    from harness.results.artifacts import load_model
    from harness.task import get_task
    from harness.training.runtime import resolve_runtime

    ensemble, card = load_model(runs["two"])
    task, runtime = get_task(card["task"]), resolve_runtime("cpu")
    dataset = open_dataset(str(EMPS))
    sample = dataset.load(dataset.index()["id"].iloc[0])
    for look in (maps_at, dihedral_maps):
        each = [look(member, sample, runtime, task, card["working_scale"]) for member in ensemble.members]
        assert np.allclose(look(ensemble, sample, runtime, task, card["working_scale"]), (each[0] + each[1]) / 2,
                           atol=1e-6)
        assert not np.allclose(each[0], each[1], atol=1e-3)  # a mean of two different readings
    assert len(Ensemble([ensemble, load_model(runs["one"])[0]]).members) == 3  # an ensemble joins with its own
    with pytest.raises(HarnessError, match="no logits of its own"):
        ensemble(torch.zeros(1, 1, 32, 32))


def test_the_diagnostic_reads_two_plain_runs_as_the_harness_reads_their_ensemble(runs, script):
    """scripts/ensemble_look.py on the two plain runs gives the ensemble run's thresholds and test images."""
    reading = script("ensemble_look").read_split([runs["one"], runs["second"]], str(EMPS), "test", 0, progress=False)
    record = json.loads((runs["two"] / "record.json").read_text())
    assert reading["params"] == record["postprocess"]["params"]
    assert reading["tuned_score"] == pytest.approx(record["postprocess"]["score"])
    recorded = json.loads((runs["two"] / "per_image.json").read_text())
    assert [(r["count"], r["f1"]) for r in reading["rows"]] == [(i["count_rel_error"], i["f1"] or 0.0)
                                                               for i in recorded]  # the same code path: exact


def test_an_ensemble_run_reproduces_applies_and_files_apart(runs, tmp_path):
    from harness.predict import predict_folder
    from harness.reproduce import compare_records, request_for
    from harness.results.leaderboard import RecordStore
    from harness.results.record import read_record

    one, two = read_record(runs["one"] / "record.json"), read_record(runs["two"] / "record.json")
    assert request_for(two).ensemble == 2 and request_for(one).ensemble is None
    changed = two.model_copy(update={"members": [two.members[0], two.members[1].model_copy(update={"best_step": 1})]})
    assert any("members" in line for line in compare_records(two, changed, None, None)[1])  # every member compared
    store = RecordStore(tmp_path / "lb")
    store.add(runs["one"])
    store.add(runs["two"])  # another cell: its settings differ
    filed = [json.loads(p.read_text()) for p in (tmp_path / "lb" / "records").rglob("*.json")]
    assert [len(r["members"]) for r in filed if isinstance(r, dict) and "members" in r] == [2]
    summary = predict_folder(runs["two"], EMPS / "images", tmp_path / "predicted", device="cpu", progress=False)
    assert summary.images > 0 and len(list((tmp_path / "predicted" / "masks").glob("*.png"))) == summary.images


def test_what_an_ensemble_cannot_be_is_refused(runs, tmp_path):
    import shutil

    from harness.pipeline import RunRequest
    from harness.results.artifacts import _check_card, load_model
    from harness.results.leaderboard import RecordStore

    with pytest.raises(HarnessError, match="--ensemble averages the segment task's maps"):
        RunRequest(method="none", budget="2/class", dataset="synthetic-nanowire", task="classify", ensemble=2)
    assert RunRequest(method="none", budget="2", ensemble=1).ensemble is None  # one network is the plain run
    card = {"backbone": "resnet18", "task": "distmap-v3", "working_scale": 1.0, "postprocess": {}, "ensemble": "2"}
    with pytest.raises(HarnessError, match="ensemble is '2', not a number of networks"):
        _check_card(card, tmp_path / "model.json")
    edited = shutil.copytree(runs["two"], tmp_path / "edited")
    card = json.loads((edited / "model.json").read_text())
    (edited / "model.json").write_text(json.dumps({**card, "ensemble": 3}))
    with pytest.raises(HarnessError, match="does not fit model.safetensors"):
        load_model(edited)
    record = json.loads((edited / "record.json").read_text())
    (edited / "record.json").write_text(json.dumps({**record, "members": record["members"][:1]}))
    with pytest.raises(HarnessError, match=r"an ensemble of 2, but the record names 1 member"):
        RecordStore(tmp_path / "lb").add(edited)
    bad = invoke("run", "--method", "none", "--budget", "2", "--profile", "smoke", "--ensemble", "0")
    assert bad.exit_code == 2 and "--ensemble" in bad.output
