"""What a run folder keeps for people (issue: see and use the results, item 1): the predicted
masks of the test split, which re-score to exactly the recorded per-image numbers, an overlay
montage, and the fine-tuned model with its card, which loads and predicts the same masks."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.data.registry import open_dataset
from harness.data.splits import make_manifest
from harness.errors import HarnessError
from harness.evaluation.predict import predict_instances
from harness.metrics import score_image
from harness.results.artifacts import load_model, read_labels
from harness.task import get_task
from harness.training.runtime import resolve_runtime


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    result = CliRunner().invoke(main, ["run", "--method", "none", "--budget", "4", "--profile", "smoke", "--quiet",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_kept_predictions_rescore_to_the_recorded_numbers(run_dir):
    dataset = open_dataset("synthetic-sem", profile="smoke")
    test_ids = make_manifest(dataset).pools["test"]
    per_image = json.loads((run_dir / "per_image.json").read_text())
    assert sorted(p.stem for p in (run_dir / "predictions").glob("*.png")) == sorted(test_ids)
    for sample_id, recorded in zip(test_ids, per_image, strict=True):
        stored = iio.imread(run_dir / "predictions" / f"{sample_id}.png")
        assert stored.dtype == np.uint16
        sample = dataset.load(sample_id)
        again = score_image(stored.astype(np.int32), sample.mask, sample.pixel_size_nm, sample.databar_rows)
        assert again.model_dump(mode="json") == recorded


def test_the_overlay_is_a_montage_image(run_dir):
    overlay = iio.imread(run_dir / "overlay.png")
    assert overlay.ndim == 3 and overlay.shape[0] > 200 and overlay.shape[1] > 600  # panels side by side


def test_the_kept_model_loads_and_predicts_the_kept_masks(run_dir):
    net, card = load_model(run_dir)
    record = json.loads((run_dir / "record.json").read_text())
    assert card["record"] == record["run_id"] and card["task"] == record["settings"]["task"]
    assert card["postprocess"] == record["postprocess"]["params"] and card["method"] == "none"
    dataset = open_dataset("synthetic-sem", profile="smoke")
    sample_id = make_manifest(dataset).pools["test"][0]
    again = predict_instances(net, dataset.load(sample_id), resolve_runtime("cpu"), get_task(card["task"]),
                              card["postprocess"], card["working_scale"])
    assert np.array_equal(again, read_labels(run_dir / "predictions" / f"{sample_id}.png"))


def test_a_model_whose_weights_were_edited_is_refused(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-10] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(HarnessError, match="do not match the sha256"):
        load_model(copy)
    (copy / "model.json").unlink()
    with pytest.raises(HarnessError, match="no model.safetensors"):
        load_model(copy)
