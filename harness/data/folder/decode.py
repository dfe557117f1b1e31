"""Reading one file of a folder: headers checked before decoding, grey values, masks as instances."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from harness.data.folder.records import LUMA, PIL_DTYPES, RGB_MASK, Layout
from harness.data.io import LOSSY_FORMATS, check_declared_size, lossy_mask_reason
from harness.data.masks import binary_to_instances, is_binary_mask
from harness.data.tiffmeta import PixelSize, pixel_size_from_tiff, vendor_of
from harness.errors import HarnessError

# --------------------------------------------------------------------------------------- pixels


@dataclass
class Header:
    shape: tuple[int, int]
    dtype: str
    layout: Layout
    pixel_size: PixelSize
    vendor: str | None


class FileProblem(HarnessError):
    """A HarnessError about one file that also keeps the bare reason, for problem lists."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def _fail(path: Path, reason: str) -> FileProblem:
    return FileProblem(path, reason)


def _reason(err: HarnessError) -> str:
    return err.reason if isinstance(err, FileProblem) else str(err)


@contextmanager
def quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's log warnings while reading: problems are reported as :class:`Problem`."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.ERROR + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise _fail(path, "file not found")
    if path.stat().st_size == 0:
        raise _fail(path, "file is empty (0 bytes)")


def _tiff_layout(page: tifffile.TiffPage, pages: int, path: Path) -> Layout:
    if pages > 1:
        raise _fail(path, f"is a 3-D stack of {pages} images; harness needs one 2-D image per file")
    if getattr(page, "imagedepth", 1) > 1:
        raise _fail(path, f"is a 3-D volume ({page.imagedepth} slices); harness needs one 2-D image per file")
    photometric = int(page.photometric)
    samples = int(page.samplesperpixel)
    if photometric == 3:
        return "palette"
    if photometric in (2, 6) and samples in (3, 4):
        return "rgb"
    if photometric in (0, 1) and samples <= 2:  # gray, optionally with alpha
        return "gray"
    raise _fail(path, f"has {samples} samples per pixel (photometric {photometric}); expected grayscale or RGB")


def _main_pages(tif: tifffile.TiffFile) -> int:
    """Full-resolution pages of the first page's size (thumbnails and pyramid levels excluded)."""
    first = tif.pages.first
    count = 0
    for page in tif.pages:
        if getattr(page, "subfiletype", 0) & 1:  # reduced-resolution copy
            continue
        if getattr(page, "shape", None) == first.shape:
            count += 1
    return count


