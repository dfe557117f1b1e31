"""The leaderboard: records, concurrent adds, releases, tables, significance marks, plots, reproduce.

One real smoke run is made (with an even smaller training schedule, patched into the pipeline for
this module); every other record is that run's record with edited metrics, so the tests control
exactly which differences the statistics should find.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.errors import HarnessError
from harness.numerics import NUMERICS_VERSION
from harness.results import stats
from harness.results.boards import build_boards
from harness.results.leaderboard import RecordStore, canonical_bytes
from harness.results.record import RECORD_FILE, RunRecord, read_record
from harness.results.tables import MARK, build_tables, render

METRIC = "count_rel_error"  # lower is better


# ---- the one real run ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_pipeline():
    """The smoke profile with a 2-step fine-tuning, for this module only (real code, fewer steps).

    One torch thread: on a shared 2-core machine, two threads contending with other processes
    make the first run minutes slower (the record names the thread count; reproduce compares it).
    """
    import torch

    import harness.context as context
    import harness.pipeline as pipeline

    original = context.settings_for
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def tiny(profile: str, **overrides):
        return original(profile, **overrides).model_copy(update={"finetune_steps": 2, "val_every": 2,
                                                                 "crop_size": 32})

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(context, "settings_for", tiny)  # where a run's Context reads its settings
        yield pipeline
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smoke_run(tiny_pipeline, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke-run")
    request = tiny_pipeline.RunRequest(method="none", budget="1", profile="smoke", seed=3, progress=False, out=out)
    tiny_pipeline.run_one(request, log=lambda _msg: None)
    assert (out / RECORD_FILE).is_file() and (out / "per_image.json").is_file()
    return out


def variant(base: Path, dest: Path, *, method: str = "none", seed: int = 0, budget: str = "1",
            budget_images: int | None = None, value: float | None = None,
            image_values: list[float] | None = None, metric: str = METRIC, **edits) -> Path:
    """A copy of the real run with another identity and, optionally, another value of ``metric``."""
    data = json.loads((base / RECORD_FILE).read_text())
    per_image = json.loads((base / "per_image.json").read_text())
    data["run_id"] = f"{method}-{budget.replace('%', 'pct')}-s{seed}-{dest.name}"[:60]
    data["method"]["name"] = method
    data["seeds"]["train"] = seed
    data["budget"] = budget
    data["budget_images"] = budget_images if budget_images is not None else int(budget.rstrip("%"))
    if image_values is not None:
        assert len(image_values) == len(per_image)
        for row, v in zip(per_image, image_values, strict=True):
            row[metric] = v
        value = float(np.mean(image_values)) if value is None else value
    if value is not None:
        data["metrics"]["groups"]["overall"]["per_image"][metric]["mean"] = value
    for key, new in edits.items():
        data[key] = new
    dest.mkdir(parents=True)
    (dest / RECORD_FILE).write_text(json.dumps(data))
    (dest / "per_image.json").write_text(json.dumps(per_image))
    return dest


def add_forged(store: RecordStore, run: Path) -> Path:
    """File a record whose numbers ``variant`` fabricated: the recomputation check would rightly
    refuse it, and these tests are about the tables, not about filing."""
    return store.add(run, check=False)


def cli(*args: str):
    return CliRunner().invoke(main, ["leaderboard", *args], catch_exceptions=False)


# ---- records ------------------------------------------------------------------------------------


def test_schema_round_trip_and_filing_keeps_every_field(smoke_run, tmp_path):
    record = read_record(smoke_run / RECORD_FILE)
    again = RunRecord.model_validate(json.loads(json.dumps(record.model_dump(mode="json"))))
    assert again == record and again.schema_version == 1
    store = RecordStore(tmp_path / "lb")
    target = store.add(smoke_run)
    assert target == tmp_path / "lb" / "records" / record.dataset.key / f"{record.run_id}.json"
    assert target.read_bytes() == canonical_bytes(record.dump())
    (filed,) = store.records()
    assert filed.record == record and filed.stored_schema == 1
    assert filed.per_image_scores() == json.loads((smoke_run / "per_image.json").read_text())


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda d: d.pop("budget"), "budget: Field required"),
        (lambda d: d["seeds"].update(train="three"), "seeds.train: Input should be a valid integer"),
        (lambda d: d.update(schema_version=99), "record schema version 99 is not known"),
        (lambda d: d.update(surprise=1), "surprise: Extra inputs are not permitted"),
        (lambda d: d["dataset"].update(key="../escape"), "is not a safe file name"),
    ],
)
def test_malformed_record_is_refused_in_one_line(smoke_run, tmp_path, edit, reason):
    run = tmp_path / "bad"
    run.mkdir()
    data = json.loads((smoke_run / RECORD_FILE).read_text())
    edit(data)
    (run / RECORD_FILE).write_text(json.dumps(data))
    result = cli("add", str(run), "--root", str(tmp_path / "lb"))
    assert result.exit_code == 2
    refusal = [line for line in result.output.splitlines() if line.startswith("refused")]
    assert len(refusal) == 1 and reason in refusal[0] and str(run) in refusal[0]
    assert not list((tmp_path / "lb").glob("records/*/*.json"))


def test_broken_json_and_inconsistent_per_image_are_refused(smoke_run, tmp_path):
    store = RecordStore(tmp_path / "lb")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / RECORD_FILE).write_text("{not json")
    with pytest.raises(HarnessError, match="not valid JSON"):
        store.add(broken)
    short = variant(smoke_run, tmp_path / "short")
    per_image = json.loads((short / "per_image.json").read_text())
    (short / "per_image.json").write_text(json.dumps(per_image[:-1]))
    with pytest.raises(HarnessError, match="per-image scores, but the record's metrics cover"):
        store.add(short)
    assert store.records() == []


def test_duplicates_are_refused_with_the_reason(smoke_run, tmp_path):
    store = RecordStore(tmp_path / "lb")
    first = variant(smoke_run, tmp_path / "a", seed=1)
    store.add(first)
    with pytest.raises(HarnessError, match="already filed with identical content"):
        store.add(first)
    changed = variant(smoke_run, tmp_path / "a2", seed=1, command="harness run --edited")
    data = json.loads((changed / RECORD_FILE).read_text())
    data["run_id"] = json.loads((first / RECORD_FILE).read_text())["run_id"]
    (changed / RECORD_FILE).write_text(json.dumps(data))
    with pytest.raises(HarnessError, match="already filed .* with different content"):
        store.add(changed)
    same_cell = variant(smoke_run, tmp_path / "b", seed=1)  # new run_id, same method/budget/seed
    with pytest.raises(HarnessError, match="the same grid cell is already filed"):
        store.add(same_cell)
    assert len(store.records()) == 1


def _edit(run: Path, name: str, change) -> Path:
    data = json.loads((run / name).read_text())
    change(data)
    (run / name).write_text(json.dumps(data))
    return run


@pytest.mark.parametrize(
    ("name", "change", "reason"),
    [
        # the headline edited, its own CI and per-image scores left as they were
        (RECORD_FILE, lambda d: d["headline"].update(value=0.0001), "headline.value = 0.0001, recomputed"),
        (RECORD_FILE, lambda d: d["metrics"]["groups"]["overall"]["per_image"]["f1"].update(mean=float("nan")),
         "metrics.groups.overall.per_image.f1.mean = nan"),
        (RECORD_FILE, lambda d: d["metrics"]["groups"]["overall"]["per_image"]["f1"].update(n_undefined=3),
         "n_undefined = 3"),
        (RECORD_FILE, lambda d: d["metrics"]["groups"]["overall"]["pooled"].update(dice=0.999),
         "pooled.dice = 0.999"),
        # a per-image score edited, so it no longer follows from that image's counts
        ("per_image.json", lambda d: d[0].update(count_rel_error=0.0), "image 0: count_rel_error = 0.0, its counts"),
        ("per_image.json", lambda d: d[1].update(matched=d[1]["matched"] + 1), "image 1:"),
    ],
)
def test_tampered_records_are_refused(smoke_run, tmp_path, name, change, reason):
    store = RecordStore(tmp_path / "lb")
    run = _edit(variant(smoke_run, tmp_path / "run"), name, change)
    with pytest.raises(HarnessError, match="disagrees with its per-image scores") as err:
        store.add(run)
    assert reason in str(err.value) and "\n" not in str(err.value)
    assert store.records() == []


def test_a_record_without_per_image_scores_is_not_filed(smoke_run, tmp_path):
    run = variant(smoke_run, tmp_path / "run")
    (run / "per_image.json").unlink()
    with pytest.raises(HarnessError, match="no per_image.json beside the record"):
        RecordStore(tmp_path / "lb").add(run)


def test_a_filed_record_edited_afterwards_is_caught_by_its_digest(smoke_run, tmp_path):
    root = tmp_path / "lb"
    store = RecordStore(root)
    target = store.add(variant(smoke_run, tmp_path / "run"))
    digest = target.with_name(target.stem + ".sha256")
    assert sorted(line.split("  ")[1] for line in digest.read_text().splitlines()) == sorted(
        [target.name, target.stem + ".per_image.json"])
    assert cli("verify", "--root", str(root)).exit_code == 0
    side = target.with_name(target.stem + ".per_image.json")
    scores = json.loads(side.read_text())
    scores[0]["f1"] = 1.0
    side.write_text(json.dumps(scores))
    with pytest.raises(HarnessError, match="per_image.json was changed after filing"):
        store.records()
    result = CliRunner().invoke(main, ["leaderboard", "verify", "--root", str(root)])
    assert result.exit_code == 2 and "changed after filing" in result.output and "Traceback" not in result.output


def test_verify_recomputes_and_seals_records_filed_before_digests(smoke_run, tmp_path):
    root = tmp_path / "lb"
    store = RecordStore(root)
    honest = store.add(variant(smoke_run, tmp_path / "honest", seed=1))
    forged = add_forged(store, variant(smoke_run, tmp_path / "forged", seed=2, value=0.01))
    for target in (honest, forged):  # as filed by an older harness
        target.with_name(target.stem + ".sha256").unlink()
    result = CliRunner().invoke(main, ["leaderboard", "verify", "--seal", "--root", str(root)])
    assert result.exit_code == 2 and "1 of 2 filed record(s) fail" in result.output
    assert f"{forged}: the record disagrees" in result.output
    assert honest.with_name(honest.stem + ".sha256").is_file()  # sealed once it checked out
    assert not forged.with_name(forged.stem + ".sha256").exists()


@pytest.mark.parametrize("edit, says", [
    ({"method": ""}, "method name ''"), ({"budget": "lots"}, "label budget 'lots' is not understood"),
    ({"seeds": {"split": 0, "data": 0, "train": -5}}, "train seed -5 is outside"),
    ({"run_id": "x" * 300}, "is not a safe file name")])
def test_a_record_edited_out_of_any_cell_is_not_filed(smoke_run, tmp_path, edit, says):
    run = variant(smoke_run, tmp_path / "run", seed=1)
    data = json.loads((run / RECORD_FILE).read_text())
    if "method" in edit:
        data["method"]["name"] = edit["method"]
    else:
        data.update(edit)
    (run / RECORD_FILE).write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["leaderboard", "add", str(run), "--root", str(tmp_path / "lb")])
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output, result.output
    assert not list((tmp_path / "lb").glob("records/*/*.json"))


def test_a_record_whose_digest_was_removed_does_not_verify(smoke_run, tmp_path):
    """Deleting a digest must not let an edit pass: without --seal, a record with no digest fails."""
    root = tmp_path / "lb"
    target = RecordStore(root).add(variant(smoke_run, tmp_path / "run", seed=1))
    target.with_name(target.stem + ".sha256").unlink()
    data = json.loads(target.read_text())
    data["budget"] = "2"  # an edit the recomputed numbers cannot see
    target.write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["leaderboard", "verify", "--root", str(root)])
    assert result.exit_code == 2 and "has no digest" in result.output and "digests hold" not in result.output
    missing = CliRunner().invoke(main, ["leaderboard", "verify", "--root", str(tmp_path / "typo")])
    assert missing.exit_code == 2 and "no leaderboard here" in missing.output and "Traceback" not in missing.output


def test_concurrent_adds_from_several_processes_lose_nothing(smoke_run, tmp_path):
    root = tmp_path / "lb"
    own = [[variant(smoke_run, tmp_path / f"p{p}-{i}", method=f"m{p}", seed=i) for i in range(3)] for p in range(4)]
    shared = [variant(smoke_run, tmp_path / f"shared-{i}", method="shared", seed=i) for i in range(2)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-m", "harness", "leaderboard", "add", "--root", str(root),
                          *map(str, runs + shared)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for runs in own
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    text = "".join(out + err for out, err in outputs)
    lines = text.splitlines()
    assert sum(line.startswith("filed ") for line in lines) == 12 + 2, text
    assert sum("already filed with identical content" in line for line in lines) == 4 * 2 - 2, text
    assert codes.count(0) <= 2 and set(codes) <= {0, 2}, text
    filed = RecordStore(root).records()
    assert len(filed) == 14
    for f in filed:  # nothing corrupted: every file is the canonical form of its source
        assert f.per_image is not None
        assert len(f.per_image_scores()) == f.record.metrics.n_images("overall")
        assert f.path.read_bytes() == canonical_bytes(f.record.dump())
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# ---- releases -----------------------------------------------------------------------------------


def test_a_release_rebuilds_byte_identical_tables(smoke_run, tmp_path):
    root = tmp_path / "lb"
    store = RecordStore(root)
    for i, (method, value) in enumerate([("alpha", 0.2), ("beta", 0.4)]):
        for seed in range(2):
            add_forged(store, variant(smoke_run, tmp_path / f"{method}{seed}", method=method, seed=seed,
                              value=value + 0.01 * seed + i * 0.001))
    published = {fmt: cli("show", "--root", str(root), "--format", fmt).output for fmt in ("md", "csv", "json")}
    assert cli("release", "v1", "--root", str(root)).exit_code == 0
    manifest = json.loads((root / "releases" / "v1.json").read_text())
    assert len(manifest["files"]) == 8 and all(len(f["sha256"]) == 64 for f in manifest["files"])

    add_forged(store, variant(smoke_run, tmp_path / "gamma", method="gamma", seed=0, value=0.1))
    assert cli("show", "--root", str(root)).output != published["md"]  # the live store moved on
    for fmt, text in published.items():
        assert cli("show", "--root", str(root), "--release", "v1", "--format", fmt).output == text

    again = cli("release", "v1", "--root", str(root))
    assert again.exit_code == 2 and "already exists" in again.output
    target = root / manifest["files"][0]["path"]
    target.write_bytes(target.read_bytes().replace(b'"budget"', b'"budget" ', 1))
    tampered = cli("show", "--root", str(root), "--release", "v1")
    assert tampered.exit_code == 2 and "changed since the release" in tampered.output
    # the manifest itself edited: a record's entry dropped, or the release renamed inside it
    path = root / "releases" / "v1.json"
    dropped = {**manifest, "files": [f for f in manifest["files"] if f["path"] != manifest["files"][2]["path"]]}
    for edited, says in ((dropped, "lists 3 record file(s) where its dataset counts say 4"),
                         ({**manifest, "release": "v7"}, "names release 'v7', not 'v1'")):
        path.write_text(json.dumps(edited))
        result = cli("show", "--root", str(root), "--release", "v1")
        assert result.exit_code == 2 and says in result.output, result.output


def test_dataset_versions_and_schema_versions_never_share_a_table(smoke_run, tmp_path):
    store = RecordStore(tmp_path / "lb")
    store.add(variant(smoke_run, tmp_path / "a", method="alpha"))
    other = variant(smoke_run, tmp_path / "b", method="beta")
    data = json.loads((other / RECORD_FILE).read_text())
    data["dataset"]["version"], data["dataset"]["key"] = "9", data["dataset"]["key"].replace("-v", "-v9", 1)
    (other / RECORD_FILE).write_text(json.dumps(data))
    store.add(other)
    boards = build_boards(store.records())
    assert len(boards) == 2 and all(len(b.labels) == 1 for b in boards)


def test_two_releases_of_a_plugin_never_pool_their_seeds(smoke_run, tmp_path):
    """The same method name, config and seed computed by two versions of its distribution (or a rival
    package) are two cells and two entries, labelled by the implementation."""
    store = RecordStore(tmp_path / "lb")
    for version in ("0.1.0", "0.2.0"):
        run = variant(smoke_run, tmp_path / version, method="alpha")
        _edit(run, RECORD_FILE, lambda d, v=version: d["method"].update(distribution="harness-alpha", version=v))
        store.add(run)  # not "the same grid cell"
    (board,) = build_boards(store.records())
    assert sorted(board.labels.values()) == ["alpha (harness-alpha 0.1.0)", "alpha (harness-alpha 0.2.0)"]


# ---- tables and significance ---------------------------------------------------------------------


def _ranking(root: Path, *args: str) -> tuple[pd.DataFrame, str]:
    result = cli("show", "--root", str(root), "--metric", METRIC, *args)
    assert result.exit_code == 0, result.output
    tables = json.loads(cli("show", "--root", str(root), "--metric", METRIC, "--format", "json", *args).output)
    return pd.DataFrame(tables["tables"][0]["data"]), result.output


def _fill(smoke_run: Path, tmp_path: Path, values: dict[str, list[float]]) -> Path:
    root = tmp_path / "lb"
    store = RecordStore(root)
    for method, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            add_forged(store, variant(smoke_run, tmp_path / f"{method}-{seed}", method=method, seed=seed, value=value))
    return root


def test_mark_appears_when_the_paired_test_supports_the_lead(smoke_run, tmp_path):
    root = _fill(smoke_run, tmp_path, {"good": [0.10, 0.12, 0.11, 0.13], "bad": [0.30, 0.35, 0.31, 0.36],
                                       "worse": [0.60, 0.61, 0.62, 0.66]})
    data, text = _ranking(root, "--test", "seeds")
    assert list(data["entry"]) == ["good", "bad", "worse"] and list(data["rank"]) == [1, 2, 3]
    assert data["n"].tolist() == [4, 4, 4]
    assert bool(data.loc[0, "significant"]) and data.loc[0, "p_value"] < 0.05
    assert f"good {MARK}" in text and "paired t-test over training seeds" in text
    assert text.count(MARK) == 2  # the mark in the table, and its explanation in the footer
    assert "0.1150 ± 0.0129" in text


def test_no_mark_when_the_lead_is_not_supported(smoke_run, tmp_path):
    root = _fill(smoke_run, tmp_path, {"first": [0.10, 0.30, 0.20], "second": [0.20, 0.12, 0.30]})
    data, text = _ranking(root, "--test", "seeds")
    assert data.loc[0, "entry"] == "first" and not bool(data.loc[0, "significant"])
    assert data.loc[0, "p_value"] >= 0.05 and f"first {MARK}" not in text
    assert "the lead over the runner-up is not supported" in text


def test_no_mark_with_fewer_than_two_paired_seeds(smoke_run, tmp_path):
    root = _fill(smoke_run, tmp_path, {"lone": [0.01], "other": [0.90]})
    data, text = _ranking(root, "--test", "seeds")
    assert not bool(data.loc[0, "significant"]) and "fewer than 2 pairs" in text and f"lone {MARK}" not in text


def test_higher_is_better_metrics_rank_the_other_way(smoke_run, tmp_path):
    store = RecordStore(tmp_path / "lb")
    for method, f1 in (("low", [0.2, 0.21, 0.22]), ("high", [0.8, 0.82, 0.81])):
        for seed, v in enumerate(f1):
            add_forged(store, variant(smoke_run, tmp_path / f"{method}{seed}", method=method, seed=seed, value=v,
                                      metric="f1"))
    result = cli("show", "--root", str(tmp_path / "lb"), "--metric", "f1", "--format", "json", "--test", "seeds")
    rows = json.loads(result.output)["tables"][0]["data"]
    assert [r["entry"] for r in rows] == ["high", "low"] and rows[0]["significant"]


def test_image_level_test_marks_a_consistent_lead_on_every_image(smoke_run, tmp_path):
    n = len(json.loads((smoke_run / "per_image.json").read_text()))
    assert n >= 6  # the exact two-sided Wilcoxon p with 6 concordant pairs is 2/64
    store = RecordStore(tmp_path / "lb")
    better = [0.1 + 0.01 * i for i in range(n)]
    add_forged(store, variant(smoke_run, tmp_path / "a", method="sharp", image_values=better))
    add_forged(store, variant(smoke_run, tmp_path / "b", method="blunt", image_values=[v + 0.2 + 0.01 * i
                                                                              for i, v in enumerate(better)]))
    add_forged(store, variant(smoke_run, tmp_path / "c", method="mixed", image_values=[v + (0.06 if i % 2 else -0.05)
                                                                              for i, v in enumerate(better)]))
    supported = build_tables(build_boards(RecordStore(tmp_path / "lb").records()), METRIC, test="images")
    (table,) = supported
    assert table.data[0]["entry"] == "sharp" and table.data[0]["test"] == "images"
    # "mixed" is the runner-up: half its images are better, half worse -> no mark
    assert table.data[1]["entry"] == "mixed" and not table.data[0]["significant"]
    board_two = RecordStore(tmp_path / "lb2")
    add_forged(board_two, variant(smoke_run, tmp_path / "d", method="sharp", image_values=better))
    add_forged(board_two, variant(smoke_run, tmp_path / "e", method="blunt",
                          image_values=[v + 0.2 + 0.01 * i for i, v in enumerate(better)]))
    (table,) = build_tables(build_boards(board_two.records()), METRIC, test="auto")  # 1 seed -> images
    assert table.data[0]["significant"] and table.data[0]["test"] == "images"
    assert "Wilcoxon signed-rank test over test images" in render([table], "md")


def test_label_efficiency_view_and_area_under_the_curve(smoke_run, tmp_path):
    store = RecordStore(tmp_path / "lb")
    curves = {"steep": {1: 0.8, 3: 0.4, 6: 0.2}, "flat": {1: 0.5, 3: 0.5, 6: 0.5}}
    for method, curve in curves.items():
        for n_images, value in curve.items():
            add_forged(store, variant(smoke_run, tmp_path / f"{method}{n_images}", method=method, budget=str(n_images),
                              value=value))
    tables = build_tables(build_boards(store.records()), METRIC)
    assert [t.context["view"] for t in tables] == ["ranking", "ranking", "ranking", "label-efficiency"]
    efficiency = tables[-1]
    x = np.log10([1, 3, 6])
    expected = {m: float(np.trapezoid(list(c.values()), x) / (x[-1] - x[0])) for m, c in curves.items()}
    aucs = {r["entry"]: r["auc_log_budget"] for r in efficiency.data}
    assert aucs == pytest.approx(expected)
    assert [row[1] for row in efficiency.rows] == sorted(expected, key=expected.get)  # lower is better
    assert efficiency.columns[2:5] == ["1 (1 img)", "3 (3 img)", "6 (6 img)"]
    assert stats.log_budget_auc([(10, 1.0)]) is None


def _pretrain(seed: int, late: float | None, reference: float | None, held_out: float | None = None) -> dict:
    return {"cache_key": f"key{seed}", "reused_cache": False, "steps": 300, "final_loss": late, "pool": "unlabeled",
            "late_loss": late, "reference_loss": reference, "held_out_loss": held_out}


def test_the_pretext_table_sets_each_pretraining_against_its_rule_without_learning(smoke_run, tmp_path):
    store = RecordStore(tmp_path / "lb")
    # "paired": its last tenth (other batches) looks unlearnt, its trained network on the rule's own batches
    # and draws does not, and the paired figure is the one that counts
    pretexts = {"learnt": ([0.5, 0.7], [1.0, 1.0], [None, None]), "unlearnt": ([1.1, 0.9], [1.0, 1.0], [1.02, 0.9]),
                "no-rule": ([-0.8, -0.9], [None, None], [None, None]), "paired": ([1.2, 1.2], [1.0, 1.0], [0.8, 0.9])}
    for method, (late, reference, held_out) in pretexts.items():
        for seed in (0, 1):
            for budget in ("1", "3"):  # the budgets of a seed share one pretraining: counted once
                add_forged(store, variant(smoke_run, tmp_path / f"{method}{seed}-{budget}", method=method, seed=seed,
                                          budget=budget,
                                          pretrain=_pretrain(seed, late[seed], reference[seed], held_out[seed])))
    add_forged(store, variant(smoke_run, tmp_path / "none", method="none", budget="1"))  # no pretraining: no row
    tables = build_tables(build_boards(store.records()), METRIC)
    assert [t.context["view"] for t in tables] == ["ranking", "ranking", "label-efficiency", "pretext"]
    rows = {r["entry"]: r for r in tables[-1].data}
    assert set(rows) == {"learnt", "unlearnt", "no-rule", "paired"}
    assert rows["learnt"]["pretrainings"] == 2 and rows["learnt"]["late_loss"] == pytest.approx(0.6)
    assert rows["learnt"]["ratio_to_reference"] == pytest.approx(0.6)
    assert rows["unlearnt"]["ratio_to_reference"] == pytest.approx(0.96)
    assert rows["no-rule"]["reference_loss"] is None and rows["no-rule"]["ratio_to_reference"] is None
    assert rows["paired"]["ratio_to_reference"] == pytest.approx(0.85) and rows["paired"]["held_out_pretrainings"] == 2
    assert "was the pretext learnt?" in render(tables, "md")
    assert tables[-1].rows[1] == ["no-rule", "2", "300", "-0.8500 ± 0.0707", "-", "-", "-"]
    assert tables[-1].rows[2] == ["paired", "2", "300", "1.2000 ± 0.0000", "0.8500 ± 0.0707", "1.0000 ± 0.0000",
                                  "0.850"]
    # the ranking marks an entry whose pretext went unlearnt on some seed, and says on how many; only the
    # paired comparison judges ("learnt" kept none, "paired" looks unlearnt on its last tenth only)
    ranking = tables[0]
    marks = {r["entry"]: (r["pretext_unlearnt"], r["pretext_judged"]) for r in ranking.data}
    assert marks == {"learnt": (0, 0), "unlearnt": (1, 2), "no-rule": (0, 0), "none": (0, 0), "paired": (0, 2)}
    assert {row[1] for row in ranking.rows} == {"learnt", "unlearnt ‡", "no-rule", "none", "paired"}
    assert "‡ pretext not learnt" in ranking.footer[-1] and "unlearnt (1 of 2 pretrainings);" in ranking.footer[-1]
    assert cli("render", "--root", str(tmp_path / "lb")).exit_code == 0  # the published page has it too
    assert "was the pretext learnt?" in (tmp_path / "lb" / "README.md").read_text()
    assert "unlearnt ‡" in (tmp_path / "lb" / "README.md").read_text()
    # a budget of its own is asked for: the ranking only; records that never kept the losses: no table
    assert [t.context["view"] for t in build_tables(build_boards(store.records()), METRIC, budget="1")] == ["ranking"]
    # one key re-made on another machine, whose float kernels gave another loss: a pretraining of its own
    remade = RecordStore(tmp_path / "remade")
    for seed, (budget, late) in enumerate((("1", 0.5), ("3", 0.5000001))):
        add_forged(remade, variant(smoke_run, tmp_path / f"remade{budget}", method="remade", seed=seed,
                                   budget=budget, pretrain=_pretrain(0, late, 1.0)))
    (table,) = [t for t in build_tables(build_boards(remade.records()), METRIC) if t.context["view"] == "pretext"]
    assert table.data[0]["pretrainings"] == 2
    old = RecordStore(tmp_path / "old")
    add_forged(old, variant(smoke_run, tmp_path / "old0", method="learnt", pretrain=_pretrain(0, None, None)))
    assert [t.context["view"] for t in build_tables(build_boards(old.records()), METRIC)] == ["ranking"]


def test_per_length_scale_table_and_output_formats(smoke_run, tmp_path):
    root = _fill(smoke_run, tmp_path, {"a": [0.1, 0.2], "b": [0.3, 0.4]})
    md = cli("show", "--root", str(root), "--by", "length-scale")
    assert md.exit_code == 0 and "| rank" in md.output and "high-mag" in md.output and "overall" in md.output
    html = cli("show", "--root", str(root), "--format", "html").output
    assert "<table" in html and "</html>" in html
    csv = pd.read_csv(__import__("io").StringIO(cli("show", "--root", str(root), "--format", "csv").output))
    assert set(csv["entry"]) == {"a", "b"} and set(csv["n"]) == {2}
    assert "Detectable difference from none per bin" not in md.output  # no none to pair with
    paired = _fill(smoke_run, tmp_path / "paired", {"none": [0.3, 0.4, 0.35], "a": [0.1, 0.2, 0.15]})
    data, text = _ranking(paired, "--by", "length-scale")
    rows = data.set_index(["entry", "scale"])
    # overall: the forged means, a constant lead of 0.2 over three seeds (sign test cannot reach 0.05)
    assert rows.loc[("a", "overall"), "p_vs_none"] == pytest.approx(0.25)
    assert rows.loc[("none", "overall"), "p_vs_none"] is None or np.isnan(rows.loc[("none", "overall"), "p_vs_none"])
    assert "(p 0.25)" in text and "such p outside the overall column, not corrected" in text
    assert "Detectable difference from none per bin (paired t-test, 3 seeds" in text
    nothing = cli("show", "--root", str(root), "--budget", "99%")
    assert nothing.exit_code == 2 and "no records match --budget 99%" in nothing.output
    unknown = cli("show", "--root", str(root), "--metric", "no_such_metric")
    assert unknown.exit_code == 2
    # a classification score asked of segmentation records: each section shows its own task's headline
    other_task = cli("show", "--root", str(root), "--metric", "accuracy")
    assert other_task.exit_code == 0 and "rel. count error" in other_task.output and "accuracy" not in other_task.output


# ---- plots and the rendered README ----------------------------------------------------------------


def test_plots_and_readme_are_generated_and_reproducible(smoke_run, tmp_path):
    root = tmp_path / "lb"
    store = RecordStore(root)
    for method, base in (("alpha", 0.2), ("beta", 0.5)):
        for budget in ("1", "3"):
            for seed in range(2):
                add_forged(store, variant(smoke_run, tmp_path / f"{method}{budget}{seed}", method=method, seed=seed,
                                  budget=budget, value=base / int(budget) + 0.01 * seed))
    assert cli("render", "--root", str(root), "--metric", METRIC).exit_code == 0
    readme = (root / "README.md").read_text()
    assert readme.startswith("# Leaderboard") and f"harness leaderboard render --root {root}" in readme
    assert "### Label efficiency" in readme and "AUC" in readme and "### One run:" in readme
    figures = sorted(p.name for p in (root / "plots").iterdir())
    assert len(figures) == 6 and {Path(f).suffix for f in figures} == {".png", ".svg"}
    for name in figures:
        assert f"plots/{name}" in readme
    first = {p.name: p.read_bytes() for p in (root / "plots").iterdir()}
    assert cli("render", "--root", str(root), "--metric", METRIC).exit_code == 0
    assert (root / "README.md").read_text() == readme
    assert {p.name: p.read_bytes() for p in (root / "plots").iterdir()} == first


def test_sections_that_differ_only_in_numerics_keep_their_own_figures(smoke_run, tmp_path):
    # the two sections of one settings hash (numerics 0 and 2) once wrote the same file names, so
    # the older section showed the newer one's curves
    root = tmp_path / "lb"
    store = RecordStore(root)
    for numerics, value in (("0", 0.2), (NUMERICS_VERSION, 0.6)):
        for seed in range(2):
            add_forged(store, variant(smoke_run, tmp_path / f"n{numerics}s{seed}", seed=seed, numerics=numerics,
                                      value=value + 0.01 * seed))
    assert cli("render", "--root", str(root), "--metric", METRIC).exit_code == 0
    readme = (root / "README.md").read_text()
    sections = readme.split("\n## ")[1:]
    # the section this harness computes today comes first; the older one is marked as history
    assert len(sections) == 2 and f"numerics {NUMERICS_VERSION}" in sections[0].splitlines()[0]
    assert "- status: current" in sections[0] and "- status: history: computed before numerics" in sections[1]
    assert "\n- " + sections[0].splitlines()[0] + ": 2 record(s); current" in readme  # the index at the top
    linked = [set(re.findall(r"\(plots/([^)]+)\)", section)) for section in sections]
    assert linked[0] and linked[1] and not linked[0] & linked[1]
    assert sorted(p.name for p in (root / "plots").iterdir()) == sorted(linked[0] | linked[1])
    # `show` says the same under each section's heading, in markdown and html
    shown = cli("show", "--root", str(root), "--metric", METRIC).output.split("\n## ")
    assert "\nStatus: current: task" in shown[0] and "\nStatus: history: computed before numerics" in shown[1]
    page = cli("show", "--root", str(root), "--metric", METRIC, "--format", "html").output
    assert page.count("<p>Status: current") == 1 and page.count("<p>Status: history") == 1


def test_the_default_task_versions_section_comes_first(smoke_run, tmp_path):
    """Two task versions on one dataset are both current; the one `harness run` computes by default
    leads, and its status line says so, whatever the alphabet says."""
    from harness.task import DEFAULT_TASK, LEGACY_TASK, TASKS

    other = next(v for v in TASKS if v not in (DEFAULT_TASK, LEGACY_TASK))
    settings = json.loads((smoke_run / RECORD_FILE).read_text())["settings"]
    store = RecordStore(tmp_path / "lb")
    for task in sorted((other, DEFAULT_TASK)):
        add_forged(store, variant(smoke_run, tmp_path / task, settings={**settings, "task": task}))
    boards = build_boards(store.records())
    assert [b.key.task for b in boards] == [DEFAULT_TASK, other]
    assert boards[0].key.status.startswith(f"current: task {DEFAULT_TASK} (the default),")
    assert boards[1].key.status.startswith(f"current: task {other} (an earlier version of the default task, "
                                           f"{DEFAULT_TASK}), ")


def test_a_section_of_an_older_folder_reading_is_history():
    """A lab's own board outlives a harness upgrade: records of a folder read as an older folder
    version (folder-7 pretrained at another factor) are not what this harness computes today."""
    from harness.data.folder import FOLDER_VERSION
    from harness.numerics import NUMERICS_VERSION
    from harness.results.boards import BoardKey
    from harness.task import DEFAULT_TASK

    def key(version: str) -> BoardKey:
        return BoardKey(dataset=f"emps-v{version}-3bbf98d534114e8e", manifest="m", profile="quick", schema=1,
                        protocol="finetune", settings="s", task=DEFAULT_TASK, numerics=NUMERICS_VERSION)

    assert key(FOLDER_VERSION).current
    old = key("folder-7")
    assert FOLDER_VERSION != "folder-7" and not old.current
    assert old.status == (f"history: a folder read as folder-7; this harness reads folders as {FOLDER_VERSION} "
                          "(harness.numerics)")
    assert BoardKey(dataset="synthetic-sem-v2-5c6bcfabac4fdb31", manifest="m", profile="quick", schema=1,
                    protocol="finetune", settings="s", task=DEFAULT_TASK, numerics=NUMERICS_VERSION).current


def test_the_default_task_leads_other_datasets_current_sections(smoke_run, tmp_path):
    """A current section of another task on a dataset whose name sorts first (the nanowire
    classification beside synthetic-sem) still comes after the default task's."""
    from harness.task import DEFAULT_TASK, LEGACY_TASK, TASKS

    other = next(v for v in TASKS if v not in (DEFAULT_TASK, LEGACY_TASK))
    data = json.loads((smoke_run / RECORD_FILE).read_text())
    first = {**data["dataset"], "key": "aaa-first-v1-0000000000000000", "name": "aaa-first"}
    store = RecordStore(tmp_path / "lb")
    add_forged(store, variant(smoke_run, tmp_path / "default", settings={**data["settings"], "task": DEFAULT_TASK}))
    add_forged(store, variant(smoke_run, tmp_path / "other", settings={**data["settings"], "task": other},
                              dataset=first))
    boards = build_boards(store.records())
    assert [(b.key.task, b.key.dataset) for b in boards] == [(DEFAULT_TASK, data["dataset"]["key"]),
                                                             (other, first["key"])]


