"""`harness data check`: every bad case is reported; leaks are found; export -> check round trip."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage as ndi

from harness.cli import main
from harness.data.base import Dataset, DatasetIdentity
from harness.data.check import check_folder
from harness.data.export import export_pool
from harness.data.folder import FolderDataset
from harness.data.leakage import find_leaks, hamming, perceptual_hash
from harness.data.sample import Sample
from harness.data.scales import length_scale_of
from harness.data.splits import make_manifest
from harness.errors import HarnessError


def particles(seed: int, shape: tuple[int, int] = (96, 96), dtype=np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """A micrograph of bright discs on a noisy background, and its instance mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = rng.normal(60, 10, shape)
    mask = np.zeros(shape, np.uint16)
    for k in range(10):
        cy, cx, r = rng.uniform(6, shape[0] - 6), rng.uniform(6, shape[1] - 6), rng.uniform(3, 9)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        image[disc] = rng.uniform(150, 230) + rng.normal(0, 10, int(disc.sum()))
        mask[disc] = k + 1
    top = np.iinfo(dtype).max
    return np.clip(image * (top / 255), 0, top).astype(dtype), mask


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def good_folder(root: Path, labeled: int = 15, unlabeled: int = 2) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(labeled + unlabeled):
        image, mask = particles(i)
        tifffile.imwrite(root / "images" / f"g{i}.tif", image)
        if i < labeled:
            tifffile.imwrite(root / "masks" / f"g{i}.tif", mask)
    rows = "\n".join(f"g{i}.tif,{[1.0, 4.0, 20.0][i % 3]}" for i in range(labeled + unlabeled))
    (root / "metadata.csv").write_text("image,pixel_size_nm\n" + rows + "\n")
    return root


def add_bad_cases(root: Path) -> dict[str, str]:
    """Every bad case of the issue; returns file -> a phrase its problem must contain."""
    images, masks = root / "images", root / "masks"
    image, mask = particles(50)
    (images / "empty.tif").write_bytes(b"")
    (images / "garbage.tif").write_bytes(b"II*\x00 definitely not a tiff" * 3)
    tifffile.imwrite(images / "mismatch.tif", image)
    tifffile.imwrite(masks / "mismatch.tif", np.zeros((96, 80), np.uint16))
    tifffile.imwrite(images / "stack.tif", np.stack([image] * 5))
    nan = image.astype(np.float32)
    nan[3, 3] = np.nan
    tifffile.imwrite(images / "nan.tif", nan)
    tifffile.imwrite(images / "blank.tif", np.zeros((96, 96), np.uint8))
    tifffile.imwrite(masks / "blank.tif", mask)
    (images / "dup.tif").write_bytes((images / "g1.tif").read_bytes())
    tifffile.imwrite(images / "rgbmask.tif", particles(51)[0])
    tifffile.imwrite(masks / "rgbmask.tif", np.stack([mask.astype(np.uint8)] * 3, axis=-1))
    tifffile.imwrite(images / "zeromask.tif", particles(52)[0])
    (masks / "zeromask.tif").write_bytes(b"")
    tifffile.imwrite(images / "twin.tif", particles(53)[0])
    Image.fromarray(particles(53)[0]).save(images / "twin.png")
    tifffile.imwrite(images / "badmeta.tif", particles(54)[0])
    tifffile.imwrite(images / "nomask.tif", particles(55)[0])
    with open(root / "metadata.csv", "a") as handle:
        handle.write("badmeta.tif,abc\nnomask.tif,2.0\n")
    table = pd.read_csv(root / "metadata.csv")
    table["split"] = ""
    table.loc[table["image"] == "nomask.tif", "split"] = "test"
    table.to_csv(root / "metadata.csv", index=False)
    return {
        "images/empty.tif": "file is empty (0 bytes)",
        "images/garbage.tif": "cannot be read",
        "masks/mismatch.tif": "mask is 96x80 pixels but the image is 96x96",
        "images/stack.tif": "3-D stack of 5 images",
        "images/nan.tif": "NaN",
        "images/blank.tif": "mask has 10 particles but the image is empty",
        "images/g1.tif": "same pixels as images/dup.tif (duplicate file)",  # reported on the later name
        "masks/rgbmask.tif": "mask is RGB",
        "masks/zeromask.tif": "file is empty (0 bytes)",
        "images/twin.png": "used by several files",
        "metadata.csv": "pixel_size_nm 'abc' is not a number",
        "images/nomask.tif": "needs a mask",
    }


