"""The classification task (issue: every seed's recipe, item 2): per-class budgets that nest,
class-stratified splits only where a dataset has classes, macro-F1 against an independent
formula, readers that separate what is separable, and `harness run --task classify` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.data.base import image_classes
from harness.data.registry import open_dataset
from harness.data.splits import Budget, budget_slug, make_manifest
from harness.errors import HarnessError
from harness.metrics.classification import class_scores, macro_f1
from harness.task.classify import knn, linear_probe


@pytest.fixture(scope="module")
def nanowire():
    return open_dataset("synthetic-nanowire", profile="smoke")


def test_per_class_budgets_parse_nest_and_name_their_folders():
    budget = Budget.parse(" 4 / class")
    assert budget.per_class == 4 and budget.text == "4/class" and budget_slug(budget.text) == "4perclass"
    with pytest.raises(HarnessError, match="empty"):
        Budget.parse("0/class")
    with pytest.raises(HarnessError, match="needs the images' classes"):
        budget.count(100)
    dataset = open_dataset("synthetic-nanowire", profile="quick")
    manifest, classes = make_manifest(dataset), image_classes(dataset)
    assert classes is not None
    one, four, sixteen = (manifest.budget_ids(f"{k}/class", classes) for k in (1, 4, 16))
    assert set(one) < set(four) < set(sixteen) <= set(manifest.pools["train"])
    for ids, k in ((one, 1), (four, 4), (sixteen, 16)):
        counts = {c: sum(classes[i] == c for i in ids) for c in set(classes.values())}
        assert set(counts.values()) == {k}, counts
    with pytest.raises(HarnessError, match="has no image classes"):
        manifest.budget_ids("1/class")
    with pytest.raises(HarnessError, match="for class"):
        manifest.budget_ids("26/class", classes)  # the quick training pool holds 25 per class


def test_every_pool_holds_every_class_and_datasets_without_classes_split_as_before():
    dataset = open_dataset("synthetic-nanowire", profile="smoke")
    manifest, classes = make_manifest(dataset), image_classes(dataset)
    for pool in ("train", "val", "test"):
        assert {classes[i] for i in manifest.pools[pool]} == {"bundle", "dispersed", "network", "singular"}, pool
    # the manifest of every committed synthetic-sem quick record: stratifying by class must not move it
    assert make_manifest(open_dataset("synthetic-sem", profile="quick")).hash == "f31d7d3599d976ca"
    assert image_classes(open_dataset("synthetic-sem", profile="smoke")) is None


def test_macro_f1_agrees_with_the_precision_recall_formula():
    truth = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    predicted = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2, 1])
    f1s = []
    for c in range(4):
        tp = np.sum((predicted == c) & (truth == c))
        precision = tp / max(1, np.sum(predicted == c))
        recall = tp / max(1, np.sum(truth == c))
        f1s.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    assert macro_f1(truth, predicted, 4) == pytest.approx(np.mean(f1s))
    scores = class_scores(truth, predicted, ["high-mag"] * 5 + ["low-mag"] * 5, 4)
    assert scores["overall"].accuracy.mean == pytest.approx(0.6) and scores["overall"].n_images == 10
    assert scores["high-mag"].accuracy.mean == pytest.approx(0.6)
    low, high = scores["overall"].macro_f1.ci_low, scores["overall"].macro_f1.ci_high
    assert low is not None and high is not None and low <= scores["overall"].macro_f1.mean <= high


def test_both_readers_separate_separable_classes_and_fail_on_noise():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (4, 16))

    def draw(n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(4), n)
        return centres[y] * shift + rng.normal(0, 1, (4 * n, 16)), y

    train, val, test = draw(4, 1.0), draw(5, 1.0), draw(10, 1.0)
    for reader in (linear_probe(*train, *val, 4, seed=0), knn(*train, *val, 4)):
        assert reader.val_accuracy >= 0.9 and np.mean(reader.predict(test[0]) == test[1]) >= 0.9, reader.name
    noise_train, noise_val, noise_test = draw(4, 0.0), draw(5, 0.0), draw(50, 0.0)  # classes without signal
    probe = linear_probe(*noise_train, *noise_val, 4, seed=0)
    assert np.mean(probe.predict(noise_test[0]) == noise_test[1]) < 0.45


def test_a_classify_run_writes_a_record_whose_headline_the_per_image_rows_recompute(tmp_path, nanowire):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--task", "classify", "--method", "none", "--budget", "2/class",
                                       "--profile", "smoke", "--dataset", "synthetic-nanowire", "--quiet",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "macro-f1" in result.output
    record = json.loads((out / "record.json").read_text())
    rows = json.loads((out / "per_image.json").read_text())
    assert record["settings"]["task"] == "classify-v1" and record["protocol"] == "frozen"
    assert record["budget"] == "2/class" and record["budget_images"] == 8
    assert record["headline"]["metric"] == "accuracy" and len(rows) == record["headline"]["n_images"] == 6
    assert record["headline"]["value"] == pytest.approx(np.mean([r["probe"] == r["truth"] for r in rows]))
    knn_accuracy = record["metrics"]["readers"]["knn"]["overall"]["accuracy"]["mean"]
    assert knn_accuracy == pytest.approx(np.mean([r["knn"] == r["truth"] for r in rows]))

    # filed (every number recomputed from the rows), shown and rendered in a section of its own
    second = tmp_path / "run-seed1"
    assert CliRunner().invoke(main, ["run", "--task", "classify", "--method", "none", "--budget", "2/class",
                                     "--seed", "1", "--profile", "smoke", "--dataset", "synthetic-nanowire",
                                     "--quiet", "--out", str(second)]).exit_code == 0
    root = str(tmp_path / "lb")
    filed = CliRunner().invoke(main, ["leaderboard", "add", str(out), str(second), "--root", root])
    assert filed.exit_code == 0, filed.output
    shown = CliRunner().invoke(main, ["leaderboard", "show", "--root", root])
    assert shown.exit_code == 0 and "task classify-v1" in shown.output and "accuracy" in shown.output, shown.output
    assert "none" in shown.output and "| 2 " in shown.output  # two seeds in the cell
    rendered = CliRunner().invoke(main, ["leaderboard", "render", "--root", root])
    assert rendered.exit_code == 0, rendered.output
    readme = (tmp_path / "lb" / "README.md").read_text()
    assert "task classify-v1" in readme and "macro-F1" in readme and "rel. count error" not in readme

    # an edited number is caught by the recomputation
    tampered = json.loads((out / "record.json").read_text())
    tampered["headline"]["value"] = 0.99
    (out / "record.json").write_text(json.dumps(tampered))
    refused = CliRunner().invoke(main, ["leaderboard", "add", str(out), "--root", str(tmp_path / "other")])
    assert refused.exit_code != 0 and "disagrees with its per-image rows" in refused.output


@pytest.mark.parametrize(("arguments", "reason"), [
    (["--dataset", "synthetic-sem", "--budget", "2"], "has no image classes"),
    (["--dataset", "synthetic-nanowire", "--budget", "2/class", "--protocol", "finetune"], "frozen encoder"),
    (["--dataset", "synthetic-nanowire", "--budget", "1"], "one class only"),
])
def test_classify_refusals_are_one_line(arguments, reason, nanowire):
    result = CliRunner().invoke(main, ["run", "--task", "classify", "--method", "none", "--profile", "smoke",
                                       "--quiet", *arguments])
    assert result.exit_code != 0 and reason in result.output, result.output
    assert "Traceback" not in result.output