def test_outline_overlay_plot(tmp_path):
    from harness.results import plots

    image = np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (40, 1))
    true = np.zeros((40, 48), np.int32)
    true[5:15, 5:15], true[20:35, 25:40] = 1, 2
    pred = np.zeros_like(true)
    pred[6:15, 5:16] = 7
    paths = plots.overlay(image, true, pred, tmp_path / "overlay", "test")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in paths)


def test_one_run_figures_from_a_rebuilt_model(smoke_run, tiny_pipeline, tmp_path):
    from harness.reproduce import rebuild_prediction
    from harness.results import plots

    result = cli("plot", "--run", str(smoke_run), "--no-overlay", "--out", str(tmp_path / "figs"))
    assert result.exit_code == 0, result.output
    record = read_record(smoke_run / RECORD_FILE)
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [f"{record.run_id}-sizes.png",
                                                                      f"{record.run_id}-sizes.svg"]
    per_image = json.loads((smoke_run / "per_image.json").read_text())
    rebuilt = rebuild_prediction(record, 2, per_image, log=lambda _msg: None)
    assert rebuilt.matches_record is True  # the rebuilt model is the record's model
    assert rebuilt.pred_labels.shape == rebuilt.image.shape[:2]
    assert rebuilt.scores["n_pred"] == len(np.unique(rebuilt.pred_labels)) - 1
    paths = plots.overlay(rebuilt.image, rebuilt.true_labels, rebuilt.pred_labels, tmp_path / "ov", "run")
    assert all(p.is_file() for p in paths)
    with pytest.raises(HarnessError, match="--image 99 is out of range"):
        rebuild_prediction(record, 99, per_image, log=lambda _msg: None)
    # a run folder keeps its test masks: the overlay is drawn from them, nothing re-trained, and the kept
    # mask is the rebuilt model's to the pixel
    said: list[str] = []
    kept = rebuild_prediction(record, 2, per_image, kept=smoke_run / "predictions", log=said.append)
    assert np.array_equal(kept.pred_labels, rebuilt.pred_labels) and kept.matches_record is True
    assert any("the run's kept prediction" in line for line in said)
    result = cli("plot", "--run", str(smoke_run), "--image", "2", "--out", str(tmp_path / "kept"))
    assert result.exit_code == 0 and "re-trains" not in result.output, result.output
    assert (tmp_path / "kept" / f"{record.run_id}-overlay-2.png").is_file()


