"""`harness predict` (issue: see and use the results, item 2): a run's model applied to an
exported embedded folder and to a plain folder; particle diameters in nm that agree with
`harness evaluate` on the same masks and with scikit-image's own measurement; bad input refused
by name."""

from __future__ import annotations

import csv
import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from skimage.measure import regionprops

from harness.cli import main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    runner = CliRunner()
    run = root / "run"
    assert runner.invoke(main, ["run", "--method", "none", "--budget", "4", "--profile", "smoke", "--quiet",
                                "--out", str(run)]).exit_code == 0
    images = root / "test-images"
    assert runner.invoke(main, ["data", "export", "synthetic-sem", "--split", "test", "--profile", "smoke",
                                "--out", str(images)]).exit_code == 0
    out = root / "predicted"
    result = runner.invoke(main, ["predict", "--run", str(run), "--images", str(images), "--out", str(out),
                                  "--quiet"])
    assert result.exit_code == 0, result.output
    return run, images, out


def _first_image_alone(images, tmp_path):
    """A plain folder holding the exported folder's first image file, without its metadata.csv."""
    plain = tmp_path / "plain"
    plain.mkdir()
    first = sorted((images / "images").iterdir())[0]
    (plain / first.name).write_bytes(first.read_bytes())
    return plain


def _rows(out):
    with (out / "particles.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_it_writes_masks_overlays_particles_and_histograms(exported):
    _, images, out = exported
    stems = sorted(p.stem for p in (images / "images").iterdir())
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == stems
    assert sorted(p.stem for p in (out / "overlays").glob("*.png")) == stems
    assert sorted(p.stem for p in (out / "histograms").glob("*.png")) == stems
    assert (out / "histogram.png").is_file()
    rows = _rows(out)
    assert rows and all(r["diameter_nm"] for r in rows)  # every exported image states its pixel size
    assert {r["pixel_size_source"] for r in rows} == {"metadata.csv"}


def test_images_csv_has_every_image_and_sizes_only_particles_clear_of_the_border(exported):
    _, images, out = exported
    rows = _rows(out)
    with (out / "images.csv").open() as handle:
        per_image = {r["image"]: r for r in csv.DictReader(handle)}
    assert sorted(per_image) == sorted(p.stem for p in (images / "images").iterdir())  # empty images too
    for stem, row in per_image.items():
        mine = [r for r in rows if r["image"] == stem]
        clear = [float(r["diameter_nm"]) for r in mine if r["touches_border"] == "False"]
        assert int(row["particles"]) == len(mine) and int(row["clear_of_border"]) == len(clear)
        assert row["size_unit"] == "nm" and row["pixel_size_source"] == "metadata.csv"
        if clear:
            assert float(row["diameter_mean"]) == pytest.approx(np.mean(clear), rel=1e-12)
            assert float(row["diameter_median"]) == pytest.approx(np.median(clear), rel=1e-12)
        pixel = float(row["pixel_size_nm"])
        for r in mine:
            assert float(r["area_nm2"]) == pytest.approx(int(r["area_px"]) * pixel**2, rel=1e-12)
    assert any(r["touches_border"] == "True" for r in rows)  # so the sizing rule was exercised


def test_the_card_states_the_particle_size_learnt_and_images_csv_the_size_found(exported):
    run, _, out = exported
    card = json.loads((run / "model.json").read_text())
    record = json.loads((run / "record.json").read_text())
    assert card["budget_median_diameter_px"] == record["postprocess"]["budget_median_diameter_px"] > 0
    with (out / "images.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["diameter_median"]:  # the same particles, in px instead of nm
                assert float(row["diameter_median_px"]) * float(row["pixel_size_nm"]) == pytest.approx(
                    float(row["diameter_median"]), rel=1e-9)


def test_a_note_names_images_whose_particles_are_far_from_the_size_learnt():
    from harness.predict import size_note

    medians = {"same": 20.0, "wide": 90.0, "wider": 130.0, "tiny": 4.0, "empty": None}
    note = size_note(medians, trained_px=20.0, card_scale=1.0, scale=1.0, looks=False)
    assert note is not None
    assert "2 image(s) (wide, wider) show particles over 2x wider than the 20 px" in note
    assert "median 5.5x" in note and "--working-scale 0.18" in note
    assert "1 image(s) (tiny) show particles under 1/2 of the 20 px" in note
    # read at --working-scale 0.2, the wide ones are the learnt size: only the narrow ones are named
    assert "wider than" not in size_note(medians, 20.0, 1.0, 0.2, looks=False)
    # a run with each image's second look handles larger particles itself; old cards know no size
    assert "wider than" not in (size_note(medians, 20.0, 1.0, 1.0, looks=True) or "")
    assert size_note(medians, None, 1.0, 1.0, looks=False) is None
    assert size_note({"same": 25.0}, 20.0, 1.0, 1.0, looks=False) is None


def test_an_image_that_fails_part_way_leaves_no_output_folder(exported, tmp_path):
    run, images, _ = exported
    plain = _first_image_alone(images, tmp_path)
    good = next(plain.iterdir())
    image = iio.imread(good)
    iio.imwrite(plain / "a_fine.png", image.astype(np.uint8) if image.dtype != np.uint8 else image)
    whole = (plain / "a_fine.png").read_bytes()
    (plain / "z_cut.png").write_bytes(whole[: len(whole) // 2])  # its header reads; its pixels do not
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(plain), "--out", str(out),
                                       "--quiet"])
    assert result.exit_code != 0 and "z_cut.png" in result.output and "Traceback" not in result.output, \
        result.output
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))  # nothing half-written, anywhere


