"""Folder datasets: a user's own micrographs in the folder format of :mod:`harness.data.io`.

``images/<stem>.tif|.tiff|.png`` are the micrographs; ``masks/<stem>.*`` (same stem, optional)
their labels; ``metadata.csv`` (optional) has one row per image with the columns ``image`` (file
name in ``images/``) and any of ``pixel_size_nm``, ``modality``, ``magnification``,
``length_scale``, ``databar_rows`` and ``split``; other columns are ignored.

How a folder becomes samples:

- **Pools.** Images without a mask form the unlabeled pretraining pool; labeled images are
  split 60 / 20 / 20 into train / val / test by the split manifest, unless ``split`` fixes them.
- **Pixel size.** ``metadata.csv`` first, then the file's own tags (:mod:`~harness.data.tiffmeta`:
  Zeiss ``CZ_SEM``, FEI ``FEI_HELIOS``/``FEI_SFEG``, TIFF resolution), then what the image prints
  (:mod:`~harness.data.scalebar`: a data bar's field width, a labelled scale bar); without any,
  sizes are in pixels and the length-scale bin is ``unknown``. The source is kept on every sample.
- **Grey values.** Pixels are kept as stored (uint8, uint16 or float32; other integer types
  become float32). RGB and palette images become grayscale one way: when the three channels
  are equal, that channel; otherwise the ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``,
  rounded back to the stored type. Alpha is dropped; MinIsWhite TIFFs are inverted.
- **Masks.** Instance label images (0 = background) are used as they are. A mask with a single
  non-zero value is binary: its connected components (``connectivity`` 4 or 8) become the
  particles, so touching particles merge. A mask that covers only the rows above the data bar
  is padded with background.
- **Data bar** (:mod:`~harness.data.databar`): ``crop_bottom``, else ``databar_rows`` in
  ``metadata.csv``, else detected. Labels inside it are dropped.

Every problem is collected with the file and the reason (:class:`Problem`), so that
``harness data check`` can list them all; the dataset itself refuses to run while any error
remains.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import tifffile
from PIL import Image
from pydantic import BaseModel, ConfigDict

from harness.data import scalebar
from harness.data.base import INDEX_COLUMNS, Dataset, DatasetIdentity, stable_hash
from harness.data.cache import cache_root
from harness.data.databar import resolve_databar
from harness.data.io import (
    IMAGE_SUFFIXES,
    METADATA_FILE,
    check_declared_size,
    link_problem,
    separator_hint,
    stem_key,
    write_text_atomic,
)
from harness.data.masks import CONNECTIVITIES, binary_to_instances, is_binary_mask
from harness.data.parallel import map_in_processes
from harness.data.sample import MODALITIES, Sample
from harness.data.scales import SCALE_NAMES, UNKNOWN_SCALE, length_scale_of
from harness.data.splits import POOLS
from harness.data.tiffmeta import PLAUSIBLE_NM, UNKNOWN, PixelSize, pixel_size_from_tiff, vendor_of
from harness.errors import HarnessError

IMAGES_DIR = "images"
MASKS_DIR = "masks"
FOLDER_VERSION = "folder-1"
SPLIT_FRACTIONS = {"unlabeled": 0.0, "train": 0.6, "val": 0.2, "test": 0.2}
LUMA = np.array([0.299, 0.587, 0.114])
#: metadata.csv and tag pixel sizes further apart than this share are reported.
PIXEL_SIZE_TOLERANCE = 0.02
PIL_DTYPES = {"I;16": "uint16", "I;16B": "uint16", "I;16L": "uint16", "I": "int32", "F": "float32"}
RGB_MASK = "mask is RGB; save instance labels or a binary mask as a single-channel image"

Severity = Literal["error", "warning"]
Layout = Literal["gray", "rgb", "palette"]


class Problem(BaseModel):
    """One thing wrong with a folder: the file (relative to the folder) and why."""

    model_config = ConfigDict(frozen=True)

    file: str
    reason: str
    severity: Severity = "error"
    code: str | None = None  # a kind some callers treat apart: "leak" (allowed by --allow-leakage)

    def line(self) -> str:
        return f"{self.severity:<8} {self.file}: {self.reason}"


class ImageRecord(BaseModel):
    """What the headers and metadata.csv say about one image (no pixels read)."""

    model_config = ConfigDict(frozen=True)

    id: str
    image: str  # path relative to the folder
    mask: str | None
    shape: tuple[int, int]
    dtype: str
    layout: Layout
    pixel_size_nm: float | None
    pixel_size_source: str
    modality: str
    length_scale: str
    split: str | None
    databar_rows: int | None  # None: detect when loading
    databar_source: str | None
    magnification: float | None = None
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


class FolderScan(BaseModel):
    """The result of reading a folder's listing, metadata.csv and file headers."""

    root: str
    records: list[ImageRecord]
    problems: list[Problem]  # folder-level problems (listing, metadata.csv, stray masks)

    def all_problems(self) -> list[Problem]:
        return [*self.problems, *(p for r in self.records for p in r.problems)]

    def errors(self) -> list[Problem]:
        return [p for p in self.all_problems() if p.severity == "error"]


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
                data = np.asarray(im.convert("L") if im.mode == "1" else im)
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