# ---- reproduce ----------------------------------------------------------------------------------


def test_reproduce_matches_a_smoke_record_to_the_last_digit(smoke_run, tiny_pipeline):
    from harness.reproduce import compare_records, reproduce

    record = read_record(smoke_run / RECORD_FILE)
    per_image = json.loads((smoke_run / "per_image.json").read_text())
    result = reproduce(record, per_image, log=lambda _msg: None)
    assert result.matches, result.summary()
    assert result.compared > 100 and result.summary().startswith("MATCH")
    # a record whose numbers were edited is caught, down to the digit and the place
    edited = copy.deepcopy(record.model_dump(mode="json"))
    edited["metrics"]["groups"]["overall"]["per_image"]["f1"]["mean"] += 1e-12
    _, diffs = compare_records(RunRecord.model_validate(edited), result.new, per_image, per_image)
    assert len(diffs) == 1 and diffs[0].startswith("metrics.groups.overall.per_image.f1.mean")


def test_reproduce_does_not_count_a_held_out_loss_that_an_older_reused_cache_cannot_state(smoke_run):
    """An encoder cache made before 2026-12-06 keeps no module, so a run reusing it states no held-out
    loss: not a difference (the note says --fresh compares it), unless the run pretrained afresh."""
    from harness.reproduce import compare_records, unstated_held_out

    data = read_record(smoke_run / RECORD_FILE).model_dump(mode="json")
    data["pretrain"].update(steps=4, reference_loss=0.6, held_out_loss=0.5, late_loss=0.55, reused_cache=False)
    original = RunRecord.model_validate(data)
    data["pretrain"].update(held_out_loss=None, reused_cache=True)
    older_cache = RunRecord.model_validate(data)
    assert unstated_held_out(older_cache) and not unstated_held_out(original)
    assert compare_records(original, older_cache, None, None)[1] == []
    data["pretrain"]["reused_cache"] = False  # pretrained afresh and still no figure: a difference
    _, diffs = compare_records(original, RunRecord.model_validate(data), None, None)
    assert diffs == ["pretrain.held_out_loss: 0.5 (record) vs None (now)"]