def test_diameters_agree_with_evaluate_and_with_scikit_image(exported, tmp_path):
    _, images, out = exported
    rows = _rows(out)
    report = tmp_path / "scores.json"
    result = CliRunner().invoke(main, ["evaluate", "--pred", str(out / "masks"), "--truth", str(images),
                                       "--json", str(report)])
    assert result.exit_code == 0, result.output
    for image in json.loads(report.read_text())["images"]:
        mine = sorted(float(r["diameter_nm"]) for r in rows if r["image"] == image["stem"]
                      and r["touches_border"] == "False")
        assert mine == pytest.approx(sorted(image["scores"]["pred_diameters"]), rel=1e-9), image["stem"]
        labels = iio.imread(out / "masks" / f"{image['stem']}.png")
        pixel = image["pixel_size_nm"]
        theirs = sorted(r.equivalent_diameter_area * pixel for r in regionprops(labels.astype(np.int32)))
        assert sorted(float(r["diameter_nm"]) for r in rows if r["image"] == image["stem"]) == pytest.approx(
            theirs, rel=1e-9)


def test_a_plain_folder_without_pixel_sizes_gets_sizes_in_px(exported, tmp_path):
    run, images, _ = exported
    plain = _first_image_alone(images, tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(plain), "--out", str(out),
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    # an exported TIFF alone, without its metadata.csv, states no pixel size: sizes in px only, never a guess
    assert rows and all(float(r["diameter_px"]) > 0 for r in rows)
    assert {(r["diameter_nm"], r["pixel_size_source"]) for r in rows} == {("", "unknown")}
    assert "pixel size known for 0" in result.output


def test_bad_inputs_are_refused_by_name(exported, tmp_path):
    run, images, _ = exported
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not an image")
    result = CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(bad), "--out",
                                       str(tmp_path / "o")])
    assert result.exit_code != 0 and "broken.png" in result.output and "Traceback" not in result.output
    inside = CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(images), "--out",
                                       str(images / "predicted")])
    assert inside.exit_code != 0 and "inside the image folder" in inside.output
    no_model = CliRunner().invoke(main, ["predict", "--run", str(images), "--images", str(images), "--out",
                                         str(tmp_path / "p")])
    assert no_model.exit_code != 0 and "no model.safetensors" in no_model.output