# ------------------------------------------------------------------------------------- checks


def test_a_good_folder_is_usable_and_reported(tmp_path):
    root = good_folder(tmp_path / "good")
    report = check_folder(root)
    assert report.usable and not report.errors
    assert report.pools == {"unlabeled": 2, "train": 9, "val": 3, "test": 3}
    assert report.without_masks == ["images/g15.tif", "images/g16.tif"]
    assert [(p.source, p.images, p.min_nm, p.max_nm) for p in report.pixel_sizes] == [("metadata.csv", 17, 1.0, 20.0)]
    bins = {b for pool in report.pool_bins.values() for b in pool}
    assert bins == {"high-mag", "mid-mag", "low-mag"}
    expected = {f"g{i}": len(np.unique(particles(i)[1])) - 1 for i in range(15)}
    assert all(i.loaded and i.particles == (expected[i.id] if i.mask else 0) for i in report.images)
    text = report.to_text()
    assert "result: usable" in text and "metadata.csv" in text and "low-mag" in text
    assert check_folder(root).model_dump() == report.model_dump()  # deterministic


def test_every_bad_case_is_reported_with_file_and_reason(tmp_path):
    root = good_folder(tmp_path / "bad")
    expected = add_bad_cases(root)
    (root / "images" / "notes.jpg").write_bytes(b"jpeg")
    (root / "masks" / "orphan.tif").write_bytes((root / "masks" / "g0.tif").read_bytes())
    report = check_folder(root)
    assert not report.usable
    for file, phrase in expected.items():
        reasons = [p.reason for p in report.errors if p.file == file]
        assert any(phrase in r for r in reasons), f"{file}: expected {phrase!r}, got {reasons}"
    warned = {p.file for p in report.warnings}
    assert {"images/notes.jpg", "masks/orphan.tif"} <= warned
    # the good images still load and are counted
    assert sum(i.loaded for i in report.images) >= 8
    # and the dataset itself refuses to run
    with pytest.raises(HarnessError, match="harness data check"):
        FolderDataset(root).index()


def test_no_pixel_size_is_a_warning_and_no_masks_an_error(tmp_path):
    """A folder without masks cannot run (no train/val/test), so the check says so: the check and
    `harness run` decide by one set of rules."""
    root = tmp_path / "plain"
    (root / "images").mkdir(parents=True)
    for i in range(3):
        tifffile.imwrite(root / "images" / f"u{i}.tif", particles(i)[0])
    report = check_folder(root)
    assert not report.usable
    assert "sizes are in px" in " ".join(p.reason for p in report.warnings)
    assert [e.reason for e in report.errors] == [
        "no image has a mask: a run needs labeled train, val and test images (the folder holds an unlabeled "
        "pretraining pool only)"]
    assert report.pixel_sizes[0].source == "unknown"


def test_missing_images_folder(tmp_path):
    (tmp_path / "x").mkdir()
    report = check_folder(tmp_path / "x")
    assert not report.usable and report.errors[0].file == "images/"


# ---------------------------------------------------------------------------------------- CLI