def test_reproduce_refuses_another_device(smoke_run, tmp_path):
    data = json.loads((smoke_run / RECORD_FILE).read_text())
    data["device"] = {"type": "cpu", "name": "a different processor (64 threads)", "precision": "fp32",
                      "channels_last": "False"}
    run = tmp_path / "elsewhere"
    run.mkdir()
    (run / RECORD_FILE).write_text(json.dumps(data))
    result = cli("reproduce", str(run))
    assert result.exit_code == 2 and "device differs" in result.output and "--force" in result.output


def test_reproduce_warns_when_the_cpu_instruction_set_differs(smoke_run):
    from harness.reproduce import provenance_warnings
    from harness.results.provenance import hardware

    record = read_record(smoke_run / RECORD_FILE)
    assert record.hardware["cpu_capability"] == hardware()["cpu_capability"] and record.hardware["cpu_model"]
    assert not any("cpu_" in w for w in provenance_warnings(record))
    data = record.model_dump(mode="json")
    data["hardware"]["cpu_capability"] = "SOME_OTHER_ISA"
    warnings = provenance_warnings(RunRecord.model_validate(data))
    assert any(w.startswith("cpu_capability differs: record SOME_OTHER_ISA") for w in warnings)
    del data["hardware"]["cpu_capability"]  # records made before it was kept: nothing to compare
    assert not any("cpu_capability" in w for w in provenance_warnings(RunRecord.model_validate(data)))
    data["hardware"]["blas_core"] = "openblas SomeOtherCore"  # the kernels of scipy's W1 dot
    warnings = provenance_warnings(RunRecord.model_validate(data))
    assert any(w.startswith("blas_core differs: record openblas SomeOtherCore, here openblas ") for w in warnings)


