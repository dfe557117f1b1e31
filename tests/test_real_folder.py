"""The real-data road: vendored subsets of EMPS (published SEM/TEM figure crops with instance
masks, MIT licence; see tests/data/emps-mini/README.md and tests/data/emps-real/README.md) go
through check, run, the working resolution, leakage, data bars and scale bars as a lab's folder
would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from harness.cli import main
from harness.data.registry import open_dataset
from harness.task.scale import median_diameter_px

EMPS = Path(__file__).parent / "data" / "emps-mini"


def test_the_vendored_subset_is_what_its_readme_says():
    assert (EMPS / "LICENSE").read_text().startswith("MIT License")
    ds = open_dataset(str(EMPS), profile="smoke")
    index = ds.index()
    assert len(index) == 12 and index["labeled"].all()
    assert (index["split"] == "test").sum() == 4
    for sample_id in index["id"]:
        sample = ds.load(sample_id)
        assert sample.image.shape[:2] == sample.mask.shape == (256, 256)
        assert 5 <= sample.mask.max() <= 60
        if sample_id == "d83980d44e":  # its burnt-in "40 nm" bar, cut by the window: read, roughly
            # (the dark strip under the bar is 75 px; the white bar with its ticks about 82 px by eye)
            assert sample.pixel_size_source == "scale bar" and 40 / 85 < sample.pixel_size_nm < 40 / 72
        else:
            assert sample.pixel_size_nm is None


def test_a_run_on_real_figure_crops_writes_an_honest_record(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--method", "none", "--budget", "100%", "--profile", "smoke",
                                       "--dataset", str(EMPS), "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "record.json").read_text())
    assert record["dataset"]["pool_sizes"]["test"] >= 4 and record["dataset"]["pool_sizes"]["unlabeled"] == 0
    post = record["postprocess"]
    # the working resolution comes from the budget's own masks, and is stated
    train_ids = [i for i in open_dataset(str(EMPS), profile="smoke").index()["id"]]
    assert post["budget_median_diameter_px"] > 0 and 0 < post["working_scale"] <= 1
    assert post["budget_median_diameter_px"] <= max(
        median_diameter_px([open_dataset(str(EMPS), profile="smoke").load(i).mask]) or 0 for i in train_ids)
    assert record["metrics"]["groups"]["overall"]["n_images"] == record["dataset"]["pool_sizes"]["test"]
    per_image = json.loads((out / "per_image.json").read_text())
    assert all(np.isfinite(row["count_rel_error"]) for row in per_image)
    assert "size units" in result.output and "px" in result.output  # no pixel size: sizes stay in px


def test_a_budget_of_large_particles_is_resampled_and_scored_in_original_pixels(resampled_emps_run):
    from harness.results.record import read_record

    record = read_record(resampled_emps_run / "record.json")
    post = record.postprocess
    assert post["working_scale"] == round(16.0 / post["budget_median_diameter_px"], 4) < 1
    # each image's second look aims at the run's target; the model card carries it to harness predict
    assert post["second_look_px"] == 16.0
    assert json.loads((resampled_emps_run / "model.json").read_text())["second_look_px"] == 16.0
    # the test split is scored against the untouched masks, in manifest order: the original counts
    from harness.data.splits import make_manifest

    ds = open_dataset(str(EMPS), profile="smoke")
    test_ids = make_manifest(ds, 0).pools["test"]
    per_image = json.loads((resampled_emps_run / "per_image.json").read_text())
    assert [row["n_true"] for row in per_image] == [len(np.unique(ds.load(i).mask)) - 1 for i in test_ids]


def test_an_all_labelled_folder_pretrains_on_its_training_pool(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--method", "denoise", "--budget", "50%", "--profile", "smoke",
                                       "--dataset", str(EMPS), "--quiet", "--allow-leakage", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "pretrains on the" in result.output and "labelled training pool" in result.output
    record = json.loads((out / "record.json").read_text())
    assert record["pretrain"]["pool"] == "train" and record["pretrain"]["steps"] > 0


# ---- emps-real: 27 whole EMPS images (tests/data/emps-real/README.md) ------------------------------

EMPS_REAL = Path(__file__).parent / "data" / "emps-real"
INSTRUMENT_BARS = {"37ce835fb2": "Zeiss", "21308b3614": "JEOL", "96c772f28b": "Hitachi"}


def _by_hand() -> dict[str, float]:
    import csv

    with open(EMPS_REAL / "scale_bars_by_hand.csv", encoding="utf-8") as handle:
        return {Path(row["image"]).stem: float(row["nm_per_px"]) for row in csv.DictReader(handle)}


def test_emps_real_scale_bars_read_within_5_percent_of_the_hand_measurements():
    from harness.data.folder import FolderDataset

    dataset = FolderDataset(EMPS_REAL)
    hand = _by_hand()
    assert len(hand) == 20
    index = dataset.index().set_index("id")
    read = {i: index.loc[i, "pixel_size_nm"] for i in hand}
    off = {i: read[i] / hand[i] - 1 for i in hand if read[i] == read[i]}  # NaN: nothing read
    assert len(off) == 20, f"no pixel size read for {sorted(set(hand) - set(off))}"
    assert max(abs(v) for v in off.values()) <= 0.05, off
    assert all(dataset.load(i).pixel_size_source == "scale bar" for i in list(hand)[:3])


def test_emps_real_printed_marks_cover_every_scale_bar_and_spare_the_true_particles(tmp_path, monkeypatch):
    """The print rule (harness.data.printed) applied to the ground truth itself: every bar measured
    by hand is covered, and almost every true particle is kept (a few lie under a label's box).
    Before the type-size and frame checks, one image was all print and another lost 6 of 24."""
    import csv

    import numpy as np

    from harness.data import printed
    from harness.data.folder import FolderDataset

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(printed, "_seen", {})
    dataset = FolderDataset(EMPS_REAL)
    with open(EMPS_REAL / "scale_bars_by_hand.csv", encoding="utf-8") as handle:
        bars = {Path(row["image"]).stem: row for row in csv.DictReader(handle)}
    total = lost = 0
    for sample_id in dataset.index()["id"]:
        sample = dataset.load(sample_id)
        marks = printed.printed_mask(sample)
        assert marks is not None and marks.mean() < 0.1, sample_id
        if sample_id in bars:
            bar = bars[sample_id]
            assert marks[int(bar["row"]), int(bar["first_col"]) : int(bar["last_col"]) + 1].all(), sample_id
        truth = sample.truth
        kept = printed.drop_printed(truth, sample)
        n, n_kept = np.unique(truth[truth > 0]).size, np.unique(kept[kept > 0]).size
        assert n - n_kept <= max(2, n // 10), (sample_id, n, n_kept)
        total, lost = total + n, lost + n - n_kept
    assert total == 801 and lost <= 6, (lost, total)  # 4 today; 13 before the checks


def test_emps_real_data_bars_only_on_the_instrument_images():
    from harness.data.folder import FolderDataset

    dataset = FolderDataset(EMPS_REAL)
    rows = {i: dataset.load(i).databar_rows for i in dataset.index()["id"]}
    assert all(rows[i] > 20 for i in INSTRUMENT_BARS), rows
    assert {i: r for i, r in rows.items() if r and i not in INSTRUMENT_BARS} == {}  # no figure crop cut


def test_emps_real_hash_similar_panels_are_not_leaks():
    """Two pairs of different micrographs 6 bits apart by hash: put on opposite sides of the split,
    the pixels overrule the hash (near-blank panels sharing a scale bar need the full-resolution grid)."""
    from harness.data.folder import FolderDataset
    from harness.data.leakage import find_leaks, hamming, perceptual_hash
    from harness.data.splits import make_manifest

    dataset = FolderDataset(EMPS_REAL)
    pairs = [("50a4901372", "74ef917e76"), ("60c63e2383", "c61a50a061")]
    for a, b in pairs:
        assert hamming(perceptual_hash(dataset.load(a).image), perceptual_hash(dataset.load(b).image)) <= 10
    manifest = make_manifest(dataset)
    everything = list(dataset.index()["id"])
    crossed = manifest.model_copy(update={"pools": {
        "unlabeled": [a for a, _ in pairs], "train": [], "val": [],
        "test": [i for i in everything if i not in {a for a, _ in pairs}]}})
    assert find_leaks(dataset, crossed) == []


def test_emps_real_is_usable_and_pretrains_on_its_training_pool():
    from harness.data.check import check_folder
    from harness.pipeline import pretraining_pool

    report = check_folder(EMPS_REAL)
    assert report.usable, [p.line() for p in report.errors]
    assert not report.leaks and report.pools["unlabeled"] == 0
    sources = {p.source: p.images for p in report.pixel_sizes}
    assert sources.get("scale bar", 0) >= 20
    from harness.data.folder import FolderDataset
    from harness.data.splits import make_manifest

    assert pretraining_pool(make_manifest(FolderDataset(EMPS_REAL))) == "train"


def test_a_check_shared_out_to_processes_reports_exactly_what_one_process_does(tmp_path, monkeypatch):
    """The check's decoding, scale-bar reading and leak search go to worker processes on a big
    folder; forced here onto 27 real images (plus a planted leak: a test image re-saved into the
    training pool), the report must not change by a byte, leak included."""
    import shutil

    import imageio.v3 as iio

    import harness.data.check as check
    import harness.data.folder.scan as scan
    import harness.data.leakage as leakage
    import harness.data.parallel as parallel

    root = tmp_path / "emps"
    shutil.copytree(EMPS_REAL, root)
    meta = (root / "metadata.csv").read_text().splitlines()
    header, rows = meta[0], meta[1:]
    original = next(r.split(",")[0] for r in rows if r.endswith(",test"))
    image = iio.imread(root / "images" / original)
    iio.imwrite(root / "images" / "copy.png", image)
    shutil.copy(root / "masks" / original, root / "masks" / "copy.png")
    (root / "metadata.csv").write_text("\n".join([header, *rows, "copy.png,,train"]) + "\n")

    def report(cache: str) -> str:
        monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / cache))  # cold: every scale bar is read
        found = check.check_folder(root)
        return found.model_dump_json().replace(str(tmp_path / cache), "CACHE")

    alone = report("alone")
    pools: list[int] = []

    class CountedPool(parallel.ProcessPoolExecutor):
        def __init__(self, max_workers: int, **kwargs):
            pools.append(max_workers)
            super().__init__(max_workers=max_workers, **kwargs)

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", CountedPool)
    monkeypatch.setattr(parallel, "cpus", lambda: 2)
    for module, name in ((check, "FILES_PER_WORKER"), (leakage, "ROWS_PER_WORKER"), (scan, "READINGS_PER_WORKER")):
        monkeypatch.setattr(module, name, 1)
    shared = report("shared")
    # scale-bar reading, decoding and the two leak searches (pretraining against evaluation images,
    # validation against test) each went to 2 processes
    assert pools == [2, 2, 2, 2]
    assert shared == alone
    leaks = json.loads(alone)["leaks"]
    assert [(leak["pretrain_id"], leak["eval_id"]) for leak in leaks] == [("copy", original.removesuffix(".png"))]


def test_a_resampling_run_pretrains_at_its_budgets_working_resolution(tmp_path, monkeypatch):
    """Fine-tuning shows a folder of large particles shrunk to the budget's working resolution;
    pretraining read the same pool at native pixels (on EMPS, features learnt three times larger than
    fine-tuning shows). It now reads it at the budget's factor (never from masks outside the budget),
    says so, states it in the record, and reuses an encoder only at the same factor."""
    import harness.context as context
    import harness.pipeline as pipeline
    from harness.data.splits import Budget
    from harness.methods.registry import get_method

    original = context.settings_for
    monkeypatch.setattr(context, "settings_for", lambda profile, **o: original(profile, **o).model_copy(
        update={"scale_max_diameter_px": 20.0, "scale_target_diameter_px": 16.0}))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    seen = []
    real_pretrain = pipeline.pretrain
    monkeypatch.setattr(pipeline, "pretrain", lambda method, store, *a, **k: (
        seen.append((store.scale, sorted(store.ids))), real_pretrain(method, store, *a, **k))[1])

    def request(budget: str, k: int):
        return pipeline.RunRequest(method="denoise", budget=budget, profile="smoke", dataset=str(EMPS),
                                   progress=False, allow_leakage=True, out=tmp_path / f"run-{k}")

    ctx = pipeline.Context(request("50%", 0))
    pool = sorted(ctx.manifest.pools["train"])
    # 2 images of emps-mini's 6 hold larger particles than the whole pool's median
    small, whole = (ctx.pretraining_scale(ctx.budget_ids(Budget.parse(b))) for b in ("2", "100%"))
    assert small == ctx.resolution(ctx.budget_ids(Budget.parse("2"))).scale < 1
    assert small != whole  # so the test tells the budget's factor from the whole pool's
    for k, (budget, factor) in enumerate([("2", small), ("100%", whole), ("2", small)]):
        said: list[str] = []
        pipeline.run_one(request(budget, k), log=said.append)
        assert any(f"resampled by {factor:g}" in line and "pretrains" in line for line in said), said
    assert seen == [(small, pool), (whole, pool)]  # each budget at its own factor; the repeat reused the first
    stated = [json.loads((tmp_path / f"run-{k}" / "record.json").read_text())["pretrain"] for k in range(3)]
    assert [(p["scale"], p["reused_cache"]) for p in stated] == [(small, False), (whole, False), (small, True)]
    entry = get_method("denoise")
    method = entry.cls({})
    assert pipeline.pretrain_cache_key(entry, method, ctx, 0, small) != pipeline.pretrain_cache_key(entry, method,
                                                                                                     ctx, 0)


def test_a_labelled_folder_with_an_official_split_is_read_for_predict_without_its_masks():
    """emps-mini's metadata.csv names its test images; predict reads no mask, so that column must not
    make it demand one (leaving masks/ unread first refused every such row)."""
    from harness.data.folder import FolderDataset

    assert len(FolderDataset.of_micrographs(EMPS).records()) == 12
    checked = CliRunner().invoke(main, ["data", "check", "--for", "predict", str(EMPS)])
    assert checked.exit_code == 0 and "needs a mask" not in checked.output, checked.output
