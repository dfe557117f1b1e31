"""Folder datasets built on the fly: formats, masks, pixel sizes, data bars, identity; intensity."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from harness.data.databar import detect_databar, resolve_databar
from harness.data.folder import FolderDataset, rgb_to_gray
from harness.data.intensity import to_unit_float
from harness.data.registry import open_dataset
from harness.data.splits import make_manifest
from harness.errors import HarnessError

SIZE = 48


def micrograph(seed: int, shape: tuple[int, int] = (SIZE, SIZE), dtype=np.uint8) -> np.ndarray:
    """A noisy image with a few bright discs: no row repeats one value much."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = rng.normal(70, 12, shape)
    for _ in range(4):
        cy, cx, r = rng.uniform(8, shape[0] - 8), rng.uniform(8, shape[1] - 8), rng.uniform(3, 7)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] += 100
    top = 255 if dtype == np.uint8 else 4000
    return np.clip(image * (top / 255), 0, top).astype(dtype)


def with_databar(image: np.ndarray, rows: int) -> np.ndarray:
    """Burn a Zeiss-like data bar: black separator line, white band, a few dark 'text' pixels."""
    out = image.copy()
    height, width = out.shape
    out[height - rows] = 0
    out[height - rows + 1 :] = np.iinfo(out.dtype).max if out.dtype.kind == "u" else out.max()
    out[height - rows // 2, 3 : width // 3 : 2] = 0  # a line of text
    return out


def make_folder(root: Path, images: dict[str, np.ndarray], masks: dict[str, np.ndarray] | None = None,
                csv: str | None = None) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name, array in images.items():
        tifffile.imwrite(root / "images" / name, array)
    if masks:
        (root / "masks").mkdir(exist_ok=True)
        for name, array in masks.items():
            tifffile.imwrite(root / "masks" / name, array)
    if csv is not None:
        (root / "metadata.csv").write_text(csv)
    return root


def disc_mask(seed: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint16)
    mask[5:12, 5:12] = 1
    mask[20 + seed % 5 : 30, 20:30] = 2
    return mask


# ----------------------------------------------------------------------------------- datasets


def test_index_pools_pixel_sizes_and_manifest(tmp_path):
    images = {f"a{i}.tif": micrograph(i) for i in range(10)}
    images["pool.tif"] = micrograph(99)
    masks = {f"a{i}.tif": disc_mask(i) for i in range(10)}
    csv = "image,pixel_size_nm,modality,split,notes\na0.tif,1.0,tem,test,x\na1.tif,5,SEM,,\npool.tif,,,,\n"
    dataset = FolderDataset(make_folder(tmp_path / "mine", images, masks, csv))
    index = dataset.index().set_index("id")
    assert list(index.columns) == ["labeled", "pixel_size_nm", "length_scale", "modality", "split"]
    assert not index.loc["pool", "labeled"] and index.loc["a3", "labeled"]
    assert index.loc["a0", "pixel_size_nm"] == 1.0 and index.loc["a0", "modality"] == "TEM"
    assert index.loc["a1", "length_scale"] == "mid-mag"
    assert index.loc["a5", "length_scale"] == "unknown"
    assert index.loc["a0", "split"] == "test"
    assert dataset.split_fractions == {"unlabeled": 0.0, "train": 0.6, "val": 0.2, "test": 0.2}
    manifest = make_manifest(dataset, split_seed=3)
    assert manifest.pools["unlabeled"] == ["pool"]
    assert "a0" in manifest.pools["test"]
    assert sum(len(v) for v in manifest.pools.values()) == 11
    assert make_manifest(dataset, split_seed=3).hash == manifest.hash
    assert dataset.identity.name == "mine" and dataset.identity.version == "folder-9"


def test_a_declared_length_scale_is_the_bin_of_a_loaded_image_as_of_its_index_row(tmp_path):
    """An image without a pixel size goes to the bin metadata.csv declares: in the index (splits), in the
    loaded sample (a run's per-bin scores) and in `harness evaluate` alike; a pixel size outranks it."""
    images = {f"a{i}.tif": micrograph(i) for i in range(3)}
    csv = "image,pixel_size_nm,length_scale\na0.tif,,high-mag\na1.tif,20,high-mag\na2.tif,,\n"
    dataset = FolderDataset(make_folder(tmp_path / "d", images, {n: disc_mask(i) for i, n in enumerate(images)}, csv))
    index = dataset.index().set_index("id")["length_scale"].to_dict()
    loaded = {i: dataset.load(i).length_scale for i in ("a0", "a1", "a2")}
    assert loaded == {"a0": "high-mag", "a1": "low-mag", "a2": "unknown"} == index


def test_registry_routes_a_folder_path(tmp_path):
    root = make_folder(tmp_path / "reg", {"x.tif": micrograph(1)})
    dataset = open_dataset(str(root))
    assert isinstance(dataset, FolderDataset)
    assert dataset.describe()["images"] == 1


def test_pixel_size_from_vendor_tags_and_metadata_precedence(tmp_path):
    root = tmp_path / "tags"
    (root / "images").mkdir(parents=True)
    cz = "\r\n".join(["0", "AP_IMAGE_PIXEL_SIZE", "Image Pixel Size = 3.0 nm", ""])
    fei = "[Scan]\r\nPixelWidth=2e-08\r\n"
    tifffile.imwrite(root / "images" / "cz.tif", micrograph(1), extratags=[(34118, "s", 0, cz, True)])
    tifffile.imwrite(root / "images" / "fei.tif", micrograph(2), extratags=[(34682, "s", 0, fei, True)])
    tifffile.imwrite(root / "images" / "sfeg.tif", micrograph(3), extratags=[(34680, "s", 0, fei, True)])
    tifffile.imwrite(root / "images" / "over.tif", micrograph(4), extratags=[(34118, "s", 0, cz, True)])
    tifffile.imwrite(root / "images" / "none.tif", micrograph(5))
    (root / "metadata.csv").write_text("image,pixel_size_nm\nover.tif,7.5\n")
    dataset = FolderDataset(root)
    got = {i: (dataset.load(i).pixel_size_nm, dataset.load(i).pixel_size_source) for i in dataset.index()["id"]}
    assert got["cz"] == (pytest.approx(3.0), "CZ_SEM")
    assert got["fei"] == (pytest.approx(20.0), "FEI_HELIOS")
    assert got["sfeg"] == (pytest.approx(20.0), "FEI_SFEG")
    assert got["over"] == (7.5, "metadata.csv")
    assert got["none"] == (None, "unknown")
    assert dataset.load("cz").modality == "SEM" and dataset.load("none").modality == "unknown"
    # the disagreement between metadata.csv and the tag is reported, not silently resolved
    warnings = [p for p in dataset.scan().all_problems() if p.file == "images/over.tif"]
    assert warnings and "differs" in warnings[0].reason and warnings[0].severity == "warning"


def test_sixteen_bit_and_rgb_images(tmp_path):
    deep = micrograph(3, dtype=np.uint16)
    rgb = np.stack([micrograph(4), micrograph(5), micrograph(6)], axis=-1)
    gray_rgb = np.repeat(micrograph(7)[..., None], 3, axis=-1)
    root = make_folder(tmp_path / "rgb", {"deep.tif": deep, "rgb.tif": rgb, "grayrgb.tif": gray_rgb})
    tifffile.imwrite(root / "images" / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb",
                     planarconfig="separate")
    Image.fromarray(rgb).save(root / "images" / "png.png")
    dataset = FolderDataset(root)
    loaded = dataset.load("deep")
    assert loaded.image.dtype == np.uint16 and np.array_equal(loaded.image, deep)
    luma = np.rint(rgb.astype(float) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    for name in ("rgb", "planar", "png"):
        image = dataset.load(name).image
        assert image.ndim == 2 and image.dtype == np.uint8
        assert np.array_equal(image, luma), name
    assert np.array_equal(dataset.load("grayrgb").image, micrograph(7))


def test_palette_images_are_looked_up(tmp_path):
    indices = micrograph(8)
    inverted = np.tile((255 - np.arange(256, dtype=np.uint16)) * 257, (3, 1))
    root = tmp_path / "pal"
    (root / "images").mkdir(parents=True)
    tifffile.imwrite(root / "images" / "p.tif", indices, photometric="palette", colormap=inverted)
    image = FolderDataset(root).load("p").image
    assert image.dtype == np.uint8 and np.array_equal(image, 255 - indices)


def test_rgb_to_gray_keeps_16_bit_and_drops_alpha():
    rgba = np.zeros((2, 2, 4), np.uint16)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 1000, 2000, 3000, 65535
    gray = rgb_to_gray(rgba)
    assert gray.dtype == np.uint16 and gray[0, 0] == round(0.299 * 1000 + 0.587 * 2000 + 0.114 * 3000)


def test_binary_masks_become_instances_with_the_stated_connectivity(tmp_path):
    binary = np.zeros((SIZE, SIZE), np.uint8)
    binary[5:10, 5:10] = 255
    binary[10:15, 10:15] = 255  # touches the first square at one corner only
    binary[30:40, 30:40] = 255
    root = make_folder(tmp_path / "bin", {"b.tif": micrograph(1)}, {"b.tif": binary})
    eight = FolderDataset(root, connectivity=8).load("b").mask
    four = FolderDataset(root, connectivity=4).load("b").mask
    assert eight.dtype == np.int32 and len(np.unique(eight[eight > 0])) == 2
    assert len(np.unique(four[four > 0])) == 3
    assert FolderDataset(root, connectivity=8).identity != FolderDataset(root, connectivity=4).identity


def test_instance_masks_are_kept_as_they_are(tmp_path):
    mask = disc_mask(0)
    mask[40:44, 40:44] = 1  # same id twice: an instance label image says it is one particle
    root = make_folder(tmp_path / "inst", {"i.tif": micrograph(2)}, {"i.tif": mask})
    loaded = FolderDataset(root).load("i").mask
    assert np.array_equal(loaded, mask.astype(np.int32))


def test_data_bar_from_detection_metadata_and_crop_bottom(tmp_path):
    image = with_databar(micrograph(3), 10)
    mask = disc_mask(3)
    mask[-6:, :6] = 3  # a label inside the data bar is dropped
    short_mask = disc_mask(4)[: SIZE - 8]  # covers only the rows above an 8-row bar
    root = make_folder(
        tmp_path / "bar",
        {"det.tif": image, "meta.tif": micrograph(4)},
        {"det.tif": mask, "meta.tif": short_mask},
        "image,databar_rows\nmeta.tif,8\n",
    )
    dataset = FolderDataset(root)
    detected = dataset.load("det")
    assert detected.databar_rows == 10
    assert not detected.mask[-10:].any() and 3 not in detected.mask
    from_meta = dataset.load("meta")
    assert from_meta.databar_rows == 8 and from_meta.mask.shape == (SIZE, SIZE)
    assert np.array_equal(from_meta.mask[: SIZE - 8], short_mask.astype(np.int32))
    cropped = FolderDataset(root, crop_bottom=12)
    assert cropped.load("det").databar_rows == 12
    with pytest.raises(HarnessError, match="mask is 40x48 pixels but the image is 48x48"):
        cropped.load("meta")  # the short mask fits an 8-row bar only
    assert FolderDataset(root, crop_bottom=0).load("det").databar_rows == 0


def test_identity_follows_the_content(tmp_path):
    root = make_folder(tmp_path / "ident", {"a.tif": micrograph(1), "b.tif": micrograph(2)})
    first = FolderDataset(root).identity
    assert FolderDataset(root).identity == first
    altered = micrograph(1)
    altered[0, 0] ^= 1  # same size, one bit changed
    tifffile.imwrite(root / "images" / "a.tif", altered)
    assert FolderDataset(root).identity != first
    assert FolderDataset(root, crop_bottom=3).identity != FolderDataset(root).identity


@pytest.mark.parametrize("in_place", [True, False])
def test_identity_follows_content_replaced_with_the_same_size_and_mtime(tmp_path, in_place):
    """The digest memo must not trust size + mtime: a restore or ``touch -r`` sets them back."""
    root = make_folder(tmp_path / "ident", {"a.tif": micrograph(1), "b.tif": micrograph(2)})
    image = root / "images" / "a.tif"
    first = FolderDataset(root).identity
    before = image.stat()
    altered = micrograph(1)
    altered[5, 5] ^= 1
    if in_place:
        tifffile.imwrite(image, altered)
    else:  # written beside it and renamed over it, as editors and rsync do
        tifffile.imwrite(root / "images" / ".a.tif.new", altered)
        os.replace(root / "images" / ".a.tif.new", image)
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert image.stat().st_size == before.st_size and image.stat().st_mtime_ns == before.st_mtime_ns
    assert FolderDataset(root).identity != first


def test_a_folder_with_errors_refuses_to_run_and_names_the_file(tmp_path):
    root = make_folder(tmp_path / "bad", {"good.tif": micrograph(1)})
    (root / "images" / "empty.tif").write_bytes(b"")
    with pytest.raises(HarnessError, match=r"images/empty.tif: file is empty \(0 bytes\).*harness data check"):
        FolderDataset(root).index()


def test_bad_options_and_paths(tmp_path):
    with pytest.raises(HarnessError, match="not a folder"):
        FolderDataset(tmp_path / "missing")
    with pytest.raises(HarnessError, match="connectivity"):
        FolderDataset(tmp_path, connectivity=6)
    with pytest.raises(HarnessError, match="crop-bottom"):
        FolderDataset(tmp_path, crop_bottom=-1)
    root = make_folder(tmp_path / "ok", {"a.tif": micrograph(1)})
    with pytest.raises(HarnessError, match="no image with id 'zzz'"):
        FolderDataset(root).load("zzz")


# ------------------------------------------------------------------------------------ data bar


def test_detect_databar_exact_and_no_false_alarm():
    for rows in (6, 12, 16):
        assert detect_databar(with_databar(micrograph(rows, (60, 50)), rows)) == rows
    assert detect_databar(micrograph(1, (60, 50))) == 0
    assert detect_databar(np.zeros((60, 50), np.uint8)) == 0  # blank image, not a bar
    image = with_databar(micrograph(2, (60, 50)), 10)
    image[-1] = np.random.default_rng(0).integers(0, 255, 50)  # a noisy last row, as in the Zeiss file
    assert detect_databar(image) == 10


def figure_crop(seed: int, background: int, shape=(120, 100)) -> np.ndarray:
    """A published figure's crop: sparse particles on a flat dark or white surround, a panel letter
    near the bottom; no instrument bar."""
    rng = np.random.default_rng(seed)
    image = np.full(shape, background, dtype=np.uint8)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for cy, cx, r in ((20, 20, 9), (50, 70, 11), (85, 30, 8), (112, 60, 7), (100, 88, 6)):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        image[disc] = np.clip(rng.normal(255 - background, 20, disc.sum()), 0, 255).astype(np.uint8)
    image[110:116, 4:9] = 255 - background  # a panel letter in the corner
    return image


@pytest.mark.parametrize("background", [0, 255])
def test_a_figure_crop_with_a_flat_surround_has_no_data_bar(background):
    # its bottom rows are flat, like a bar's, but the surround goes on above them: no sharp edge
    assert detect_databar(figure_crop(0, background)) == 0
    # a micrograph with a real bar burnt in: found, to the row
    assert detect_databar(with_databar(micrograph(4, (120, 100)), 12)) == 12


def test_resolve_databar_precedence_and_errors():
    image = with_databar(micrograph(5), 10)
    assert resolve_databar(image, None, None) == (10, "detected")
    assert resolve_databar(image, None, 4) == (4, "metadata.csv")
    assert resolve_databar(image, 2, 4) == (2, "crop-bottom")
    assert resolve_databar(micrograph(5), None, None) == (0, "none")
    with pytest.raises(HarnessError, match="leaves none"):
        resolve_databar(image, SIZE, None)


# ----------------------------------------------------------------------------------- intensity


def test_eight_bit_is_divided_by_255():
    image = np.array([[0, 51], [204, 255]], np.uint8)
    np.testing.assert_allclose(to_unit_float(image), image / 255.0, rtol=1e-6)


def test_sixteen_bit_is_stretched_per_image_not_by_65535():
    image = np.linspace(1000, 5000, 400).reshape(20, 20).astype(np.uint16)
    unit = to_unit_float(image)
    assert unit.dtype == np.float32 and unit.min() == 0.0 and unit.max() == 1.0
    assert np.median(unit) == pytest.approx(0.5, abs=0.02)
    # bit depth does not matter: the same contrast in float or uint16 scales identically
    np.testing.assert_allclose(to_unit_float(image.astype(np.float64) / 7), unit, atol=1e-5)


def test_percentiles_ignore_the_data_bar_and_outliers():
    image = np.tile(np.arange(100, 200, dtype=np.uint16), (20, 1))
    image[-4:] = 65535  # data bar
    image[0, 0] = 60000  # one hot pixel, clipped by the 99.5th percentile
    unit = to_unit_float(image, databar_rows=4)
    assert unit[5, 0] == 0.0 and unit[5, -1] == pytest.approx(1.0, abs=0.01)
    assert unit[10, 50] == pytest.approx(0.5, abs=0.02)


def test_nan_is_an_error_and_constant_is_zero():
    image = np.ones((4, 4), np.float32)
    assert not to_unit_float(image).any()
    image[1, 1] = np.nan
    with pytest.raises(HarnessError, match="NaN"):
        to_unit_float(image)
    with pytest.raises(HarnessError, match="2-D"):
        to_unit_float(np.zeros((2, 2, 3), np.uint8))


def _tiff_claiming(path: Path, height: int, width: int) -> Path:
    """A few hundred bytes of TIFF whose header declares ``height`` x ``width`` 8-bit pixels."""
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        for name, value in (("ImageLength", height), ("ImageWidth", width)):
            tag = tags[name]
            fmt = "<I" if tag.dtype == 4 else "<H"
            data[tag.valueoffset:tag.valueoffset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))
    return path


def test_a_header_claiming_a_huge_image_is_refused_before_decoding(tmp_path):
    from harness.data.folder import read_gray, read_mask_raw
    from harness.data.io import read_array

    bomb = _tiff_claiming(tmp_path / "bomb.tif", 100_000, 100_000)
    assert bomb.stat().st_size < 1000
    for reader in (read_gray, read_mask_raw, read_array):
        with pytest.raises(HarnessError, match=r"bomb.tif: declares 100000 x 100000 pixels \(10000 Mpx\), more than"):
            reader(bomb)
    root = make_folder(tmp_path / "folder", {"ok.tif": micrograph(1)})
    _tiff_claiming(root / "images" / "huge.tif", 100_000, 100_000)
    with pytest.raises(HarnessError, match="huge.tif: declares 100000 x 100000"):
        FolderDataset(root).index()


@pytest.mark.parametrize("kind", ["0-1", "0-255", "0-7", "bool", "instance"])
def test_one_mask_rule_for_training_data_check_and_evaluate(tmp_path, kind):
    """The same mask gives the same particles through the three roads that read masks: the folder
    dataset (training targets), `harness data check` and `harness evaluate` (issue: one home per
    concept). Three squares, two of them touching at a corner: 8-connected, a foreground mask
    holds 2 particles; an instance mask keeps its 3 ids."""
    from harness.data.check import check_folder
    from harness.metrics.folders import evaluate_folders

    mask = np.zeros((SIZE, SIZE), np.uint8)
    squares = [(slice(5, 10), slice(5, 10)), (slice(10, 15), slice(10, 15)), (slice(30, 40), slice(30, 40))]
    for k, box in enumerate(squares, start=1):
        mask[box] = {"0-1": 1, "0-255": 255, "0-7": 7, "bool": 1, "instance": 10 * k}[kind]
    stored = mask.astype(bool) if kind == "bool" else mask
    expected = 3 if kind == "instance" else 2
    images = {f"m{i}.tif": micrograph(i) for i in range(4)}
    root = make_folder(tmp_path / kind, images, {name: stored for name in images})

    trained = FolderDataset(root).load("m0").mask
    assert len(np.unique(trained[trained > 0])) == expected
    report = check_folder(root)
    assert {r.particles for r in report.images} == {expected}
    scored = evaluate_folders(root, root)
    assert {(r.scores.n_true, r.scores.n_pred) for r in scored.images} == {(expected, expected)}
    assert {r.truth_was_binary for r in scored.images} == {kind != "instance"}