# ---- controls, reference rows, p vs none, detectable difference --------------------------------


def _with_roles(smoke_run: Path, tmp_path: Path, values: dict[str, list[float]], roles: dict[str, str],
                metric: str = METRIC) -> Path:
    root = tmp_path / "lb"
    store = RecordStore(root)
    for method, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            dest = variant(smoke_run, tmp_path / f"{method}-{seed}", method=method, seed=seed, value=value,
                           metric=metric)
            data = json.loads((dest / RECORD_FILE).read_text())
            data["method"]["role"] = roles.get(method, "method")
            (dest / RECORD_FILE).write_text(json.dumps(data))
            add_forged(store, dest)
    return root


def test_controls_and_reference_rows_are_shown_but_never_ranked(smoke_run, tmp_path):
    root = _with_roles(smoke_run, tmp_path, {"none": [0.30, 0.32, 0.31], "fcmae": [0.29, 0.33, 0.30],
                                             "supervised": [0.10, 0.11, 0.12], "oracle": [0.01, 0.01, 0.01],
                                             "classical": [0.50, 0.50, 0.50]},
                       {"supervised": "control", "oracle": "reference", "classical": "reference"})
    data, text = _ranking(root, "--test", "seeds")
    # the methods first, ranked among themselves; the control and the references after, unranked
    assert list(data["entry"]) == ["fcmae", "none", "supervised", "classical", "oracle"]
    assert data["rank"].tolist()[:2] == [1, 2] and data["rank"].isna().tolist()[2:] == [True] * 3
    assert "supervised (control)" in text and "oracle (reference)" in text and "classical (reference)" in text
    # a reference row runs no network: no backbone, whatever its settings name
    backbones = data.set_index("entry")["backbone"]
    assert backbones[["oracle", "classical"]].isna().all() and backbones[["none", "supervised"]].notna().all()
    row = next(line for line in text.splitlines() if "oracle (reference)" in line)
    assert [cell.strip() for cell in row.split("|")][3] == "-"
    # the control's clear lead over none shows in its p vs none, not as a mark on the table's best
    control = data.set_index("entry").loc["supervised"]
    assert control["p_vs_none"] < 0.05 and not bool(control["significant"])
    assert MARK not in text.split("Value:")[0]
    # a reference row is one run paired with none's seed 0 alone: no p against none
    assert data.set_index("entry").loc[["oracle", "classical"], "p_vs_none"].isna().all()


def test_p_vs_none_and_the_detectable_difference_line(smoke_run, tmp_path):
    none = [0.30, 0.32, 0.31, 0.35]
    shifted = [v - 0.01 + d for v, d in zip(none, (0.004, -0.003, 0.002, -0.003), strict=True)]
    root = _with_roles(smoke_run, tmp_path, {"none": none, "tie": shifted}, {})
    data, text = _ranking(root, "--test", "seeds")
    row = data.set_index("entry").loc["tie"]
    diffs = np.subtract(shifted, none)
    from scipy import stats as sps

    assert row["p_vs_none"] == pytest.approx(sps.ttest_rel(shifted, none).pvalue)
    expected = stats.detectable_difference(float(np.std(diffs, ddof=1)), 4)
    assert f"true difference of {expected:.4f} or more" in text and "with 4 seeds" in text


def test_constant_differences_make_no_difference_detectable_below_six_seeds(smoke_run, tmp_path):
    # accuracy-like steps: every seed 0.025 better than none (equal up to float rounding)
    none = [0.450, 0.475, 0.425, 0.500]
    step = [v + 0.025 for v in none]
    root = _with_roles(smoke_run, tmp_path, {"none": none, "step": step}, {})
    data, text = _ranking(root, "--test", "seeds")
    assert data.set_index("entry").loc["step", "p_vs_none"] == pytest.approx(2 ** (1 - 4))
    assert "Detectable difference: none with 4 seeds" in text