# ------------------------------------------------------------------------------------- metadata


@dataclass
class _MetaRow:
    line: int
    pixel_size_nm: float | None = None
    modality: str | None = None
    length_scale: str | None = None
    magnification: float | None = None
    databar_rows: int | None = None
    split: str | None = None
    problems: list[Problem] = field(default_factory=list)


def _positive_float(text: str, column: str, where: str) -> tuple[float | None, Problem | None]:
    try:
        value = float(text)
    except ValueError:
        return None, Problem(file=METADATA_FILE, reason=f"{where}: {column} {text!r} is not a number")
    if not math.isfinite(value) or value <= 0:
        return None, Problem(file=METADATA_FILE, reason=f"{where}: {column} must be a positive number, got {text!r}")
    return value, None


def parse_metadata_row(row: dict[str, str], line: int, name: str) -> _MetaRow:
    """One row of a ``metadata.csv`` (line ``line``, describing image ``name``): its values, each
    checked, and one problem per bad value."""
    where = f"line {line} ({name})"
    parsed = _MetaRow(line=line)

    def cell(column: str) -> str:
        return str(row.get(column, "") or "").strip()

    if text := cell("pixel_size_nm"):
        parsed.pixel_size_nm, problem = _positive_float(text, "pixel_size_nm", where)
        parsed.problems += [problem] if problem else []
    if text := cell("magnification"):
        parsed.magnification, problem = _positive_float(text.rstrip("xX").strip(), "magnification", where)
        parsed.problems += [problem] if problem else []
    if text := cell("modality"):
        canonical = {m.lower(): m for m in MODALITIES}.get(text.lower())
        if canonical is None:
            parsed.problems.append(
                Problem(file=METADATA_FILE, reason=f"{where}: modality {text!r} is not one of {', '.join(MODALITIES)}")
            )
        parsed.modality = canonical
    if text := cell("length_scale"):
        if text in (*SCALE_NAMES, UNKNOWN_SCALE):
            parsed.length_scale = text
        else:
            parsed.problems.append(
                Problem(
                    file=METADATA_FILE,
                    reason=f"{where}: length_scale {text!r} is not one of {', '.join((*SCALE_NAMES, UNKNOWN_SCALE))}",
                )
            )
    if text := cell("databar_rows"):
        try:
            rows = int(float(text))
            if rows < 0 or rows != float(text):
                raise ValueError
            parsed.databar_rows = rows
        except ValueError:
            parsed.problems.append(
                Problem(file=METADATA_FILE, reason=f"{where}: databar_rows {text!r} is not a whole number >= 0")
            )
    if text := cell("split"):
        if text in POOLS:
            parsed.split = text
        else:
            parsed.problems.append(
                Problem(file=METADATA_FILE, reason=f"{where}: split {text!r} is not one of {', '.join(POOLS)}")
            )
    return parsed