def test_cli_exit_codes_json_and_nothing_written_inside(tmp_path):
    root = good_folder(tmp_path / "cli")
    before = tree_digest(root)
    runner = CliRunner()
    out = tmp_path / "reports" / "check.json"
    result = runner.invoke(main, ["data", "check", str(root), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "result: usable" in result.output
    assert json.loads(out.read_text())["usable"] is True
    inside = runner.invoke(main, ["data", "check", str(root), "--json", str(root / "r.json")])
    assert inside.exit_code == 2 and "inside the checked folder" in inside.output
    assert tree_digest(root) == before
    add_bad_cases(root)
    before = tree_digest(root)
    bad = runner.invoke(main, ["data", "check", str(root), "--crop-bottom", "0", "--connectivity", "4"])
    assert bad.exit_code == 1
    assert "images/stack.tif" in bad.output and "NOT usable" in bad.output
    assert tree_digest(root) == before


# ------------------------------------------------------------------------------------ leakage


def test_perceptual_hash_survives_resave_rescale_and_separates_micrographs():
    image = particles(1, (128, 128))[0]
    h = perceptual_hash(image)
    sixteen = image.astype(np.uint16) * 200 + 500
    smaller = np.asarray(Image.fromarray(image).resize((90, 90), Image.Resampling.BILINEAR))
    assert hamming(h, perceptual_hash(sixteen)) <= 2
    assert hamming(h, perceptual_hash(smaller)) <= 6
    others = [perceptual_hash(particles(s, (128, 128))[0]) for s in range(2, 14)]
    assert min(hamming(h, o) for o in others) > 12


def leak_folder(root: Path) -> Path:
    """Test images t0-t2 have copies in the unlabeled pool: re-saved 16-bit, rescaled, cropped."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i in range(6):
        image, mask = particles(100 + i, (112, 112))
        tifffile.imwrite(root / "images" / f"t{i}.tif", image)
        tifffile.imwrite(root / "masks" / f"t{i}.tif", mask)
        rows.append(f"t{i}.tif,{'test' if i < 4 else 'train'}")
    t0, t1, t2 = (particles(100 + i, (112, 112))[0] for i in range(3))
    tifffile.imwrite(root / "images" / "copy_resaved.tif", t0.astype(np.uint16) * 257)
    Image.fromarray(t1).resize((84, 84), Image.Resampling.BILINEAR).save(root / "images" / "copy_rescaled.png")
    tifffile.imwrite(root / "images" / "copy_cropped.tif", t2[7:103, 4:108])
    for i in range(4):
        tifffile.imwrite(root / "images" / f"other{i}.tif", particles(300 + i, (112, 112))[0])
    # a fine texture: a 5 % crop moves its whole-image hash by 16 bits, so only the crop search finds it
    tifffile.imwrite(root / "images" / "texture.tif", texture())
    tifffile.imwrite(root / "masks" / "texture.tif", particles(7, (128, 128))[1])
    tifffile.imwrite(root / "images" / "copy_texture.tif", texture()[6:122, 3:125])
    rows.append("texture.tif,val")
    (root / "metadata.csv").write_text("image,split\n" + "\n".join(rows) + "\n")
    return root


def texture() -> np.ndarray:
    noise = ndi.gaussian_filter(np.random.default_rng(1).normal(size=(128, 128)), 1.5)
    return ((noise - noise.min()) / (noise.max() - noise.min()) * 255).astype(np.uint8)


def test_find_leaks_finds_copies_of_test_images_and_nothing_else(tmp_path):
    dataset = FolderDataset(leak_folder(tmp_path / "leaky"))
    manifest = make_manifest(dataset)
    leaks = find_leaks(dataset, manifest)
    assert {(leak.pretrain_id, leak.eval_id) for leak in leaks} == {
        ("copy_resaved", "t0"),
        ("copy_rescaled", "t1"),
        ("copy_cropped", "t2"),
        ("copy_texture", "texture"),
    }
    assert all(leak.distance <= 10 for leak in leaks)
    assert hamming(perceptual_hash(texture()), perceptual_hash(texture()[6:122, 3:125])) > 10
    assert next(leak.distance for leak in leaks if leak.eval_id == "texture") <= 2
    assert find_leaks(dataset, manifest, max_distance=0) != leaks  # the threshold matters


def test_a_hash_match_is_a_leak_only_when_the_pixels_agree(tmp_path):
    """The hash nominates, the pixels decide: two different micrographs given the very same hash
    (as similar textures can have) are not a leak; a re-saved copy still is."""
    from harness.data.leakage import Fingerprint, leaks_from_fingerprints, pixel_correlation

    images = {"pre_other": particles(1)[0], "pre_copy": particles(2)[0], "test_a": particles(2)[0]}
    images["pre_copy"] = (images["pre_copy"].astype(np.uint16) * 257)  # re-saved at 16 bits
    same_hash = Fingerprint(hash=12345, shape=(96, 96))
    fingerprints = {i: same_hash for i in images}
    manifest = make_manifest(FolderDataset(leak_folder(tmp_path / "any")))
    manifest = manifest.model_copy(update={"pools": {"unlabeled": ["pre_other", "pre_copy"], "train": [],
                                                     "val": [], "test": ["test_a"]}})
    leaks = leaks_from_fingerprints(fingerprints, manifest, load=images.__getitem__)
    assert [(leak.pretrain_id, leak.eval_id) for leak in leaks] == [("pre_copy", "test_a")]
    assert leaks[0].correlation > 0.99
    assert abs(pixel_correlation(images["pre_other"], images["test_a"])) < 0.5
    # without pixels to look at, the hashes alone decide (both pairs nominated)
    assert len(leaks_from_fingerprints(fingerprints, manifest)) == 2


def test_check_reports_leaks_as_errors(tmp_path):
    report = check_folder(leak_folder(tmp_path / "leaky"))
    assert not report.usable and len(report.leaks) == 4
    leak_errors = [p for p in report.errors if "near-duplicate" in p.reason]
    assert {p.file for p in leak_errors} == {
        "images/copy_resaved.tif",
        "images/copy_rescaled.png",
        "images/copy_cropped.tif",
        "images/copy_texture.tif",
    }


def val_leak_folder(root: Path, with_copy: bool = True) -> Path:
    """Labelled images t0-t5 (t0, t1 test; t2 val; t3-t5 train) and, in validation, t0 re-saved at 16 bits."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    splits = ["test", "test", "val", "train", "train", "train"]
    for i in range(len(splits)):
        image, mask = particles(100 + i, (112, 112))
        tifffile.imwrite(root / "images" / f"t{i}.tif", image)
        tifffile.imwrite(root / "masks" / f"t{i}.tif", mask)
    rows = [f"t{i}.tif,{split}" for i, split in enumerate(splits)]
    if with_copy:
        image, mask = particles(100, (112, 112))
        tifffile.imwrite(root / "images" / "val_copy.tif", image.astype(np.uint16) * 257)
        tifffile.imwrite(root / "masks" / "val_copy.tif", mask)
        rows.append("val_copy.tif,val")
    (root / "metadata.csv").write_text("image,split\n" + "\n".join(rows) + "\n")
    return root


def test_a_validation_copy_of_a_test_image_is_a_leak(tmp_path):
    """Validation chooses the kept state and the post-processing: a copy of a test image there makes
    those choices partly fit test, so the check reports it as a leak and a run refuses it."""
    report = check_folder(val_leak_folder(tmp_path / "val-leak"))
    assert not report.usable
    assert [(leak.pretrain_id, leak.pretrain_pool, leak.eval_id, leak.eval_pool) for leak in report.leaks] == [
        ("val_copy", "val", "t0", "test")]
    (error,) = [p for p in report.errors if p.code == "leak"]
    assert error.file == "images/val_copy.tif" and "partly fit test" in error.reason
    # the same folder without the copy is clean: distinct images are not called leaks
    assert not check_folder(val_leak_folder(tmp_path / "clean", with_copy=False)).leaks


def test_a_run_that_accepts_a_leak_says_so_and_is_not_filed(tmp_path, monkeypatch):
    from harness.results.leaderboard import RecordStore
    from harness.results.record import read_record

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    folder = val_leak_folder(tmp_path / "val-leak")
    args = ["run", "--dataset", str(folder), "--method", "none", "--budget", "100%", "--profile", "smoke", "--quiet"]
    refused = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "refused")])
    assert refused.exit_code != 0 and "val_copy.tif" in refused.output and "--allow-leakage" in refused.output
    assert not (tmp_path / "refused" / "record.json").exists()
    ran = CliRunner().invoke(main, [*args, "--allow-leakage", "--out", str(tmp_path / "run")])
    assert ran.exit_code == 0, ran.output
    record = read_record(tmp_path / "run" / "record.json")
    assert len(record.accepted_leaks) == 1 and record.accepted_leaks[0].startswith("images/val_copy.tif: near-dup")
    with pytest.raises(HarnessError, match="accepted 1 near-duplicate pair.*not filed"):
        RecordStore(tmp_path / "lb").add(tmp_path / "run")


