"""Reading and writing images and label images in the folder format.

Folder format (written by ``harness data export``, read by folder datasets)::

    DIR/images/<stem>.tif|.tiff|.png     grayscale micrographs, 8- or 16-bit (RGB is converted)
    DIR/masks/<stem>.tif|.tiff|.png      instance labels (0 = background), optional per image
    DIR/metadata.csv                     columns: image (file name in images/), pixel_size_nm,
                                         and optionally modality, length_scale, magnification,
                                         databar_rows, split

Pixels are read with tifffile (TIFF) and Pillow (everything else); torchvision.io is not used.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from harness.errors import HarnessError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
METADATA_FILE = "metadata.csv"


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file unique to this process in the same folder,
    flushed and renamed over it at the end: a reader sees the old file or the new one, never half
    of one. The one atomic write of the harness (text, arrays, weights, reports)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def read_array(path: str | Path) -> np.ndarray:
    """Pixels of an image file as stored (no scaling); a clear error when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise HarnessError(f"{path}: file is empty (0 bytes)")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            return np.asarray(tifffile.imread(path))
        with Image.open(path) as im:
            return np.asarray(im)
    except Exception as err:  # noqa: BLE001 - any decoder failure is the same problem for the user
        raise HarnessError(f"{path}: cannot be read as an image ({type(err).__name__}: {err})") from err


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write a 2-D uint8/uint16 micrograph; TIFF unless the suffix says PNG. Byte-stable."""
    _write(Path(path), image, (np.uint8, np.uint16))


def write_label_image(path: str | Path, labels: np.ndarray) -> None:
    """Write an instance label image as uint16 (uint32 TIFF when ids exceed 65535)."""
    labels = np.asarray(labels)
    if labels.min(initial=0) < 0:
        raise HarnessError(f"{path}: negative labels cannot be written")
    dtype = np.uint16 if labels.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
    _write(Path(path), labels.astype(dtype), (np.uint16, np.uint32))


def _write(path: Path, array: np.ndarray, dtypes: tuple) -> None:
    if array.ndim != 2 or array.dtype not in dtypes:
        raise HarnessError(f"{path}: expected a 2-D {'/'.join(np.dtype(d).name for d in dtypes)} array")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        Image.fromarray(array).save(path)
    else:
        # no timestamps or software tags, so that the same pixels give the same bytes
        tifffile.imwrite(path, array, photometric="minisblack", metadata=None, software=None)
