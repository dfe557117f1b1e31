"""``harness evaluate`` on folders of masks: layouts, metadata, units, binary masks, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from harness.cli import _Group
from harness.cli.evaluate import COMMANDS, evaluate
from harness.data.io import write_label_image
from harness.metrics import score_image


@click.group(cls=_Group)
def cli() -> None:
    """The evaluate command inside a group that turns HarnessError into one line + exit 2."""


for _command in COMMANDS:
    cli.add_command(_command)


def labels(seed: int, shape: tuple[int, int] = (32, 32)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.uint16)
    for pid in range(1, 6):
        r, c = rng.integers(0, shape[0] - 6), rng.integers(0, shape[1] - 6)
        out[r : r + rng.integers(3, 7), c : c + rng.integers(3, 7)] = pid
    return out


def make_folders(tmp: Path, stems=("a", "b", "c"), pixel_sizes=(1.0, 5.0, ""), databar=(0, 4, 0)):
    """truth in the folder format with metadata.csv; pred as a plain folder of PNG masks."""
    truth, pred = tmp / "truth", tmp / "pred"
    (truth / "masks").mkdir(parents=True)
    pred.mkdir()
    rows = ["image,pixel_size_nm,databar_rows,modality"]
    for i, stem in enumerate(stems):
        t = labels(i)
        write_label_image(truth / "masks" / f"{stem}.tif", t)
        p = t.copy()
        p[p == 2] = 0
        write_label_image(pred / f"{stem}.png", p)
        rows.append(f"{stem}.tif,{pixel_sizes[i]},{databar[i]},SEM")
    (truth / "metadata.csv").write_text("\n".join(rows) + "\n")
    return pred, truth


def run(*args: str) -> object:
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)])


def test_evaluate_prints_table_and_writes_json(tmp_path: Path):
    pred, truth = make_folders(tmp_path)
    out = tmp_path / "out" / "scores.json"
    result = run("--pred", pred, "--truth", truth, "--json", out)
    assert result.exit_code == 0, result.output
    assert "high-mag" in result.output and "mid-mag" in result.output and "unknown" in result.output
    assert "pixel size unknown for 1 of 3 images (c)" in result.output
    data = json.loads(out.read_text())
    assert [im["stem"] for im in data["images"]] == ["a", "b", "c"]
    assert [im["scores"]["units"] for im in data["images"]] == ["nm", "nm", "px"]
    assert [im["length_scale"] for im in data["images"]] == ["high-mag", "mid-mag", "unknown"]
    assert data["images"][1]["scores"]["databar_rows"] == 4
    expected = score_image(labels(0) * (labels(0) != 2), labels(0), 1.0)
    assert data["images"][0]["scores"] == expected.model_dump(mode="json")
    assert data["report"]["headline_metric"] == "count_rel_error"
    assert data["report"]["groups"]["overall"]["n_images"] == 3


def test_units_nm_demands_pixel_sizes_and_pixel_size_option_supplies_them(tmp_path: Path):
    pred, truth = make_folders(tmp_path)
    result = run("--pred", pred, "--truth", truth, "--units", "nm")
    assert result.exit_code == 2
    assert "error: --units nm: pixel size unknown" in result.output and "for 1 mask(s): c" in result.output
    out = tmp_path / "s.json"
    result = run("--pred", pred, "--truth", truth, "--units", "nm", "--pixel-size", "12", "--json", out)
    assert result.exit_code == 0, result.output
    images = json.loads(out.read_text())["images"]
    assert {im["length_scale"] for im in images} == {"low-mag"}
    result = run("--pred", pred, "--truth", truth, "--units", "px", "--json", out)
    images = json.loads(out.read_text())["images"]
    assert [im["scores"]["units"] for im in images] == ["px"] * 3
    assert [im["length_scale"] for im in images] == ["high-mag", "mid-mag", "unknown"]


def test_binary_masks_are_split_with_the_chosen_connectivity(tmp_path: Path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir()
    pred.mkdir()
    t = np.zeros((16, 16), np.uint16)
    t[2:5, 2:5], t[5:8, 5:8] = 1, 2  # diagonal neighbours
    write_label_image(truth / "x.tif", t)
    Image.fromarray(((t > 0) * 255).astype(np.uint8)).save(pred / "x.png")
    out = tmp_path / "s.json"
    for connectivity, n_pred in (("4", 2), ("8", 1)):
        result = run("--pred", pred, "--truth", truth, "--connectivity", connectivity, "--json", out)
        assert result.exit_code == 0, result.output
        assert f"1 pred mask(s) are binary: split into particles by {connectivity}-connected" in result.output
        assert "touching particles merge" in result.output
        assert json.loads(out.read_text())["images"][0]["scores"]["n_pred"] == n_pred
    result = run("--pred", pred, "--truth", truth, "--mask-type", "instance", "--json", out)
    assert json.loads(out.read_text())["images"][0]["scores"]["n_pred"] == 1  # one id: 255


def test_masks_folder_given_directly_finds_metadata_next_to_it(tmp_path: Path):
    pred, truth = make_folders(tmp_path)
    out = tmp_path / "s.json"
    result = run("--pred", pred, "--truth", truth / "masks", "--json", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["metadata"] == str(truth / "metadata.csv")


def _bad(tmp_path: Path, case: str) -> tuple[list[str], str]:
    pred, truth = make_folders(tmp_path)
    args = ["--pred", str(pred), "--truth", str(truth)]
    if case == "missing-pred":
        (pred / "b.png").unlink()
        return args, "pred folder .*pred: no mask for 1 true mask\\(s\\): b"
    if case == "missing-truth":
        write_label_image(pred / "z.tif", labels(9))
        return args, "truth folder .*masks: no mask for 1 predicted mask\\(s\\): z"
    if case == "shape":
        write_label_image(pred / "a.png", np.zeros((20, 32), np.uint16))
        return args, "a.png: shape \\(20, 32\\) differs from .*a.tif shape \\(32, 32\\)"
    if case == "rgb":
        (pred / "a.png").unlink()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(pred / "a.png")
        return args, "a.png: expected a 2-D label image, got shape \\(32, 32, 3\\)"
    if case == "float":
        (pred / "a.png").unlink()
        tifffile.imwrite(pred / "a.tif", np.full((32, 32), 0.5, np.float32))  # whole-number floats are labels
        return args, "a.tif: label images must hold integers, got dtype float32"
    if case == "negative":
        tifffile.imwrite(truth / "masks" / "a.tif", np.full((32, 32), -3, np.int16))
        return args, "a.tif: negative label -3"
    if case == "unreadable":
        (pred / "a.png").write_bytes(b"not an image")
        return args, "a.png: cannot be read as an image"
    if case == "empty-file":
        (pred / "a.png").write_bytes(b"")
        return args, "a.png: file is empty"
    if case == "no-folder":
        return ["--pred", str(tmp_path / "nope"), "--truth", str(truth)], "pred folder .*nope: not found"
    if case == "bad-pixel-size":
        (truth / "metadata.csv").write_text("image,pixel_size_nm\na.tif,-2\n")
        # the folder format's own message (one reader of metadata.csv: harness.data.folder)
        return args, "metadata.csv: line 2 \\(a.tif\\): pixel_size_nm must be a positive number, got '-2'"
    if case == "bad-databar":
        (truth / "metadata.csv").write_text("image,pixel_size_nm,databar_rows\na.tif,1,40\n")
        return args, "databar_rows 40 for 'a' is not smaller than the mask height 32"
    if case == "no-column":
        (truth / "metadata.csv").write_text("image,scale\na.tif,1\n")
        return args, "metadata.csv: missing column 'pixel_size_nm'"
    if case == "duplicate-stem":
        write_label_image(pred / "a.tif", labels(0))
        return args, "two mask files share the stem 'a'"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["missing-pred", "missing-truth", "shape", "rgb", "float", "negative", "unreadable", "empty-file", "no-folder",
     "bad-pixel-size", "bad-databar", "no-column", "duplicate-stem"],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path: Path, case: str):
    args, pattern = _bad(tmp_path, case)
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.output


def test_command_is_exported_for_the_main_group():
    assert COMMANDS == [evaluate] and evaluate.name == "evaluate"


def test_evaluate_reads_mask_files_as_the_folder_format_does(tmp_path: Path):
    """Whole-number float labels and a single-page stack are labels to a folder dataset; evaluate
    reads them the same way (one rule), and scores them as the integer mask they equal."""
    for side in ("pred", "truth"):
        (tmp_path / side).mkdir()
    mask = np.zeros((32, 32), np.uint16)
    mask[4:12, 4:12], mask[18:28, 16:30] = 1, 2
    tifffile.imwrite(tmp_path / "truth" / "a.tif", mask)
    tifffile.imwrite(tmp_path / "pred" / "a.tif", mask.astype(np.float32)[None])
    result = run("--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    image = json.loads((tmp_path / "s.json").read_text())["images"][0]["scores"]
    assert image["n_pred"] == image["n_true"] == 2 and image["f1"] == 1.0


def test_evaluate_reads_metadata_csv_as_the_folder_format_does(tmp_path: Path):
    """One reader of metadata.csv: column names are trimmed and case-insensitive for `harness
    evaluate` too (it was case-sensitive and stricter than training), and bad values give the
    folder format's own message."""
    from harness.data.folder import read_metadata as folder_metadata

    pred, truth = make_folders(tmp_path)
    (truth / "metadata.csv").write_text(" Image , Pixel_Size_nm ,DATABAR_ROWS\na.tif, 2.5 ,3\nb.tif,,\n")
    result = run("--pred", str(pred), "--truth", str(truth), "--json", str(tmp_path / "scores.json"))
    assert result.exit_code == 0, result.output
    scored = {r["stem"]: r["pixel_size_nm"] for r in json.loads((tmp_path / "scores.json").read_text())["images"]}
    assert scored["a"] == 2.5 and scored["b"] is None
    rows, problems = folder_metadata(truth, ["a.tif", "b.tif"])
    assert not problems and rows["a.tif"].pixel_size_nm == 2.5 and rows["a.tif"].databar_rows == 3
