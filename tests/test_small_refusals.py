"""The smaller input defects of the nothing-lost issue (item 12), each as a user meets it:
names in two Unicode forms, a semicolon CSV, a symlink loop, a missing dataset folder, stems
missing on both sides of `evaluate`, a misspelt method late in a sweep, binary masks."""

from __future__ import annotations

import os
import unicodedata

import numpy as np
import tifffile
from click.testing import CliRunner
from PIL import Image
from test_folder import disc_mask, make_folder, micrograph

from harness.cli import main
from harness.data.check import check_folder
from harness.data.folder import FolderDataset


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_an_image_and_its_mask_named_in_two_unicode_forms_still_pair(tmp_path):
    name = "probe_Ångström"
    nfd, nfc = unicodedata.normalize("NFD", name), unicodedata.normalize("NFC", name)
    assert nfd != nfc
    root = make_folder(tmp_path / "u", {f"{nfd}.tif": micrograph(1), "b.tif": micrograph(2)},
                       {f"{nfc}.tif": disc_mask(1)}, csv=f"image,pixel_size_nm\n{nfc}.tif,2.0\n")
    index = FolderDataset(root).index().set_index("id")
    assert index.loc[nfc, "labeled"] and index.loc[nfc, "pixel_size_nm"] == 2.0
    assert not [p for p in check_folder(root).problems if "no image with the stem" in p.reason]


def test_a_semicolon_separated_metadata_file_gets_a_hint(tmp_path):
    root = make_folder(tmp_path / "s", {"a.tif": micrograph(1)}, csv="image;pixel_size_nm\na.tif;2.0\n")
    reasons = [p.reason for p in check_folder(root).problems]
    assert any("no 'image' column" in r and "separated by semicolons" in r for r in reasons), reasons
    (tmp_path / "pred").mkdir()
    result = invoke("evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(root),
                    "--metadata", str(root / "metadata.csv"))
    assert result.exit_code == 2


def test_a_metadata_row_with_a_field_too_many_is_refused_not_shifted(tmp_path):
    """A trailing comma gives a row one field more than the header; pandas would make the image name
    the index and read every value one column to the left, silently dropping the pixel sizes."""
    root = make_folder(tmp_path / "t", {"a.tif": micrograph(1), "b.tif": micrograph(2)},
                       {"a.tif": disc_mask(1)}, csv="image,pixel_size_nm\na.tif,2.0,\nb.tif,3.0,\n")
    errors = [p for p in check_folder(root).errors if p.file == "metadata.csv"]
    assert errors and "line 2 has 3 fields, the header 2 (and 1 more line(s))" in errors[0].reason
    (root / "metadata.csv").write_text("image,pixel_size_nm\na.tif,2.0\nb.tif,3.0\n\n")  # a blank line is fine
    assert not [p for p in check_folder(root).errors if p.file == "metadata.csv"]
    assert FolderDataset(root).index().set_index("id").loc["a", "pixel_size_nm"] == 2.0


def test_a_folder_whose_masks_hold_no_particle_is_not_usable(tmp_path):
    names = [f"i{k}.tif" for k in range(6)]
    empty = {n: np.zeros_like(disc_mask(0)) for n in names}
    root = make_folder(tmp_path / "e", {n: micrograph(k) for k, n in enumerate(names)}, empty)
    report = check_folder(root)
    assert not report.usable
    assert any("hold no particle" in p.reason for p in report.errors), [p.reason for p in report.errors]
    labelled = make_folder(tmp_path / "l", {n: micrograph(k) for k, n in enumerate(names)},
                           {n: disc_mask(k) for k, n in enumerate(names)})
    assert not any("hold no particle" in p.reason for p in check_folder(labelled).problems)
    cropped = check_folder(labelled, crop_bottom=disc_mask(0).shape[0] - 2)  # every label below the kept rows
    assert any("hold no particle" in p.reason for p in cropped.errors)


def test_a_mask_stored_as_jpeg_is_refused_whatever_its_name(tmp_path):
    """JPEG compression changes label values at particle edges (ids 0-4 came back as 0-5): a mask so
    stored is refused by the folder check and by evaluate, even under a .png name."""
    names = [f"i{k}.tif" for k in range(6)]
    root = make_folder(tmp_path / "j", {n: micrograph(k) for k, n in enumerate(names)},
                       {n: disc_mask(k) for k, n in enumerate(names[1:])})
    Image.fromarray((disc_mask(0) * 60).astype(np.uint8)).save(root / "masks" / "i0.png", format="JPEG")
    problems = [p for p in check_folder(root).errors if p.file == "masks/i0.png"]
    assert problems and "lossy JPEG" in problems[0].reason, [p.reason for p in check_folder(root).problems]
    pred = tmp_path / "pred"
    pred.mkdir()
    Image.fromarray((disc_mask(0) > 0).astype(np.uint8)).save(pred / "i0.png")
    truth = tmp_path / "truth"
    truth.mkdir()
    (root / "masks" / "i0.png").rename(truth / "i0.png")
    result = invoke("evaluate", "--pred", str(pred), "--truth", str(truth))
    assert result.exit_code == 2 and "lossy JPEG" in result.output and "Traceback" not in result.output


