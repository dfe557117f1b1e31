"""Pixel sizes from vendor TIFF tags and resolution tags, and the real Zeiss image from aquami."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tifffile

from harness.data.databar import detect_databar
from harness.data.folder import FolderDataset
from harness.data.tiffmeta import length_to_nm, read_pixel_size
from harness.errors import HarnessError

PIXELS = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)


def cz_sem_text(value: str) -> bytes:
    """A CZ_SEM tag body as Zeiss writes it: unnamed numbers, then KEY / 'Name = value unit' pairs.

    Zeiss stores the micro sign as one Latin-1 byte, so the body is bytes, not 7-bit ASCII.
    """
    lines = ["0", "0", "0", "AP_MAG", "Mag = 50.00 K X", "AP_IMAGE_PIXEL_SIZE", f"Image Pixel Size = {value}", ""]
    return "\r\n".join(lines).encode("latin-1")


def fei_text(pixel_width_m: float) -> str:
    return f"[User]\r\nDate=01/02/2024\r\n[Scan]\r\nPixelWidth={pixel_width_m:g}\r\nPixelHeight={pixel_width_m:g}\r\n"


def write(path: Path, tags: list | None = None, **kwargs) -> Path:
    tifffile.imwrite(path, PIXELS, extratags=tags or [], **kwargs)
    return path


@pytest.mark.parametrize(
    ("value", "expected_nm"),
    [("2.5 nm", 2.5), ("543.0 pm", 0.543), ("1.2 µm", 1200.0), ("0.75 um", 750.0)],
)
def test_zeiss_cz_sem_tag_gives_the_image_pixel_size(tmp_path, value, expected_nm):
    path = write(tmp_path / "zeiss.tif", [(34118, "s", 0, cz_sem_text(value), True)])
    size = read_pixel_size(path)
    assert size.source == "CZ_SEM"
    assert size.nm == pytest.approx(expected_nm)


@pytest.mark.parametrize(("code", "source"), [(34682, "FEI_HELIOS"), (34680, "FEI_SFEG")])
def test_fei_tags_give_the_pixel_width(tmp_path, code, source):
    path = write(tmp_path / "fei.tif", [(code, "s", 0, fei_text(1.25e-8), True)])
    size = read_pixel_size(path)
    assert (size.source, size.nm) == (source, pytest.approx(12.5))


def test_resolution_in_centimetres_is_a_physical_pixel_size(tmp_path):
    # 2 nm per pixel = 5e6 pixels per centimetre
    path = write(tmp_path / "res.tif", resolution=(5e6, 5e6), resolutionunit="CENTIMETER")
    size = read_pixel_size(path)
    assert size.source == "tiff-resolution"
    assert size.nm == pytest.approx(2.0, rel=1e-6)


def test_imagej_unit_with_resolution_is_read(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, PIXELS, imagej=True, resolution=(1 / 0.004, 1 / 0.004), metadata={"unit": "um"})
    size = read_pixel_size(path)
    assert (size.source, size.nm) == ("tiff-resolution", pytest.approx(4.0, rel=1e-4))


def test_print_dpi_is_not_taken_for_a_pixel_size(tmp_path):
    path = write(tmp_path / "dpi.tif", resolution=(72, 72), resolutionunit="INCH")
    size = read_pixel_size(path)
    assert size.nm is None and size.source == "unknown"
    assert "print" in size.note


def test_vendor_tag_without_pixel_size_falls_back_to_resolution(tmp_path):
    tag = (34118, "s", 0, "\r\n".join(["0", "AP_MAG", "Mag = 10 K X", ""]), True)
    path = write(tmp_path / "nopix.tif", [tag], resolution=(1e6, 1e6), resolutionunit="CENTIMETER")
    size = read_pixel_size(path)
    assert (size.source, size.nm) == ("tiff-resolution", pytest.approx(10.0, rel=1e-6))
    alone = read_pixel_size(write(tmp_path / "alone.tif", [tag]))
    assert alone.nm is None and "CZ_SEM" in alone.note


def test_vendor_tag_wins_over_resolution(tmp_path):
    path = write(
        tmp_path / "both.tif",
        [(34682, "s", 0, fei_text(3e-9), True)],
        resolution=(1e6, 1e6),
        resolutionunit="CENTIMETER",
    )
    assert read_pixel_size(path).source == "FEI_HELIOS"


def test_no_tags_means_unknown(tmp_path):
    size = read_pixel_size(write(tmp_path / "plain.tif"))
    assert size.nm is None and size.source == "unknown"


def test_unreadable_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"this is not a tiff")
    with pytest.raises(HarnessError, match="broken.tif"):
        read_pixel_size(path)


def test_length_units():
    assert length_to_nm(1, "Å") == pytest.approx(0.1)
    assert length_to_nm(3, "mm") == pytest.approx(3e6)
    assert length_to_nm(1, "furlong") is None
    assert length_to_nm("n/a", "nm") is None


# ------------------------------------------------------------------------ the real Zeiss image


def aquami_sample() -> Path:
    spec = importlib.util.find_spec("aquami")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("aquami is not installed: it ships the real Zeiss SEM image (pip install aquami==1.1.0)")
    path = Path(next(iter(spec.submodule_search_locations))) / "micrographs" / "Sample.tif"
    if not path.is_file():
        pytest.skip(f"aquami is installed but {path} is missing")
    return path


def test_real_zeiss_image_pixel_size_from_its_cz_sem_tag():
    size = read_pixel_size(aquami_sample())
    assert size.source == "CZ_SEM"
    assert size.nm == pytest.approx(0.543)  # "Image Pixel Size = 543.0 pm"


def test_real_zeiss_image_data_bar_is_detected():
    image = tifffile.imread(aquami_sample())
    assert image.shape == (768, 1024)
    rows = detect_databar(image)
    # the bar starts with a black separator line at row 691 and runs to the bottom
    assert rows == 768 - 691


def test_real_zeiss_image_loads_through_a_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "gold.tif").write_bytes(aquami_sample().read_bytes())
    dataset = FolderDataset(tmp_path)
    row = dataset.index().iloc[0]
    assert (row["id"], row["labeled"], row["modality"], row["length_scale"]) == ("gold", False, "SEM", "high-mag")
    sample = dataset.load("gold")
    assert sample.image.dtype == np.uint8 and sample.image.shape == (768, 1024)
    assert sample.pixel_size_source == "CZ_SEM"
    assert sample.pixel_size_nm == pytest.approx(0.543)
    assert sample.databar_rows == 77 and sample.valid_rows == 691
    # the palette (a grey ramp) is applied: the bar's white background stays 255
    assert sample.image[700, 5] == 255


def test_real_zeiss_image_without_its_tags_reads_the_data_bar_text(tmp_path):
    """Issue: real folders, item 4. The pixels alone (no CZ_SEM tag, no resolution tags): the
    data bar prints "Width = 556.0 nm" over 1024 px, 0.54297 nm/px, against the tag's 0.543."""
    (tmp_path / "images").mkdir()
    tifffile.imwrite(tmp_path / "images" / "gold.tif", tifffile.imread(aquami_sample()))
    with tifffile.TiffFile(tmp_path / "images" / "gold.tif") as tif:
        assert "CZ_SEM" not in tif.pages.first.tags
    sample = FolderDataset(tmp_path).load("gold")
    assert sample.pixel_size_source == "data-bar text"
    assert sample.pixel_size_nm == pytest.approx(556.0 / 1024) == pytest.approx(0.543, rel=0.01)