def test_an_output_folder_in_use_or_an_edited_card_is_refused(exported, tmp_path):
    run, images, out = exported
    again = CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(images), "--out", str(out)])
    assert again.exit_code != 0 and "is not an empty folder" in again.output and "Traceback" not in again.output
    card = json.loads((run / "model.json").read_text())
    for field, value, says in (("working_scale", "abc", "working_scale is 'abc'"),
                               ("working_scale", -1, "working_scale is -1"),
                               ("second_look_px", 0, "second_look_px is 0"),
                               ("backbone", "resnet9000", "resnet9000")):
        edited = tmp_path / f"edited-{field}-{value}"
        shutil.copytree(run, edited)
        (edited / "model.json").write_text(json.dumps({**card, field: value}))
        result = CliRunner().invoke(main, ["predict", "--run", str(edited), "--images", str(images), "--out",
                                           str(tmp_path / f"o-{field}-{value}")])
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        assert "model.json" in result.output and says in result.output, result.output


def test_working_scale_overrides_the_runs_own_factor(exported, tmp_path):
    run, images, out = exported
    card_scale = json.loads((run / "model.json").read_text())["working_scale"]
    same = tmp_path / "same"
    result = CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(images), "--out", str(same),
                                       "--working-scale", str(card_scale), "--quiet"])
    assert result.exit_code == 0 and f"at working scale {card_scale:g}" in result.output, result.output
    stems = sorted(p.stem for p in (out / "masks").glob("*.png"))
    assert all(np.array_equal(iio.imread(same / "masks" / f"{s}.png"), iio.imread(out / "masks" / f"{s}.png"))
               for s in stems)
    half = tmp_path / "half"
    result = CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(images), "--out", str(half),
                                       "--working-scale", str(card_scale / 2), "--quiet"])
    assert result.exit_code == 0, result.output
    masks = {s: iio.imread(half / "masks" / f"{s}.png") for s in stems}
    # still in the images' own pixels, but a different prediction
    assert all(masks[s].shape == iio.imread(out / "masks" / f"{s}.png").shape for s in stems)
    assert any(not np.array_equal(masks[s], iio.imread(out / "masks" / f"{s}.png")) for s in stems)
    for bad in ("0", "-1", "5"):
        refused = CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(images), "--out",
                                            str(tmp_path / f"bad{bad}"), "--working-scale", bad])
        assert refused.exit_code != 0 and "--working-scale" in refused.output and "Traceback" not in refused.output
        assert not (tmp_path / f"bad{bad}").exists()


def test_a_model_made_under_other_numerics_or_folder_version_is_applied_with_a_note(exported, tmp_path):
    run, images, _ = exported
    plain = _first_image_alone(images, tmp_path)
    result = CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(plain), "--out",
                                       str(tmp_path / "now"), "--quiet"])
    assert result.exit_code == 0 and "note:" not in result.output, result.output
    old = tmp_path / "old-run"
    shutil.copytree(run, old)
    card = json.loads((old / "model.json").read_text())
    (old / "model.json").write_text(json.dumps({**card, "numerics": "1", "dataset": "lab-vfolder-3-0123abcd"}))
    result = CliRunner().invoke(main, ["predict", "--run", str(old), "--images", str(plain), "--out",
                                       str(tmp_path / "then"), "--quiet"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2 and "numerics 1" in notes[0] and "a folder-3 folder" in notes[1]
    # folder-7 moved pretraining only: a folder-6 model predicts as it did, so no note
    (old / "model.json").write_text(json.dumps({**card, "dataset": "lab-vfolder-6-0123abcd"}))
    result = CliRunner().invoke(main, ["predict", "--run", str(old), "--images", str(plain), "--out",
                                       str(tmp_path / "six"), "--quiet"])
    assert result.exit_code == 0 and "note:" not in result.output, result.output


def test_a_labelled_folder_with_a_broken_mask_is_still_predicted_and_checked_for_predict(exported, tmp_path):
    """predict reads images (and metadata.csv), never masks: a lab's labelled folder whose one mask is
    damaged was refused by name for a file predict would never open; `data check --for predict` agrees."""
    import shutil

    run, images, _ = exported
    folder = tmp_path / "labelled"
    shutil.copytree(images, folder)
    masks = folder / "masks"
    masks.mkdir(exist_ok=True)
    (masks / "broken.png").write_bytes(b"not a png")
    stem = sorted((folder / "images").iterdir())[0].stem
    (masks / f"{stem}.png").write_bytes(b"not a png either")
    checked = CliRunner().invoke(main, ["data", "check", "--for", "predict", str(folder)])
    assert checked.exit_code == 0 and "broken.png" not in checked.output, checked.output
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(folder), "--out", str(out),
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "masks").iterdir())) == len(list((folder / "images").iterdir()))
    # a run on the same folder still reads the masks and names the bad one
    from harness.data.folder import FolderDataset
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match=f"{stem}.png"):
        FolderDataset(folder).records()