def test_a_constant_comparison_does_not_shrink_the_pooled_spread():
    """A comparison of equal steps (answered by the sign test) is left out of the t-test's pooled sd;
    counted as 0 it made the table claim a finer resolution than its seeds have."""
    varying = [0.0, 0.02, 0.04]
    assert stats.pooled_difference_sd([[-0.025, -0.025, -0.025], varying]) == pytest.approx(np.std(varying, ddof=1))
    assert stats.pooled_difference_sd([[0.1, 0.1], [0.0, 0.0]]) == 0.0
    two = [[0.0, 0.02, 0.04], [0.01, 0.0, 0.05]]
    assert stats.pooled_difference_sd(two) == pytest.approx(np.sqrt(np.mean([np.var(d, ddof=1) for d in two])))


def test_a_confirmation_reads_its_fresh_seeds_alone(smoke_run, tmp_path):
    """--seeds keeps only those training seeds (a declared confirmation's fresh ones), never the seeds its
    hypothesis was read from; reference rows, which train nothing, stay."""
    none = [0.30, 0.32, 0.31, 0.35, 0.33, 0.34]
    lead = [0.20, 0.22, 0.21, 0.36, 0.32, 0.35]  # a clear lead on seeds 0-2, a tie on 3-5
    root = _with_roles(smoke_run, tmp_path, {"none": none, "lead": lead, "oracle": [0.01]}, {"oracle": "reference"})
    from scipy import stats as sps

    everything, _ = _ranking(root, "--test", "seeds")
    assert everything.set_index("entry").loc["lead", "p_vs_none"] == pytest.approx(sps.ttest_rel(lead, none).pvalue)
    fresh, text = _ranking(root, "--test", "seeds", "--seeds", "3-5")
    rows = fresh.set_index("entry")
    assert rows.loc["lead", "p_vs_none"] == pytest.approx(sps.ttest_rel(lead[3:], none[3:]).pvalue) != \
        pytest.approx(sps.ttest_rel(lead, none).pvalue)
    assert rows.loc["lead", "n"] == 3 and rows.loc["lead", "mean"] == pytest.approx(np.mean(lead[3:]))
    assert "oracle (reference)" in text and "over training seeds 3-5 only" in text
    assert _ranking(root, "--test", "seeds", "--seeds", "0,2,1")[0].set_index("entry").loc["lead", "n"] == 3
    csv = cli("show", "--root", str(root), "--seeds", "3-5", "--format", "csv").output
    assert "train_seeds" in csv.splitlines()[0] and ",3-5," in csv  # an export says it is filtered
    refused = CliRunner().invoke(main, ["leaderboard", "show", "--root", str(root), "--seeds", "7-9"])
    assert refused.exit_code == 2 and "no records match --seeds 7-9" in refused.output
    assert "Traceback" not in refused.output and len(refused.output.strip().splitlines()) == 1


def test_detectable_difference_has_the_stated_power():
    from scipy import stats as sps

    rng = np.random.default_rng(0)
    for n in (3, 5):
        delta = stats.detectable_difference(1.0, n)
        x = rng.normal(delta, 1.0, size=(40_000, n))
        t = x.mean(axis=1) / (x.std(axis=1, ddof=1) / np.sqrt(n))
        power = np.mean(np.abs(t) > sps.t.ppf(1 - stats.ALPHA / 2, n - 1))
        assert power == pytest.approx(stats.POWER, abs=0.01)
    assert stats.detectable_difference(0.5, 3) == pytest.approx(0.5 * stats.detectable_difference(1.0, 3))
    assert stats.detectable_difference(1.0, 1) is None
    # zero spread: the sign test of paired_t decides, significant from 6 pairs on
    assert stats.detectable_difference(0.0, 5) is None and stats.detectable_difference(0.0, 6) == 0.0
    assert stats.paired_t([1.0] * 5, [0.0] * 5) > stats.ALPHA > stats.paired_t([1.0] * 6, [0.0] * 6)


def test_equal_seed_differences_fall_back_to_the_exact_sign_test():
    """Accuracy over 40 images moves in steps of 0.025: three seeds each one image behind is not
    certainty (the t statistic is unbounded there), and the sign test says so: p = 2 ** (1 - n)."""
    from itertools import product

    from scipy import stats as sps

    behind = [0.300, 0.450, 0.475]
    assert stats.paired_t([v - 0.025 for v in behind], behind) == pytest.approx(0.25)
    assert stats.paired_t([v + 0.1 for v in range(6)], list(range(6))) == pytest.approx(2 ** -5)
    # the same p as counting sign flips by hand: only the two all-same-sign flips are as extreme
    n = 4
    extreme = sum(1 for signs in product((-1, 1), repeat=n) if abs(sum(signs)) == n)
    assert stats.paired_t([1.0] * n, [0.0] * n) == pytest.approx(extreme / 2 ** n)
    assert stats.paired_t([1.0, 2.0], [1.0, 2.0]) == 1.0
    uneven = ([0.30, 0.45, 0.50], [0.25, 0.45, 0.40])
    assert stats.paired_t(*uneven) == pytest.approx(sps.ttest_rel(*uneven).pvalue)


def test_a_record_with_an_unknown_protocol_or_role_is_refused(tmp_path):
    """Typed record fields: a protocol or role the harness does not know is not a valid record."""
    from harness.results.leaderboard import parse_record

    filed = (Path(__file__).resolve().parents[1] / "leaderboard" / "records").rglob("*.json")
    source = next(p for p in filed if not p.name.endswith(".per_image.json"))
    data = json.loads(source.read_text())
    parse_record(data, source)  # as filed: valid
    for path, value in ((("protocol",), "linear"), (("method", "role"), "competitor")):
        changed = json.loads(source.read_text())
        target = changed
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(HarnessError, match=path[-1]):
            parse_record(changed, source)


# ---- confirmations: declared first, tested once on their own seeds -----------------------------


def _declare(root: Path, name: str = "C9", **changes) -> Path:
    key = build_boards(RecordStore(root).records())[0].key
    declaration = {"name": name, "declared": "2026-12-06T06:46Z", "hypothesis": "a and b beat none",
                   "dataset": key.dataset, "task": key.task, "settings": key.settings, "budget": "1",
                   "metric": METRIC, "methods": ["a", "b"], "seeds": [3, 4, 5]} | changes
    path = root / "confirmations" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(declaration))
    return path


def test_a_pending_confirmations_cells_are_held_out_of_the_tables_until_the_last_lands(smoke_run, tmp_path):
    """Tables pooling a confirmation's seeds as they land would show a p part-way, which invites stopping
    early: its filed cells are held out of show and the rendered page until all are filed."""
    root = _with_roles(smoke_run, tmp_path, {"none": [0.30, 0.32, 0.31], "a": [0.20, 0.21, 0.22],
                                             "b": [0.31, 0.30, 0.33]}, {})
    _declare(root, seeds=[3, 4])
    store = RecordStore(root)
    for method, value in (("none", 0.3), ("a", 0.1), ("b", 0.3)):  # seed 3 of every method, seed 4 not yet
        add_forged(store, variant(smoke_run, tmp_path / f"{method}-3", method=method, seed=3, value=value))
    shown = CliRunner().invoke(main, ["leaderboard", "show", "--root", str(root), "--format", "json"])
    assert shown.exit_code == 0
    assert "3 of confirmation C9's 6 cells are filed and held out of the tables" in shown.stderr
    (table,) = json.loads(shown.stdout)["tables"][:1]
    assert {row["n"] for row in table["data"]} == {3}  # seeds 0-2 only
    assert cli("render", "--root", str(root)).exit_code == 0
    assert "held out of the tables until all are" in (root / "README.md").read_text()
    for method in ("none", "a", "b"):  # the last cells land: every seed is in the tables
        add_forged(store, variant(smoke_run, tmp_path / f"{method}-4", method=method, seed=4, value=0.3))
    shown = CliRunner().invoke(main, ["leaderboard", "show", "--root", str(root), "--format", "json"])
    assert "held out" not in shown.stderr
    assert {row["n"] for row in json.loads(shown.stdout)["tables"][0]["data"]} == {5}


def test_a_confirmation_refuses_two_cells_of_one_training_seed(smoke_run, tmp_path):
    """Confirmations pair by training seed: a second cell of that seed under another split seed would
    silently replace the first, so the test is refused, naming both."""
    root = _with_roles(smoke_run, tmp_path, {"none": [0.30, 0.32, 0.31, 0.35, 0.33, 0.34],
                                             "a": [0.31, 0.33, 0.32, 0.30, 0.27, 0.285],
                                             "b": [0.10, 0.10, 0.10, 0.36, 0.31, 0.345]}, {})
    _declare(root)
    assert cli("confirm", "C9", "--root", str(root)).exit_code == 0
    add_forged(RecordStore(root), variant(smoke_run, tmp_path / "a-split1", method="a", seed=4, value=0.2,
                                          seeds={"split": 1, "data": 0, "train": 4}))
    refused = cli("confirm", "C9", "--root", str(root))
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "a at 1 has two cells of training seed 4 (split/data seeds 0/0 and 1/0)" in refused.output


def test_seed_lists_read_as_ranges():
    from harness.results.boards import seeds_text

    assert seeds_text([11, 0, 2, 6, 7, 8, 9, 10]) == "0,2,6-11" and seeds_text([4, 5]) == "4,5"
    assert seeds_text([1, 2, 3, 5, 6, 7]) == "1-3,5-7" and seeds_text([3]) == "3"