@dataclass
class MetadataTable:
    """A ``metadata.csv`` as written: its (trimmed, lower-case) columns, every row with the line it
    came from and its image name as given (parse it with :func:`parse_metadata_row`), and the
    file's own problems."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def read_metadata_table(path: Path) -> MetadataTable:
    """Parse a ``metadata.csv``: the one reader of the format (the folder dataset, ``data check``
    and ``harness evaluate`` all read it here). A missing file is an empty table."""
    if not path.exists():
        return MetadataTable()
    if path.stat().st_size == 0:
        return MetadataTable(problems=[Problem(file=METADATA_FILE, reason="file is empty (0 bytes); it is ignored",
                                               severity="warning")])
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as err:  # noqa: BLE001 - pandas raises several types for malformed CSV
        return MetadataTable(problems=[Problem(file=METADATA_FILE,
                                               reason=f"cannot be parsed as CSV ({type(err).__name__}: {err})")])
    columns = [str(c).strip().lower() for c in table.columns]
    table.columns = columns
    if "image" not in columns:
        found = ", ".join(columns) or "none"
        return MetadataTable(columns, problems=[Problem(file=METADATA_FILE, reason=f"has no 'image' column "
                                                        f"(columns: {found})" + separator_hint(columns))])
    parsed = MetadataTable(columns)
    for position, record in enumerate(table.to_dict(orient="records")):
        line = position + 2  # header is line 1
        given = str(record["image"]).strip()
        if not given:
            parsed.problems.append(Problem(file=METADATA_FILE, reason=f"line {line}: the image column is empty"))
            continue
        parsed.rows.append((line, given, record))
    return parsed


def read_metadata(root: Path, image_names: list[str]) -> tuple[dict[str, _MetaRow], list[Problem]]:
    """Parse metadata.csv: per image file name, its parsed row; plus folder-level problems."""
    table = read_metadata_table(root / METADATA_FILE)
    by_name = {unicodedata.normalize("NFC", n): n for n in image_names}
    stems: dict[str, list[str]] = {}
    for n in image_names:
        stems.setdefault(stem_key(n), []).append(n)
    rows: dict[str, _MetaRow] = {}
    problems = list(table.problems)
    for line, given, record in table.rows:
        name = unicodedata.normalize("NFC", Path(given.replace("\\", "/")).name)
        match = by_name.get(name) or (stems[name][0] if len(stems.get(name, [])) == 1 else None)
        if match is None:
            problems.append(
                Problem(
                    file=METADATA_FILE,
                    reason=f"line {line}: {given} is not in {IMAGES_DIR}/; the row is ignored",
                    severity="warning",
                )
            )
            continue
        if match in rows:
            problems.append(
                Problem(
                    file=METADATA_FILE,
                    reason=f"lines {rows[match].line} and {line} both describe {match}",
                )
            )
            continue
        rows[match] = parse_metadata_row(record, line, match)
    return rows, problems


# ----------------------------------------------------------------------------------------- scan


def _listing(directory: Path, kind: str) -> tuple[dict[str, Path], list[Problem]]:
    """Files of ``directory`` by stem; problems for duplicates and formats harness cannot read."""
    found: dict[str, Path] = {}
    problems: list[Problem] = []
    if not directory.is_dir():
        return found, problems
    clashes: dict[str, list[str]] = {}
    for path in sorted(directory.iterdir()):
        rel = f"{directory.name}/{path.name}"
        if path.name.startswith("."):
            continue
        if problem := link_problem(path):
            problems.append(Problem(file=rel, reason=f"{problem}; it is ignored", severity="warning"))
            continue
        if path.is_dir():
            problems.append(Problem(file=rel, reason="sub-folders are not read; it is ignored", severity="warning"))
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(
                Problem(
                    file=rel,
                    reason=f"not a format harness reads ({', '.join(IMAGE_SUFFIXES)}); it is ignored",
                    severity="warning",
                )
            )
            continue
        clashes.setdefault(stem_key(path), []).append(path.name)
        found.setdefault(stem_key(path), path)
    for stem, names in clashes.items():
        if len(names) > 1:
            problems.append(
                Problem(
                    file=f"{directory.name}/{names[0]}",
                    reason=f"{kind} stem {stem!r} is used by several files ({', '.join(names)}); keep one",
                )
            )
            found.pop(stem)
    return found, problems


def _pixel_size(header: Header, meta: _MetaRow | None, rel: str) -> tuple[PixelSize, list[Problem]]:
    problems: list[Problem] = []
    from_tag = header.pixel_size
    if meta is not None and meta.pixel_size_nm is not None:
        if from_tag.nm is not None and abs(from_tag.nm - meta.pixel_size_nm) > PIXEL_SIZE_TOLERANCE * from_tag.nm:
            problems.append(
                Problem(
                    file=rel,
                    reason=(
                        f"pixel size {meta.pixel_size_nm:g} nm in {METADATA_FILE} differs from "
                        f"{from_tag.nm:g} nm in the {from_tag.source} tag; {METADATA_FILE} is used"
                    ),
                    severity="warning",
                )
            )
        return PixelSize(nm=meta.pixel_size_nm, source=METADATA_FILE), problems
    if from_tag.note:
        problems.append(Problem(file=rel, reason=from_tag.note, severity="warning"))
    return from_tag, problems


def scan_folder(root: str | Path, crop_bottom: int | None = None, flat: bool = False) -> FolderScan:
    """Read a folder's listing, metadata.csv and every file header; collect every problem.

    ``flat``: the micrographs lie in ``root`` itself, without masks (what ``harness predict``
    reads); metadata.csv, when there, lies beside them."""
    root = Path(root)
    problems: list[Problem] = []
    if not root.is_dir():
        raise HarnessError(f"{root}: not a folder")
    images_dir = root if flat else root / IMAGES_DIR
    if not images_dir.is_dir():
        problems.append(Problem(file=f"{IMAGES_DIR}/", reason="folder is missing; put the micrographs there"))
        return FolderScan(root=str(root), records=[], problems=problems)
    images, found = _listing(images_dir, "image")
    problems += found
    masks: dict[str, Path] = {}
    if not flat:
        masks, found = _listing(root / MASKS_DIR, "mask")
        problems += found
    if not images:
        problems.append(Problem(file=f"{IMAGES_DIR}/", reason="holds no readable image files"))
    for stem in sorted(set(masks) - set(images)):
        problems.append(
            Problem(
                file=f"{MASKS_DIR}/{masks[stem].name}",
                reason=f"has no image with the stem {stem!r} in {IMAGES_DIR}/; it is ignored",
                severity="warning",
            )
        )
    metadata, found = read_metadata(root, [p.name for p in images.values()])
    problems += found
    jobs: list[_RecordJob] = [(stem, path, path.relative_to(root).as_posix(), masks.get(stem),
                               metadata.get(path.name), crop_bottom) for stem, path in sorted(images.items())]
    # headers and remembered readings first, in this process; the images whose printed pixel size
    # must still be read (decode + OCR, ~0.15 s each) are then shared out to worker processes
    found_now = [_record(*job, read_printed=False) for job in jobs]
    unread = [job for job, record in zip(jobs, found_now, strict=True) if record is None]
    read = iter(map_in_processes(_record_job, unread, READINGS_PER_WORKER))
    records = [record if record is not None else next(read) for record in found_now]
    return FolderScan(root=str(root), records=records, problems=problems)


#: Images whose printed pixel size must be read, per worker process, below which one process reads.
READINGS_PER_WORKER = 16

_RecordJob = tuple[str, Path, str, Path | None, _MetaRow | None, int | None]


def _record_job(job: _RecordJob) -> ImageRecord:
    record = _record(*job)
    assert record is not None  # read_printed: always a record
    return record


def _record(
    stem: str, path: Path, rel: str, mask_path: Path | None, meta: _MetaRow | None, crop_bottom: int | None,
    read_printed: bool = True,
) -> ImageRecord | None:
    """The record of one image (``rel``: its path in the folder) from its header and metadata row.
    Without ``read_printed``, None where the pixel size printed on the image would have to be read
    (not yet remembered)."""
    mask_rel = f"{MASKS_DIR}/{mask_path.name}" if mask_path is not None else None
    problems: list[Problem] = list(meta.problems) if meta is not None else []
    try:
        header = read_header(path)
    except HarnessError as err:
        header = None
        problems.append(Problem(file=rel, reason=_reason(err)))
    if mask_path is not None:
        try:
            mask_header = read_header(mask_path)
            if mask_header.layout == "rgb":
                problems.append(Problem(file=mask_rel, reason=RGB_MASK))
            elif header is not None:
                (h, w), (mh, mw) = header.shape, mask_header.shape
                # a mask only covering the rows above the data bar is settled when the bar is known
                if mw != w or mh > h:
                    problems.append(Problem(file=mask_rel, reason=f"mask is {mh}x{mw} pixels but the image is {h}x{w}"))
        except HarnessError as err:
            problems.append(Problem(file=mask_rel, reason=_reason(err)))
    split = meta.split if meta is not None else None
    if split not in (None, "unlabeled") and mask_path is None:
        problems.append(
            Problem(file=rel, reason=f"{METADATA_FILE} puts it in split {split!r}, which needs a mask, and it has none")
        )
    if header is not None:
        size, found = _pixel_size(header, meta, rel)
        problems += found
    else:
        given = meta.pixel_size_nm if meta else None
        size = PixelSize(nm=given, source=METADATA_FILE if given else "unknown")
    modality = (meta.modality if meta else None) or ("SEM" if header is not None and header.vendor else "unknown")
    scale = length_scale_of(size.nm)
    if scale == UNKNOWN_SCALE and meta is not None and meta.length_scale:
        scale = meta.length_scale
    if crop_bottom is not None:
        bar, bar_source = crop_bottom, "crop-bottom"
    elif meta is not None and meta.databar_rows is not None:
        bar, bar_source = meta.databar_rows, METADATA_FILE
    else:
        bar, bar_source = None, None
    if header is not None and bar is not None and bar >= header.shape[0]:
        problems.append(
            Problem(file=rel, reason=f"data bar of {bar} rows ({bar_source}) leaves none of its {header.shape[0]} rows")
        )
    elif header is not None and size.nm is None:  # no number anywhere: read the one printed on the image
        printed = _printed_pixel_size(path, rel, bar, read=read_printed)
        if printed is None:
            return None
        size, found = printed
        problems += found
        scale = length_scale_of(size.nm) if size.nm is not None else scale
    return ImageRecord(
        id=stem,
        image=rel,
        mask=mask_rel,
        shape=header.shape if header else (0, 0),
        dtype=header.dtype if header else "",
        layout=header.layout if header else "gray",
        pixel_size_nm=size.nm,
        pixel_size_source=size.source,
        modality=modality,
        length_scale=scale,
        split=split,
        databar_rows=bar,
        databar_source=bar_source,
        magnification=meta.magnification if meta else None,
        problems=tuple(problems),
    )


def _printed_pixel_size(path: Path, rel: str, databar_rows: int | None,
                        read: bool = True) -> tuple[PixelSize, list[Problem]] | None:
    """The pixel size printed on the image (:mod:`~harness.data.scalebar`), cached by file content:
    reading it decodes the image and runs an OCR, so each file is read once per content. Without
    ``read``, None where it is not remembered."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:32]
    memo = cache_root() / "printed-pixel-sizes" / f"{digest}-{databar_rows}-{scalebar.READER_VERSION}.json"
    reading = None
    if memo.is_file():
        try:
            reading = scalebar.Reading(**json.loads(memo.read_text()))
        except (ValueError, TypeError):  # a damaged memo is read again
            reading = None
    if reading is None and not read:
        return None
    if reading is None:
        try:
            image = read_gray(path)
            rows, _ = resolve_databar(image, None, databar_rows)
            reading = scalebar.read_pixel_size(image, rows)
        except HarnessError as err:
            return UNKNOWN, [Problem(file=rel, reason=f"pixel size not read from the image: {_reason(err)}",
                                     severity="warning")]
        write_text_atomic(memo, json.dumps({"nm": reading.nm, "source": reading.source, "note": reading.note}))
    if reading.nm is not None and PLAUSIBLE_NM[0] <= reading.nm <= PLAUSIBLE_NM[1]:
        return PixelSize(nm=reading.nm, source=reading.source or "unknown"), []
    if reading.note == scalebar.NO_BAR or reading.nm is not None:
        return UNKNOWN, []
    return UNKNOWN, [Problem(file=rel, reason=f"no pixel size: {reading.note}; sizes stay in px", severity="warning")]