# ------------------------------------------------------------------------------- round trip


class MemoryDataset(Dataset):
    """A tiny labeled + unlabeled dataset with data bars and three length scales."""

    def __init__(self) -> None:
        self.identity = DatasetIdentity(name="memory", version="1", params_hash="x")
        self.split_fractions = {"unlabeled": 0.25, "train": 0.45, "val": 0.15, "test": 0.15}
        self._sizes = [1.0, 4.0, 20.0, 1.5]

    def index(self) -> pd.DataFrame:
        rows = []
        for i in range(16):
            size = self._sizes[i % 4]
            rows.append(
                {"id": f"m{i:02d}", "labeled": i >= 4, "pixel_size_nm": size, "length_scale": length_scale_of(size),
                 "modality": "SEM", "split": None}
            )
        return pd.DataFrame(rows)

    def load(self, sample_id: str) -> Sample:
        i = int(sample_id[1:])
        image, mask = particles(500 + i, (64, 64), np.uint16 if i % 2 else np.uint8)
        bar = 6 if i % 3 == 0 else 0
        if bar:
            image[-bar:] = np.iinfo(image.dtype).max
            mask[-bar:] = 0
        return Sample(
            id=sample_id, image=image, mask=mask.astype(np.int32) if i >= 4 else None,
            pixel_size_nm=self._sizes[i % 4], modality="SEM", databar_rows=bar,
        )