def test_holm_steps_down():
    from harness.results.confirmation import holm_rejects, holm_thresholds

    assert holm_thresholds([0.04, 0.01], 0.05) == pytest.approx([0.05, 0.025])
    assert holm_rejects([0.04, 0.01], 0.05) == [True, True]
    assert holm_rejects([0.04, 0.03], 0.05) == [False, False]  # the smallest fails its alpha / 2: all are kept
    assert holm_rejects([0.001, 0.2, 0.04], 0.05) == [True, False, False]  # 0.04 > 0.05 / 2
    assert holm_rejects([0.025, 0.05], 0.05) == [True, True]  # a p equal to its level is rejected (Holm 1979)


def test_holm_agrees_with_adjusted_p_values_computed_independently():
    """Holm's adjusted p-values (the running maximum of (m - k) p_(k), capped at 1) reject exactly
    where the step-down does: an independent route to the same decisions, ties and boundaries included."""
    from harness.results.confirmation import holm_rejects

    rng = np.random.default_rng(0)
    for trial in range(500):
        m = int(rng.integers(1, 6))
        p = list(rng.choice([0.001, 0.01, 0.0125, 0.0167, 0.025, 0.03, 0.05, 0.2], size=m)) if trial % 2 else \
            list(rng.uniform(0, 0.08, size=m))
        order = np.argsort(p, kind="stable")
        adjusted, running = np.empty(m), 0.0
        for k, i in enumerate(order):
            running = max(running, min(1.0, (m - k) * p[i]))
            adjusted[i] = running
        expected = [bool(a <= 0.05 + 1e-12) for a in adjusted]
        assert holm_rejects(p, 0.05) == expected, p


def test_a_confirmation_tests_its_declared_seeds_once_every_cell_is_filed(smoke_run, tmp_path):
    from scipy import stats as sps

    none = [0.30, 0.32, 0.31, 0.35, 0.33, 0.34]
    a = [0.31, 0.33, 0.32, 0.30, 0.27, 0.285]  # behind on seeds 0-2, clearly ahead on 3-5
    b = [0.10, 0.10, 0.10, 0.36, 0.31, 0.345]  # far ahead on seeds 0-2 (the hypothesis), a tie on 3-5
    root = _with_roles(smoke_run, tmp_path, {"none": none, "a": a, "b": b, "oracle": [0.01]},
                       {"oracle": "reference"})
    _declare(root)
    result = cli("confirm", "C9", "--root", str(root), "--format", "json")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.output)
    assert outcome["complete"] and outcome["missing"] == []
    rows = {c["method"]: c for c in outcome["comparisons"]}
    p_a, p_b = sps.ttest_rel(a[3:], none[3:]).pvalue, sps.ttest_rel(b[3:], none[3:]).pvalue
    assert rows["a"]["p"] == pytest.approx(p_a) and rows["b"]["p"] == pytest.approx(p_b)
    assert rows["a"]["threshold"] == pytest.approx(0.025) and rows["b"]["threshold"] == pytest.approx(0.05)
    assert rows["a"]["verdict"] == "better" and rows["b"]["verdict"] == "tie"
    assert rows["b"]["mean"] == pytest.approx(np.mean(b[3:]))  # seeds 0-2 are not pooled in
    assert rows["a"]["difference"] == pytest.approx(np.mean(np.subtract(a[3:], none[3:])))
    text = cli("confirm", "C9", "--root", str(root)).output
    assert "a: confirmed better than none" in text and "b: a tie with none" in text
    assert cli("render", "--root", str(root)).exit_code == 0  # the published page states it too
    assert "## Confirmations" in (root / "README.md").read_text() and text in (root / "README.md").read_text()
    # a declared seed not yet run: the missing cells are listed, and no p-value is given
    _declare(root, name="C10", seeds=[3, 4, 5, 6])
    pending = json.loads(cli("confirm", "C10", "--root", str(root), "--format", "json").output)
    assert not pending["complete"] and pending["comparisons"] == []
    assert pending["missing"] == [["none", 6], ["a", 6], ["b", 6]]
    text = cli("confirm", "C10", "--root", str(root)).output
    assert "9 of 12 declared cells filed; missing: none seed 6, a seed 6, b seed 6" in text and " p " not in text
    assert "Warning" not in text
    assert cli("render", "--root", str(root)).exit_code == 0
    page = (root / "README.md").read_text()
    assert "9 of 12 declared cells filed" in page
    # the section itself points from its pooled tables to the verdicts that rest on their own seeds
    _, section = page.split(f"## {build_boards(RecordStore(root).records())[0].key.title}", 1)
    pointer = next(line for line in section.splitlines() if line.startswith("Confirmations in this section"))
    assert (f"C10 at 1, seeds 3-6: 9 of 12 cells filed, no test yet; C9 at 1, seeds 3-5: a better (p {p_a:.3g}), "
            f"b tie (p {p_b:.3g})." in pointer)
    # a declaration of another section (other settings) is not listed there
    _declare(root, name="C11", settings="00000000")
    assert cli("render", "--root", str(root)).exit_code == 0
    assert "C11" not in (root / "README.md").read_text().split("Confirmations in this section", 1)[1].splitlines()[0]


def test_a_confirmation_judges_in_the_metrics_own_direction_and_keeps_entries_apart(smoke_run, tmp_path):
    from scipy import stats as sps

    # higher is better (F1): a method clearly lower is confirmed worse
    none = [0.80, 0.82, 0.81, 0.85]
    root = _with_roles(smoke_run, tmp_path / "f1", {"none": none, "a": [0.70, 0.73, 0.70, 0.76]}, {}, metric="f1")
    _declare(root, methods=["a"], seeds=[0, 1, 2, 3], metric="f1")
    row = json.loads(cli("confirm", "C9", "--root", str(root), "--format", "json").output)["comparisons"][0]
    assert row["verdict"] == "worse" and row["difference"] < 0
    # closer to 0 is better (signed count error): tested on the distance from 0, as the tables do
    signed_none, signed_a = [0.30, -0.28, 0.33, -0.35], [0.02, -0.03, 0.01, -0.02]
    root = _with_roles(smoke_run, tmp_path / "signed", {"none": signed_none, "a": signed_a}, {},
                       metric="count_signed_rel_error")
    _declare(root, methods=["a"], seeds=[0, 1, 2, 3], metric="count_signed_rel_error")
    row = json.loads(cli("confirm", "C9", "--root", str(root), "--format", "json").output)["comparisons"][0]
    assert row["p"] == pytest.approx(sps.ttest_rel(np.abs(signed_a), np.abs(signed_none)).pvalue)
    assert row["verdict"] == "better"
    # one method on two backbones in one section: its seeds would mix them, so it is refused
    root = _with_roles(smoke_run, tmp_path / "two", {"none": [0.3, 0.31], "a": [0.2, 0.21]}, {})
    other = variant(smoke_run, tmp_path / "a-other", method="a", seed=0, value=0.25)
    data = json.loads((other / RECORD_FILE).read_text())
    data["backbone"], data["run_id"] = "resnet18", "a-other-backbone"
    (other / RECORD_FILE).write_text(json.dumps(data))
    add_forged(RecordStore(root), other)
    _declare(root, methods=["a"], seeds=[0, 1])
    refused = CliRunner().invoke(main, ["leaderboard", "confirm", "C9", "--root", str(root)])
    assert refused.exit_code == 2 and "a has 2 entries in the section" in refused.output, refused.output
    backbone = build_boards(RecordStore(root).records())[0].entries[0].backbone
    _declare(root, methods=["a"], seeds=[0, 1], backbone=backbone)
    assert json.loads(cli("confirm", "C9", "--root", str(root), "--format", "json").output)["complete"]
    # a declaration dated after its cells were made says that it does not hold for them
    _declare(root, methods=["a"], seeds=[0, 1], backbone=backbone, declared="2099-01-01T00:00Z")
    assert "Warning: 4 declared cell(s) were made before the declaration" in cli("confirm", "C9", "--root",
                                                                                   str(root)).output


def test_a_confirmation_says_which_machines_its_cells_ran_on(smoke_run, tmp_path):
    from harness.results.provenance import machine_kind

    root = _with_roles(smoke_run, tmp_path, {"none": [0.30, 0.32, 0.31], "a": [0.20, 0.21, 0.22]}, {})
    _declare(root, methods=["a"], seeds=[0, 1, 2])
    assert "Machines:" not in cli("confirm", "C9", "--root", str(root)).output  # one kind: nothing to say
    store = RecordStore(root)
    here = machine_kind(store.records()[0].record.device, store.records()[0].record.hardware)
    for seed, value in enumerate([0.25, 0.26, 0.27]):  # b's seed 1 ran on another CPU
        dest = variant(smoke_run, tmp_path / f"b-{seed}", method="b", seed=seed, value=value)
        if seed == 1:
            data = json.loads((dest / RECORD_FILE).read_text())
            data["hardware"] |= {"cpu_model": "Other CPU", "cpu_capability": "AVX2", "cpu_simd": "X86_V3",
                                 "blas_core": "Zen"}
            (dest / RECORD_FILE).write_text(json.dumps(data))
        add_forged(store, dest)
    _declare(root, name="C10", methods=["a", "b"], seeds=[0, 1, 2])
    outcome = json.loads(cli("confirm", "C10", "--root", str(root), "--format", "json").output)
    assert outcome["machines"] == {here: 8, "Other CPU, AVX2, X86_V3, Zen": 1} and outcome["mixed_seeds"] == [1]
    text = cli("confirm", "C10", "--root", str(root)).output
    assert (f"Machines: the filed cells ran on 2 kinds, which round differently (a cell is a draw of its seed, not "
            f"reproducible on the other kind): {here} (8 cells); Other CPU, AVX2, X86_V3, Zen (1 cell); the cells "
            "of seed 1 span kinds, so those pairs cross machines.") in text
    assert "b: " in text and "Holm level" in text  # the test itself is run as declared