def test_a_symlink_loop_is_named_as_one(tmp_path):
    root = make_folder(tmp_path / "l", {"a.tif": micrograph(1), "b.tif": micrograph(2)})
    os.symlink(root / "images" / "loop.tif", root / "images" / "loop.tif")
    problems = [p for p in check_folder(root).problems if p.file.endswith("loop.tif")]
    assert problems and "symbolic link loop" in problems[0].reason and problems[0].severity == "warning"


def test_a_missing_dataset_folder_is_not_called_an_unknown_dataset(tmp_path):
    result = invoke("splits", "show", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "does not exist" in result.output and "unknown dataset" not in result.output


def test_evaluate_names_the_stems_missing_on_both_sides(tmp_path):
    for side, stems in (("pred", ("a", "p_only")), ("truth", ("a", "t_only"))):
        (tmp_path / side).mkdir()
        for stem in stems:
            Image.fromarray(np.array([[0, 1], [1, 1]], dtype=np.uint8)).save(tmp_path / side / f"{stem}.png")
    result = invoke("evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"))
    assert result.exit_code == 2 and "t_only" in result.output and "p_only" in result.output


def test_a_sweep_checks_every_method_name_before_running_any(tmp_path):
    result = invoke("sweep", "--methods", "none,no_such_method", "--budgets", "2", "--seeds", "0",
                    "--profile", "smoke", "--quiet", "--out", str(tmp_path))
    assert result.exit_code == 2 and "no_such_method" in result.output
    assert not list(tmp_path.rglob("record.json"))


def test_binary_masks_are_warned_about(tmp_path):
    binary = (disc_mask(1) > 0).astype(np.uint8) * 255
    root = make_folder(tmp_path / "b", {"a.tif": micrograph(1)}, {"a.tif": binary})
    warnings = [p for p in check_folder(root).problems if "binary" in p.reason]
    assert warnings and "8-connected" in warnings[0].reason and "masks/a.tif" in warnings[0].reason
    tifffile.imwrite(root / "masks" / "a.tif", disc_mask(1))
    assert not [p for p in check_folder(root).problems if "binary" in p.reason]


def test_options_are_named_in_their_own_refusals(tmp_path):
    limit = invoke("sweep", "--methods", "none", "--executor", "local", "--time-limit", "forever",
                   "--out", str(tmp_path / "s"))
    assert limit.exit_code == 2 and "--time-limit 'forever'" in limit.output and "checkpoint" not in limit.output
    missing = invoke("leaderboard", "reproduce", str(tmp_path / "x" / "record.json"), "--root", str(tmp_path))
    assert missing.exit_code == 2 and "no such file or folder" in missing.output
    assert "no record with" not in missing.output


def test_a_release_of_a_missing_root_creates_nothing(tmp_path):
    result = invoke("leaderboard", "release", "v1", "--root", str(tmp_path / "typo"))
    assert result.exit_code == 2 and "no records under" in result.output and not (tmp_path / "typo").exists()


def test_evaluate_names_a_mask_path_that_is_not_a_file(tmp_path):
    for side in ("pred", "truth"):
        (tmp_path / side).mkdir()
        Image.fromarray(disc_mask(0).astype(np.uint8)).save(tmp_path / side / "a.png")
    (tmp_path / "pred" / "b.png").mkdir()
    os.symlink(tmp_path / "nowhere.png", tmp_path / "truth" / "c.png")
    for broken, says in ((tmp_path / "pred" / "b.png", "is a folder"),
                         (tmp_path / "truth" / "c.png", "is a broken symbolic link")):
        result = invoke("evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"))
        assert result.exit_code == 2 and str(broken) in result.output and says in result.output, result.output
        broken.rmdir() if broken.is_dir() else broken.unlink()


def test_an_instance_id_in_separate_pieces_is_reported(tmp_path):
    """Instance masks are never split into components: an id reused for two blobs is one particle (count
    and size), so the folder check says so, as a warning (occluded particles can be in pieces)."""
    names = [f"i{k}.tif" for k in range(6)]
    masks = {n: disc_mask(k) for k, n in enumerate(names)}
    reused = disc_mask(0).copy()
    reused[40:44, 40:44] = 1  # id 1 again, far from its first region
    masks["i0.tif"] = reused
    root = make_folder(tmp_path / "r", {n: micrograph(k) for k, n in enumerate(names)}, masks)
    warned = [p for p in check_folder(root).problems if p.file == "masks/i0.tif"]
    assert warned and warned[0].severity == "warning" and "id 1 in 2 pieces" in warned[0].reason
    assert not [p for p in check_folder(root).problems if "separate regions" in p.reason and p.file != "masks/i0.tif"]