def test_export_then_check_round_trip(tmp_path):
    source = MemoryDataset()
    manifest = make_manifest(source, split_seed=1)
    out = tmp_path / "export"
    count = export_pool(source, manifest, "all", out, progress=False)
    report = check_folder(out)
    assert report.usable, report.to_text()
    assert count == 16 and sum(report.pools.values()) == 16
    assert len(report.without_masks) == len(manifest.pools["unlabeled"])
    assert {p.source for p in report.pixel_sizes} == {"metadata.csv"}
    folder = FolderDataset(out)
    for pool, ids in manifest.pools.items():
        for sample_id in ids:
            original, again = source.load(sample_id), folder.load(sample_id)
            assert np.array_equal(original.image, again.image) and original.image.dtype == again.image.dtype
            assert again.databar_rows == original.databar_rows and again.pixel_size_nm == original.pixel_size_nm
            if pool == "unlabeled":  # export hides the masks of the pretraining pool
                assert again.mask is None
            else:
                assert np.array_equal(original.mask, again.mask)


def test_cli_export_then_check_with_an_embedded_dataset(tmp_path):
    pytest.importorskip("harness.data.synthetic", reason="the embedded synthetic dataset is not built yet")
    runner = CliRunner()
    out = tmp_path / "smoke"
    exported = runner.invoke(main, ["data", "export", "synthetic-sem", "--split", "all", "--out", str(out),
                                    "--profile", "smoke"])
    assert exported.exit_code == 0, exported.output
    checked = runner.invoke(main, ["data", "check", str(out)])
    assert checked.exit_code == 0, checked.output


# ---- one set of rules: `harness run` refuses what `harness data check` calls unusable --------------


def _run(root: Path, *extra: str):
    return CliRunner().invoke(main, ["run", "--method", "none", "--budget", "1", "--profile", "smoke", "--quiet",
                                     "--dataset", str(root), "--out", str(root.parent / "run"), *extra])


def _nan_unlabeled(root: Path) -> str:
    nan = particles(70)[0].astype(np.float32)
    nan[3:9, 3:9] = np.nan
    tifffile.imwrite(root / "images" / "nan.tif", nan)
    return "nan.tif"


def _copy_across_pools(root: Path) -> str:
    (root / "images" / "copy.tif").write_bytes((root / "images" / "g0.tif").read_bytes())
    return "copy.tif"


def _no_masks(root: Path) -> str:
    for mask in (root / "masks").iterdir():
        mask.unlink()
    return "no image has a mask"


def _two_labelled(root: Path) -> str:
    for mask in sorted((root / "masks").iterdir())[2:]:
        mask.unlink()
    return "pool(s) empty"


@pytest.mark.parametrize("spoil", [_nan_unlabeled, _copy_across_pools, _no_masks, _two_labelled])
def test_run_refuses_a_folder_the_check_calls_unusable_before_any_training(tmp_path, spoil):
    root = good_folder(tmp_path / "f")
    named = spoil(root)
    assert not check_folder(root).usable
    result = _run(root)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "is not usable" in result.output and named in result.output and "harness data check" in result.output
    assert "fine-tune" not in result.output and not (tmp_path / "run" / "record.json").exists()


def test_run_on_a_usable_folder_remembers_the_verdict(tmp_path):
    from harness.data.cache import cache_root

    root = good_folder(tmp_path / "f")
    first = _run(root)
    assert first.exit_code == 0, first.output
    assert len(list((cache_root() / "folder-checks").glob(f"{FolderDataset(root).identity.key}-*.json"))) == 1