def read_header(path: Path) -> Header:
    """Shape, type, layout and recorded pixel size of an image file, without decoding pixels."""
    _check_file(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with quiet_tifffile(), tifffile.TiffFile(path) as tif:
                if len(tif.pages) == 0:
                    raise _fail(path, "cannot be read as an image: the TIFF holds no image")
                page = tif.pages.first
                check_declared_size(path, int(page.imagelength), int(page.imagewidth))
                layout = _tiff_layout(page, _main_pages(tif), path)
                return Header(
                    shape=(int(page.imagelength), int(page.imagewidth)),
                    dtype=str(page.dtype),
                    layout=layout,
                    pixel_size=pixel_size_from_tiff(tif),
                    vendor=vendor_of(tif),
                )
        with Image.open(path) as im:
            check_declared_size(path, im.size[1], im.size[0])
            frames = int(getattr(im, "n_frames", 1))
            if frames > 1:
                raise _fail(path, f"is a stack of {frames} frames; harness needs one 2-D image per file")
            mode = im.mode
            png_layout: Layout = (
                "palette" if mode == "P" else "rgb" if mode in ("RGB", "RGBA", "CMYK", "YCbCr") else "gray"
            )
            dtype = PIL_DTYPES.get(mode, "uint8")
            return Header((im.size[1], im.size[0]), dtype, png_layout, PixelSize(nm=None), None)
    except HarnessError:
        raise
    except Exception as err:
        raise _fail(path, f"cannot be read as an image ({type(err).__name__}: {err})") from err


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """The one RGB -> grayscale rule (see the module docstring); alpha is dropped."""
    channels = rgb[..., :3]
    if (channels[..., 0] == channels[..., 1]).all() and (channels[..., 0] == channels[..., 2]).all():
        return np.ascontiguousarray(channels[..., 0])
    luma = channels.astype(np.float64) @ LUMA
    if np.issubdtype(rgb.dtype, np.integer):
        info = np.iinfo(rgb.dtype)
        return np.clip(np.rint(luma), info.min, info.max).astype(rgb.dtype)
    return luma.astype(np.float32)


def _apply_palette(indices: np.ndarray, colormap: np.ndarray) -> np.ndarray:
    """Look up a TIFF palette (3 x 2**bits, 16-bit entries); 8-bit ramps come back as uint8."""
    rgb = np.moveaxis(colormap[:, indices], 0, -1)
    if not (rgb % 257).any():  # entries are v * 257: an 8-bit palette stored in 16 bits
        rgb = (rgb // 257).astype(np.uint8)
    return rgb_to_gray(rgb)


def _normalise_dtype(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if array.dtype in (np.uint8, np.uint16, np.float32):
        return array
    if np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    raise _fail(path, f"has pixels of type {array.dtype}; expected integer or float grey values")


def read_gray(path: Path) -> np.ndarray:
    """Pixels of an image file as a 2-D grayscale array (see the module docstring for the rules)."""
    header = read_header(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with quiet_tifffile(), tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                data = np.asarray(page.asarray())
                if header.layout == "palette":
                    data = _apply_palette(data, np.asarray(page.colormap))
                elif header.layout == "rgb":
                    if page.axes.startswith("S"):  # planar RGB
                        data = np.moveaxis(data, 0, -1)
                    data = rgb_to_gray(data)
                elif data.ndim == 3:  # gray + alpha
                    data = data[..., 0] if page.axes.endswith("S") else data[0]
                if int(page.photometric) == 0 and np.issubdtype(data.dtype, np.unsignedinteger):
                    data = np.iinfo(data.dtype).max - data  # MinIsWhite
        else:
            with Image.open(path) as im:
                if im.mode in ("P", "CMYK", "YCbCr"):
                    im = im.convert("RGB")
                elif im.mode in ("LA", "1"):
                    im = im.convert("L")
                data = np.asarray(im)
                if data.ndim == 3:
                    data = rgb_to_gray(data)
    except HarnessError:
        raise
    except Exception as err:
        raise _fail(path, f"pixels cannot be decoded ({type(err).__name__}: {err})") from err
    if data.ndim != 2:
        raise _fail(path, f"decodes to shape {data.shape}, not a 2-D image")
    return _normalise_dtype(data, path)


def read_mask_raw(path: Path) -> np.ndarray:
    """A mask file's stored values (palette indices stay indices); must be single-channel 2-D."""
    header = read_header(path)
    if header.layout == "rgb":
        raise _fail(path, RGB_MASK)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with quiet_tifffile(), tifffile.TiffFile(path) as tif:
                data = np.asarray(tif.pages.first.asarray())
        else:
            with Image.open(path) as im:
                if im.format in LOSSY_FORMATS:  # whatever the file's name says: compression blurs label ids
                    raise _fail(path, lossy_mask_reason(im.format))
                data = np.asarray(im.convert("L") if im.mode == "1" else im)
    except HarnessError:
        raise
    except Exception as err:
        raise _fail(path, f"pixels cannot be decoded ({type(err).__name__}: {err})") from err
    if data.ndim != 2:
        raise _fail(path, f"mask has shape {data.shape}; expected a 2-D label image")
    return data


def mask_to_instances(raw: np.ndarray, connectivity: int, path: Path) -> tuple[np.ndarray, str]:
    """int32 instance labels from a stored mask, and its kind: instance, binary or empty."""
    values = raw
    if np.issubdtype(raw.dtype, np.floating):
        if not np.isfinite(raw).all():
            raise _fail(path, "mask has NaN or infinite values")
        if (raw != np.round(raw)).any():
            raise _fail(path, "mask has non-integer values; expected integer instance labels")
    elif raw.dtype == np.bool_:
        values = raw.astype(np.uint8)
    elif not np.issubdtype(raw.dtype, np.integer):
        raise _fail(path, f"mask has values of type {raw.dtype}; expected integer labels")
    low, high = values.min(), values.max()
    if low < 0:
        raise _fail(path, f"mask has negative labels (minimum {low})")
    if high > np.iinfo(np.int32).max:
        raise _fail(path, f"mask label {high} does not fit in 32 bits")
    if not values.any():
        return np.zeros(values.shape, dtype=np.int32), "empty"
    if is_binary_mask(values):  # the one rule of harness.data.masks
        return binary_to_instances(values, connectivity), "binary"
    return values.astype(np.int32), "instance"