def _images_csv(out):
    with (out / "images.csv").open() as handle:
        return {r["image"]: r for r in csv.DictReader(handle)}


def test_particles_on_print_are_shown_apart_and_no_print_marks_keeps_them(exported, tmp_path, monkeypatch):
    """On BAM's TiO2 SEM images the OCR reads a clump of particles as "8": predict dropped its particles
    without a word. They are now counted in images.csv, drawn in cyan and named in a note, and
    --no-print-marks (images without print over the specimen) keeps them and never runs the OCR."""
    from harness.data import printed

    run, images, default = exported
    before = _images_csv(default)
    assert {r["dropped_on_print"] for r in before.values()} == {"0"}  # the exported images carry no print
    top_half = lambda sample: ((0, 0, sample.image.shape[0] // 2, sample.image.shape[1]),)  # noqa: E731
    monkeypatch.setattr(printed, "printed_boxes", top_half)
    monkeypatch.setattr(printed, "_seen", {})
    marked = tmp_path / "marked"
    result = CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(images), "--out", str(marked),
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    after = _images_csv(marked)
    dropped = {k: int(r["dropped_on_print"]) for k, r in after.items() if int(r["dropped_on_print"])}
    assert dropped and "--no-print-marks" in result.output and f"{sum(dropped.values())} particle(s)" in result.output
    for stem, row in after.items():  # the same particles, parted: counted, or on print
        assert int(row["particles"]) + int(row["dropped_on_print"]) == int(before[stem]["particles"]), stem
        labels = iio.imread(marked / "masks" / f"{stem}.png").astype(np.int64)
        area = np.bincount(labels.ravel())
        top = np.bincount(labels[: labels.shape[0] // 2].ravel(), minlength=area.size)
        assert (top[1:] < 0.5 * area[1:])[area[1:] > 0].all(), stem  # none counted lies half on print
    stem = next(iter(dropped))
    overlay = iio.imread(marked / "overlays" / f"{stem}.png")
    assert (overlay.reshape(-1, 3) == (0, 190, 255)).all(axis=1).any()  # cyan where print was read

    def never(sample):
        raise AssertionError("--no-print-marks looked for print")

    monkeypatch.setattr(printed, "printed_boxes", never)
    kept = tmp_path / "kept"
    result = CliRunner().invoke(main, ["predict", "--run", str(run), "--images", str(images), "--out", str(kept),
                                       "--quiet", "--no-print-marks"])
    assert result.exit_code == 0, result.output
    unmarked = _images_csv(kept)
    assert {r["dropped_on_print"] for r in unmarked.values()} == {""}  # not looked for, so not stated
    assert {k: r["particles"] for k, r in unmarked.items()} == {k: r["particles"] for k, r in before.items()}
    for stem in before:
        assert (iio.imread(kept / "masks" / f"{stem}.png") == iio.imread(default / "masks" / f"{stem}.png")).all()