def test_a_78_percent_crop_beyond_the_hash_screen_is_found():
    """A [0:100, 10:110] crop of a 128 px test image can sit 30 bits from it, past the 26-bit
    screen of the crop search; the thumbnail screen still nominates it, the pixels confirm it."""
    from harness.data.leakage import (
        CROP_SCREEN_DISTANCE,
        coarse_crop_score,
        fingerprint,
        leaks_from_fingerprints,
    )
    from harness.data.registry import open_dataset

    dataset = open_dataset("synthetic-sem", profile="smoke")
    manifest = make_manifest(dataset)
    tests = manifest.pools["test"]
    images = {i: dataset.load(i).image for i in tests}
    far = [i for i in tests if images[i].shape == (128, 128)
           and hamming(perceptual_hash(images[i]), perceptual_hash(images[i][0:100, 10:110])) > CROP_SCREEN_DISTANCE]
    assert far, "no test image whose 78% crop moves the hash past the screen: the test would prove nothing"
    victim = far[0]
    crop = images[victim][0:100, 10:110].copy()
    others = [dataset.load(i).image for i in manifest.pools["unlabeled"][:6]]
    pixels = {**images, "crop": crop, **{f"other{k}": o for k, o in enumerate(others)}}
    fingerprints = {i: fingerprint(p) for i, p in pixels.items()}
    assert coarse_crop_score(fingerprints[victim], fingerprints["crop"]) > 0.9
    pools = {"unlabeled": ["crop", *[f"other{k}" for k in range(len(others))]], "train": [], "val": [], "test": tests}
    leaks = leaks_from_fingerprints(fingerprints, manifest.model_copy(update={"pools": pools}), load=pixels.__getitem__)
    assert [(leak.pretrain_id, leak.eval_id) for leak in leaks] == [("crop", victim)]
    assert leaks[0].distance <= 2 and leaks[0].correlation > 0.95


def test_the_leak_search_correlation_equals_skimages_match_template():
    """The leak search computes its normalised cross-correlation itself (faster on its small
    arrays); skimage's match_template is the independent reference, flat regions included."""
    from skimage.feature import match_template as reference

    from harness.data.leakage import match_template

    rng = np.random.default_rng(7)
    for trial in range(60):
        rows, cols = rng.integers(12, 90, 2)
        image = rng.random((rows, cols)).astype(np.float32)
        if trial % 3 == 0:
            image[: rows // 2] = 0.4  # windows without variance score 0 in both
        h, w = rng.integers(4, rows + 1), rng.integers(4, cols + 1)
        y, x = rng.integers(0, rows - h + 1), rng.integers(0, cols - w + 1)
        template = image[y : y + h, x : x + w] + rng.normal(0, 0.05 * (trial % 2), (h, w)).astype(np.float32)
        if float(template.std()) < 0.01:
            continue  # a flat template has no correlation (callers never search with one)
        ours, theirs = match_template(image, template), reference(image, template)
        assert ours.shape == theirs.shape
        # a flat window has no correlation: 0 here; skimage's float32 sums leave ~1e-3 of rounding there
        flat = np.lib.stride_tricks.sliding_window_view(image, (h, w)).std(axis=(2, 3)) < 1e-4
        np.testing.assert_allclose(ours[~flat], theirs[~flat], atol=2e-4)
        assert np.abs(ours[flat]).max(initial=0) < 1e-6
        if trial % 2 == 0:  # an exact crop: both find it where it was cut
            assert np.unravel_index(np.argmax(ours), ours.shape) == (y, x)


def test_a_folder_to_predict_is_checked_as_predict_reads_it(tmp_path):
    """A lab's unlabeled micrographs, plain or in the folder format without masks: 'NOT usable' for a
    run (no masks, no images/ folder), usable for predict; a bad file is named either way, and predict's
    own refusal points at the check that applies."""
    plain = tmp_path / "plain"
    plain.mkdir()
    for i in range(2):
        tifffile.imwrite(plain / f"p{i}.tif", particles(i)[0])
    formatted = good_folder(tmp_path / "formatted", labeled=0, unlabeled=2)
    for folder in (plain, formatted):
        as_run = CliRunner().invoke(main, ["data", "check", str(folder)])
        assert as_run.exit_code == 1, as_run.output
        ok = CliRunner().invoke(main, ["data", "check", "--for", "predict", str(folder)])
        assert ok.exit_code == 0 and "result: usable for harness predict" in ok.output, ok.output
        assert "loaded (to predict: masks not needed)" in ok.output and "pools" not in ok.output
    (plain / "broken.tif").write_bytes(b"II*\x00 not a tiff" * 3)
    bad = CliRunner().invoke(main, ["data", "check", "--for", "predict", str(plain)])
    assert bad.exit_code == 1 and "broken.tif" in bad.output and "NOT usable" in bad.output
    with pytest.raises(HarnessError, match=r"run `harness data check --for predict .*plain` for the full list"):
        FolderDataset(plain, flat=True).records()