# ----------------------------------------------------------------------------------------- load


@dataclass
class LoadResult:
    """A loaded sample and what loading found; ``sample`` is None exactly when a problem is an error."""

    sample: Sample | None
    problems: list[Problem]
    databar_source: str = "none"
    mask_kind: str | None = None  # instance, binary or empty
    particles: int = 0


def load_record(record: ImageRecord, root: Path, connectivity: int = 8) -> LoadResult:
    """Read an image and its mask; every problem found in the pixels is returned, not raised."""
    problems: list[Problem] = []
    try:
        image = read_gray(root / record.image)
    except HarnessError as err:
        return LoadResult(None, [Problem(file=record.image, reason=_reason(err))])
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        return LoadResult(None, [Problem(file=record.image, reason=f"float image has {bad} NaN or infinite pixels")])
    try:
        bar, bar_source = resolve_databar(image, None, record.databar_rows)
    except HarnessError as err:
        return LoadResult(None, [Problem(file=record.image, reason=str(err))])
    if record.databar_source is not None:
        bar_source = record.databar_source
    mask = None
    kind = None
    if record.mask is not None:
        mask_path = root / record.mask
        try:
            mask, kind = mask_to_instances(read_mask_raw(mask_path), connectivity, mask_path)
        except HarnessError as err:
            return LoadResult(None, [Problem(file=record.mask, reason=_reason(err))], bar_source)
        height, width = image.shape
        if mask.shape != image.shape:
            if bar > 0 and mask.shape == (height - bar, width):
                mask = np.vstack([mask, np.zeros((bar, width), dtype=np.int32)])
            else:
                reason = f"mask is {mask.shape[0]}x{mask.shape[1]} pixels but the image is {height}x{width}"
                return LoadResult(None, [Problem(file=record.mask, reason=reason)], bar_source)
        if bar > 0:
            in_bar = int(np.count_nonzero(mask[height - bar :]))
            if in_bar:
                problems.append(
                    Problem(
                        file=record.mask,
                        reason=(
                            f"{in_bar} labelled pixels lie in the data bar (bottom {bar} rows, {bar_source}); "
                            "they are ignored"
                        ),
                        severity="warning",
                    )
                )
                mask = mask.copy()
                mask[height - bar :] = 0
    particles = int(np.unique(mask[mask > 0]).size) if mask is not None else 0
    region = image[: image.shape[0] - bar]
    if region.min() == region.max():
        value = region.flat[0]
        if particles:
            reason = f"mask has {particles} particles but the image is empty (every pixel is {value})"
            return LoadResult(None, [*problems, Problem(file=record.image, reason=reason)], bar_source, kind, particles)
        empty = Problem(file=record.image, reason=f"image is empty (every pixel is {value})", severity="warning")
        problems.append(empty)
    sample = Sample(
        id=record.id,
        image=image,
        mask=mask,
        pixel_size_nm=record.pixel_size_nm,
        modality=record.modality,
        databar_rows=bar,
        pixel_size_source=record.pixel_size_source,
    )
    return LoadResult(sample, problems, bar_source, kind, particles)