def test_a_release_freezes_the_declarations_with_the_records(smoke_run, tmp_path):
    root = _with_roles(smoke_run, tmp_path, {"none": [0.30, 0.31], "a": [0.20, 0.22], "b": [0.3, 0.3]}, {})
    path = _declare(root, seeds=[0, 1])
    assert cli("release", "v1", "--root", str(root)).exit_code == 0
    listed = [e["path"] for e in json.loads((root / "releases" / "v1.json").read_text())["files"]]
    assert "confirmations/C9.json" in listed
    assert len(RecordStore(root).release_records("v1")) == 6  # the declaration is checked, not read as a record
    _declare(root, name="C10", seeds=[0, 1])  # declared after v1: not part of it
    assert RecordStore(root).confirmations("v1") == ["C9"] and RecordStore(root).confirmations() == ["C10", "C9"]
    assert cli("render", "--root", str(root), "--release", "v1").exit_code == 0
    page = (root / "README.md").read_text()
    assert "### C9" in page and "### C10" not in page
    path.write_text(path.read_text().replace('"name": "C9"', '"name": "C9", "alpha": 0.1'))  # a later edit
    with pytest.raises(HarnessError, match="confirmations/C9.json changed since the release"):
        RecordStore(root).release_records("v1")


def test_declare_writes_a_confirmation_only_for_seeds_not_yet_run(smoke_run, tmp_path):
    from harness.results.confirmation import read_confirmation

    root = _with_roles(smoke_run, tmp_path, {"none": [0.30, 0.31], "a": [0.20, 0.22]}, {})
    key = build_boards(RecordStore(root).records())[0].key
    base = ["declare", "C5", "--root", str(root), "--hypothesis", "a beats none", "--dataset", "synthetic-sem",
            "--budget", "1", "--methods", "a", "--task", key.task]
    taken = CliRunner().invoke(main, ["leaderboard", *base, "--seeds", "1-3"])
    assert taken.exit_code == 2 and "already filed at budget 1: a seed 1, none seed 1;" in taken.output
    assert not (root / "confirmations").exists()
    made = cli(*base, "--seeds", "2-4")
    assert made.exit_code == 0 and "declared C5 at " in made.output and ": 6 cells ->" in made.output
    confirmation = read_confirmation(root, "C5")  # the section's key and settings, read from the records
    assert (confirmation.dataset, confirmation.settings, confirmation.seeds) == (key.dataset, key.settings, [2, 3, 4])
    assert "Incomplete: 0 of 6 declared cells filed" in cli("confirm", "C5", "--root", str(root)).output
    again = CliRunner().invoke(main, ["leaderboard", *base, "--seeds", "5-6"])
    assert again.exit_code == 2 and "already declared; declarations are not replaced" in again.output
    assert read_confirmation(root, "C5").seeds == [2, 3, 4]
    unknown = CliRunner().invoke(main, ["leaderboard", "declare", "C6", *base[2:-2], "--task", "no-such", "--seeds",
                                        "5-6"])
    assert unknown.exit_code == 2 and "0 sections of task no-such" in unknown.output
    # a declaration no run could fulfil would hold its name for good: refused before it is written
    for option, value, says in (("--methods", "nosuchmethod", "no method 'nosuchmethod' is installed"),
                                ("--budget", "lots", "label budget 'lots' is not understood"),
                                ("--hypothesis", " ", "the hypothesis is empty")):
        args = [*base[:2], *[value if prev == option else arg for prev, arg in zip(["", *base[2:]], base[2:])]]
        refused = CliRunner().invoke(main, ["leaderboard", "declare", "C7", *args[2:], "--seeds", "7-8"])
        assert refused.exit_code == 2 and says in refused.output and "Traceback" not in refused.output, refused.output
        assert not (root / "confirmations" / "C7.json").exists()


def test_a_bad_confirmation_is_refused_in_one_line(smoke_run, tmp_path):
    root = _with_roles(smoke_run, tmp_path, {"none": [0.3, 0.31]}, {})
    path = _declare(root, seeds=[0])  # one seed pairs nothing
    for problem, expected in (({"seeds": [0]}, "seeds"), ({"metric": "speed"}, "unknown metric 'speed'"),
                              ({"alpha": 2}, "alpha"), ({"extra": 1}, "extra"),
                              ({"seeds": [3, 3, 4]}, "must be distinct"), ({"methods": ["a", "none"]}, "baseline"),
                              ({"declared": "yesterday"}, "declared"), ({"declared": "2026-12-06T06:46"}, "time zone")):
        _declare(root, **problem)
        result = CliRunner().invoke(main, ["leaderboard", "confirm", "C9", "--root", str(root)])
        assert result.exit_code == 2 and expected in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    path.write_text("{")
    assert "not JSON" in CliRunner().invoke(main, ["leaderboard", "confirm", "C9", "--root", str(root)]).output
    missing = CliRunner().invoke(main, ["leaderboard", "confirm", "C3", "--root", str(root)])
    assert missing.exit_code == 2 and "no such confirmation; declared: C9" in missing.output
    for bad in ("../C9", "C 9"):
        refused = CliRunner().invoke(main, ["leaderboard", "confirm", bad, "--root", str(root)])
        assert refused.exit_code == 2 and "use letters, digits" in refused.output


def test_sweep_runs_exactly_a_confirmations_cells_in_its_own_section(tmp_path, monkeypatch):
    import harness.sweep
    from harness.results.boards import settings_hash
    from harness.training.settings import settings_for

    smoke = settings_hash(settings_for("smoke", task="distmap-v3").stated())
    path = tmp_path / "lb" / "confirmations" / "C4.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"name": "C4", "declared": "2026-12-06T06:46Z", "hypothesis": "h",
                                "dataset": "synthetic-sem", "task": "distmap-v3", "settings": smoke, "budget": "2",
                                "methods": ["denoise"], "seeds": [6, 7]}))
    asked = []
    monkeypatch.setattr(harness.sweep, "run_cells", lambda requests, *a, **k: asked.extend(requests) or [])
    ran = CliRunner().invoke(main, ["sweep", "--confirmation", str(path), "--profile", "smoke", "--quiet"])
    assert ran.exit_code == 0, ran.output
    assert sorted((r.method, r.budget, r.seed, r.task_version) for r in asked) == [
        (m, "2", s, "distmap-v3") for m in ("denoise", "none") for s in (6, 7)]
    # another section (the quick profile's settings), or cells named twice: refused before anything runs
    for extra, reason in ((["--profile", "quick"], "are not confirmation C4's section's"),
                          (["--profile", "smoke", "--seeds", "1"], "names the cells; drop --seeds"),
                          (["--profile", "smoke", "--task-version", "distmap-v2"], "is of task distmap-v3")):
        refused = CliRunner().invoke(main, ["sweep", "--confirmation", str(path), *extra])
        assert refused.exit_code == 2 and reason in refused.output, refused.output


def test_sweep_of_a_confirmation_skips_the_cells_already_filed(smoke_run, tmp_path, monkeypatch):
    import harness.sweep
    from harness.training.settings import settings_for

    task = json.loads((smoke_run / RECORD_FILE).read_text())["settings"]["task"]
    smoke = settings_for("smoke", task=task).stated()  # what `sweep --profile smoke` states
    store = RecordStore(tmp_path / "lb")

    def file(method: str, seed: int) -> None:
        add_forged(store, variant(smoke_run, tmp_path / f"{method}-{seed}", method=method, seed=seed, settings=smoke))

    # a fresh machine resuming a confirmation: seeds 0 and 1 are filed, seed 2 of each method is not
    for method in ("none", "denoise"):
        for seed in (0, 1):
            file(method, seed)
    path = _declare(store.root, methods=["denoise"], seeds=[0, 1, 2])
    asked = []
    monkeypatch.setattr(harness.sweep, "run_cells", lambda requests, *a, **k: asked.extend(requests) or [])
    sweep = ["sweep", "--confirmation", str(path), "--profile", "smoke", "--quiet"]
    ran = CliRunner().invoke(main, sweep)
    assert ran.exit_code == 0, ran.output
    assert sorted((r.method, r.seed) for r in asked) == [("denoise", 2), ("none", 2)]
    assert f"4 of the confirmation's cells are already filed in {store.root}: running the other 2" in ran.output
    # all filed: nothing runs, and the sweep says what to do instead
    file("none", 2)
    file("denoise", 2)
    asked.clear()
    done = CliRunner().invoke(main, sweep)
    assert done.exit_code == 0 and not asked, done.output
    assert f"nothing to run: harness leaderboard confirm C9 --root {store.root}" in done.output