def index_frame(records: Iterable[ImageRecord]) -> pd.DataFrame:
    """The dataset index (:data:`~harness.data.base.INDEX_COLUMNS`) of some records."""
    rows = [
        {
            "id": r.id,
            "labeled": r.mask is not None,
            "pixel_size_nm": r.pixel_size_nm,
            "length_scale": r.length_scale,
            "modality": r.modality,
            "split": r.split,
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))


# -------------------------------------------------------------------------------------- identity


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_digests(root: Path) -> list[tuple[str, int, str]]:
    """(relative path, size, blake2b of the bytes) of metadata.csv and every file in images/, masks/.

    Digests are remembered in the harness cache by (size, modification time, status-change time,
    inode) so that opening a large folder again does not re-read every byte. Size and mtime alone
    are not enough: content replaced with the same size and the mtime set back (``touch -r``, a
    restore, a copy keeping times) would keep the old identity; the status-change time cannot be
    set back and a replacing rename brings a new inode. The identity itself never depends on times.
    """
    files = [root / METADATA_FILE] if (root / METADATA_FILE).is_file() else []
    for sub in (IMAGES_DIR, MASKS_DIR):
        if (root / sub).is_dir():
            files += [p for p in sorted((root / sub).iterdir()) if p.is_file() and not p.name.startswith(".")]
    memo_path: Path | None = None
    memo: dict[str, list] = {}
    try:
        memo_path = cache_root() / "folder-digests" / f"{stable_hash(str(root.resolve()))}.json"
        loaded = json.loads(memo_path.read_text())
        memo = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass  # no memo yet, or an unusable cache: digests are computed from the bytes
    result, fresh = [], {}
    for path in files:
        rel = path.relative_to(root).as_posix()
        stat = path.stat()
        known = memo.get(rel)
        when = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        if isinstance(known, list) and len(known) == len(when) + 1 and known[:-1] == when:
            digest = known[-1]
        else:
            digest = _file_digest(path)
        fresh[rel] = [*when, digest]
        result.append((rel, stat.st_size, digest))
    if fresh != memo and memo_path is not None:
        try:
            write_text_atomic(memo_path, json.dumps(fresh))
        except OSError:
            pass  # the memo only saves time
    return result


# ---------------------------------------------------------------------------------------- dataset


class FolderDataset(Dataset):
    """A folder in the folder format (see the module docstring), usable as ``--dataset DIR``."""

    def __init__(self, path: str | Path, connectivity: int = 8, crop_bottom: int | None = None,
                 flat: bool = False) -> None:
        self.root = Path(path)
        self.flat = flat  # micrographs directly in the folder, no masks (scan_folder)
        if not self.root.is_dir():
            raise HarnessError(f"{self.root}: not a folder")
        if connectivity not in CONNECTIVITIES:
            raise HarnessError(f"connectivity must be 4 or 8, got {connectivity}")
        if crop_bottom is not None and crop_bottom < 0:
            raise HarnessError(f"crop-bottom must be >= 0 rows, got {crop_bottom}")
        self.connectivity = connectivity
        self.crop_bottom = crop_bottom
        self.split_fractions = dict(SPLIT_FRACTIONS)
        self._scan: FolderScan | None = None
        self._identity: DatasetIdentity | None = None

    @property
    def identity(self) -> DatasetIdentity:  # type: ignore[override]
        if self._identity is None:
            payload = {
                "files": content_digests(self.root),
                "options": {"connectivity": self.connectivity, "crop_bottom": self.crop_bottom},
            }
            self._identity = DatasetIdentity(
                name=self.root.resolve().name, version=FOLDER_VERSION, params_hash=stable_hash(payload)
            )
        return self._identity

    def scan(self) -> FolderScan:
        """Headers and metadata of every file (read once, then kept)."""
        if self._scan is None:
            self._scan = scan_folder(self.root, self.crop_bottom, flat=self.flat)
        return self._scan

    def records(self) -> dict[str, ImageRecord]:
        """Usable records by id; a HarnessError naming the problems when the folder has errors."""
        scan = self.scan()
        errors = scan.errors()
        if errors:
            shown = "; ".join(f"{p.file}: {p.reason}" for p in errors[:3])
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise HarnessError(
                f"{self.root}: {len(errors)} problem(s): {shown}{more}; "
                f"run `harness data check {self.root}` for the full list"
            )
        return {r.id: r for r in scan.records}

    def index(self) -> pd.DataFrame:
        return index_frame(self.records().values())

    def load(self, sample_id: str) -> Sample:
        records = self.records()
        if sample_id not in records:
            raise HarnessError(f"{self.root}: no image with id {sample_id!r}")
        result = load_record(records[sample_id], self.root, self.connectivity)
        errors = [p for p in result.problems if p.severity == "error"]
        if result.sample is None or errors:
            raise HarnessError("; ".join(f"{self.root / p.file}: {p.reason}" for p in errors))
        return result.sample


__all__ = [
    "FolderDataset",
    "FolderScan",
    "ImageRecord",
    "LoadResult",
    "Problem",
    "content_digests",
    "index_frame",
    "load_record",
    "read_gray",
    "rgb_to_gray",
    "scan_folder",
]
