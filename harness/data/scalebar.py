"""Pixel size read off the image itself: a scale bar and its printed length, or a data bar's field width.

Figures and many micrographs carry no pixel size in any tag, but print one: a scale bar (a thin,
solid, saturated rectangle, black or white) with its length beside it ("200 nm", "1 µm"), or an
instrument data bar stating the field width ("Width = 7.520 µm", "HFW 12.7 µm"). Reading them:

1. **Bars.** Components of the darkest or brightest grey values (within 8 % of the range of the
   extremes) that are long and thin (at least 12 px and 5x as wide as high, at most 70 % of the
   image width) with at least one row running their whole width.
2. **Label.** A real OCR (RapidOCR, whose ONNX models ship inside its wheel: nothing is fetched at
   run time) reads a window around each bar. A label is a number and a length unit in one text, or
   a number followed by a unit in the next text on the same line, whose box lies just above or
   below the bar and overlaps it horizontally.
3. **Decision.** The pixel size is the label's length over the bar's width in px. Bars that read
   to different sizes (more than 5 % apart) leave the size unknown: never guess.

The data-bar text, when the data bar is known, gives nm per px as the field width over the image
width. :func:`read_pixel_size` tries the data bar first (the instrument's own number), then the
scale bar, and says why when neither gave one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from harness.errors import HarnessError

READER_VERSION = "2"  # bump when the reading changes: cached readings of files are keyed by it
SCALE_BAR = "scale bar"
DATABAR_TEXT = "data-bar text"
NO_BAR = "no scale bar found"  # the note of an image without any bar-like line (not worth a warning)
#: Share of the grey range, from either extreme, that a bar's pixels lie within.
EXTREME_SHARE = 0.08
MIN_BAR_PX = 12
MIN_ASPECT = 5.0
MAX_WIDTH_SHARE = 0.7
OCR_PAD = 16  # px of edge padding around a window given to the OCR
#: Labels of one image that disagree by more than this leave the size unknown.
AGREEMENT = 0.05
# printed marks (printed_boxes): type is small, and a bar candidate of a few px or on the frame is
# a particle's edge. Seen on EMPS: round particles read as a 130 px "00", a full-image box read as
# a colon from the OCR's edge padding, a 20 px bright "bar" along the top border.
MAX_TYPE_SHARE = 0.15  # a text box taller than this share of the image height is not type
MIN_MARK_BAR_PX = 24

# The OCR's models have no micro sign: it reads "µm" as "±m" (taken) or drops it ("7.520m": not taken,
# since a dropped "n" of "nm" reads the same, and a guess 1000x off is worse than no size).
_UNITS_NM = {"nm": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3, "±m": 1e3, "mm": 1e6, "pm": 1e-3, "å": 0.1}
_NUMBER = r"(\d[\dOo]*(?:[.,][\dOo]+)?)"
_LOOKALIKES = str.maketrans({"O": "0", "o": "0"})
_UNIT = r"(nm|um|µm|μm|±m|mm|pm|å)"
_LABEL = re.compile(rf"^\s*{_NUMBER}\s*{_UNIT}\s*$", re.IGNORECASE)
_NUMBER_ONLY = re.compile(rf"^\s*{_NUMBER}\s*$")
_UNIT_ONLY = re.compile(rf"^\s*{_UNIT}\s*$", re.IGNORECASE)
_FIELD_WIDTH = re.compile(rf"(?:width|hfw|fov)\s*[=:]?\s*{_NUMBER}\s*{_UNIT}", re.IGNORECASE)


@dataclass(frozen=True)
class Bar:
    """A scale-bar candidate: its box in px and whether it is dark or bright."""

    top: int
    left: int
    height: int
    width: int
    polarity: str


@dataclass(frozen=True)
class Text:
    """One OCR result: its text and its box (top, left, bottom, right) in image px."""

    text: str
    top: float
    left: float
    bottom: float
    right: float


@dataclass(frozen=True)
class Reading:
    """A pixel size read off an image, or None with the reason."""

    nm: float | None
    source: str | None
    note: str


class Ocr(Protocol):
    """Texts of a 2-D image with their boxes in its px; ``zoom`` enlarges it first (small type)."""

    def __call__(self, image: np.ndarray, zoom: int = 1) -> list[Text]: ...


ZOOMS = (1, 2)  # each window is read as it is, then, when no label came out, enlarged 2x


def parse_length_nm(text: str) -> float | None:
    """The length in nm of a label such as ``"200 nm"``, ``"1.5µm"`` or ``"0,5 mm"`` (None: not a label).

    OCR reads a zero as a letter o now and then ("1o0nm"); inside a number that starts with a real
    digit, o/O become 0. No other letter is taken for a digit ("50i m" on EMPS was "50 nm")."""
    match = _LABEL.match(text.replace("\u00b5", "µ"))
    if not match:
        return None
    return _to_nm(match.group(1), match.group(2))


def _to_nm(number: str, unit: str) -> float | None:
    try:
        value = float(number.translate(_LOOKALIKES).replace(",", "."))
    except ValueError:  # no reading of the text is a number: not a label
        return None
    nm = value * _UNITS_NM[unit.lower()]
    return nm if nm > 0 else None


def find_bars(gray: np.ndarray) -> list[Bar]:
    """Scale-bar candidates of a 2-D image (any dtype), in raster order."""
    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 2:
        raise HarnessError(f"find_bars needs a 2-D image, got shape {g.shape}")
    low, high = float(g.min()), float(g.max())
    if high <= low:
        return []
    height, width = g.shape
    span = EXTREME_SHARE * (high - low)
    bars = []
    for polarity, binary in (("dark", g <= low + span), ("bright", g >= high - span)):
        labels, _ = ndimage.label(binary)
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is None:
                continue
            h, w = box[0].stop - box[0].start, box[1].stop - box[1].start
            if w < MIN_BAR_PX or w > MAX_WIDTH_SHARE * width or w < MIN_ASPECT * h or h > max(4, 0.04 * height):
                continue
            own = labels[box] == index
            if own.sum() < 0.6 * h * w or not (own.sum(axis=1) >= 0.95 * w).any():
                continue
            bars.append(Bar(box[0].start, box[1].start, h, w, polarity))
    return sorted(bars, key=lambda b: (b.top, b.left))


def printed_boxes(gray: np.ndarray, ocr: Ocr, pad: int = 3) -> list[tuple[int, int, int, int]]:
    """Where the image carries print rather than specimen: every OCR text box with a letter or digit
    no taller than :data:`MAX_TYPE_SHARE` of the image, and every scale-bar candidate at least
    :data:`MIN_MARK_BAR_PX` wide and clear of the frame, grown by ``pad`` px and clipped to the
    image, as (top, left, bottom, right) pixel boxes (bottom and right exclusive). Figure panels
    carry panel letters, temperatures and scale-bar labels that a network can take for particles."""
    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 2:
        raise HarnessError(f"printed marks need a 2-D image, got shape {g.shape}")
    height, width = g.shape
    boxes = [(t.top, t.left, t.bottom, t.right) for t in ocr(g)
             if any(c.isalnum() for c in t.text) and t.bottom - t.top <= MAX_TYPE_SHARE * height]
    boxes += [(b.top, b.left, b.top + b.height, b.left + b.width) for b in find_bars(g)
              if b.width >= MIN_MARK_BAR_PX and b.top > 0 and b.left > 0
              and b.top + b.height < height and b.left + b.width < width]
    return [(max(0, int(top) - pad), max(0, int(left) - pad), min(height, int(np.ceil(bottom)) + pad + 1),
             min(width, int(np.ceil(right)) + pad + 1)) for top, left, bottom, right in boxes]


def label_of(bar: Bar, texts: Sequence[Text]) -> float | None:
    """The length in nm printed next to ``bar`` among ``texts`` (image px), if exactly one reads so."""
    found = []
    ordered = sorted(texts, key=lambda t: (round(t.top / 8), t.left))
    for i, text in enumerate(ordered):
        nm = parse_length_nm(text.text)
        box = text
        number = _NUMBER_ONLY.match(text.text)
        if nm is None and number and i + 1 < len(ordered):
            unit = ordered[i + 1]
            unit_text = _UNIT_ONLY.match(unit.text)
            if unit_text and abs(unit.top - text.top) < 0.6 * (text.bottom - text.top):
                nm = _to_nm(number.group(1), unit_text.group(1))
                box = Text("", min(text.top, unit.top), text.left, max(text.bottom, unit.bottom), unit.right)
        if nm is None or not _next_to(bar, box):
            continue
        found.append(nm)
    return found[0] if len(set(found)) == 1 else None


def _next_to(bar: Bar, text: Text) -> bool:
    """The text's box lies just above or below the bar (or on its row, beside it) and overlaps it."""
    text_height = text.bottom - text.top
    gap = max(bar.top - text.bottom, text.top - (bar.top + bar.height), 0.0)
    overlaps = text.right >= bar.left - 0.5 * bar.width and text.left <= bar.left + 1.5 * bar.width
    return overlaps and gap <= 2.5 * max(text_height, bar.height)


def read_scale_bar(gray: np.ndarray, ocr: Ocr) -> Reading:
    """The pixel size from the image's scale bar(s) and their labels."""
    bars = find_bars(gray)
    if not bars:
        return Reading(None, None, NO_BAR)
    height, width = gray.shape
    sizes = []
    for bar in bars:
        margin_y, margin_x = 4 * bar.height + 40, bar.width
        top, left = max(0, bar.top - margin_y), max(0, bar.left - margin_x)
        window = gray[top : min(height, bar.top + bar.height + margin_y), left : min(width, bar.left + 2 * bar.width)]
        for zoom in ZOOMS:
            texts = [Text(t.text, t.top + top, t.left + left, t.bottom + top, t.right + left)
                     for t in ocr(window, zoom)]
            nm = label_of(bar, texts)
            if nm is not None:
                sizes.append(nm / bar.width)
                break
    if not sizes:
        return Reading(None, None, f"{len(bars)} bar-like line(s) but no length printed next to any")
    if max(sizes) > (1 + AGREEMENT) * min(sizes):
        listing = ", ".join(f"{s:.3g}" for s in sizes)
        return Reading(None, None, f"scale bars disagree ({listing} nm/px); size left unknown")
    return Reading(float(np.median(sizes)), SCALE_BAR, "")


def read_databar_width(gray: np.ndarray, databar_rows: int, ocr: Ocr) -> Reading:
    """The pixel size from a data bar's field width ("Width = 7.520 µm") over the image width."""
    if databar_rows <= 0:
        return Reading(None, None, "no data bar")
    for zoom in ZOOMS:
        for text in ocr(gray[gray.shape[0] - databar_rows :], zoom):
            match = _FIELD_WIDTH.search(text.text.replace("\u00b5", "µ"))
            nm = _to_nm(match.group(1), match.group(2)) if match else None
            if nm is not None:
                return Reading(nm / gray.shape[1], DATABAR_TEXT, "")
    return Reading(None, None, "the data bar states no field width")


def read_pixel_size(gray: np.ndarray, databar_rows: int = 0, ocr: Ocr | None = None) -> Reading:
    """The pixel size printed on the image: the data bar's field width first, then the scale bar."""
    ocr = ocr or rapid_ocr()
    from_bar = read_databar_width(gray, databar_rows, ocr)
    if from_bar.nm is not None:
        return from_bar
    above = gray[: gray.shape[0] - databar_rows] if databar_rows > 0 else gray
    return read_scale_bar(above, ocr)


@lru_cache(maxsize=1)
def _engine() -> Any:
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as err:  # declared in pyproject; a bare environment says so in one line
        raise HarnessError("reading scale bars needs the OCR package rapidocr-onnxruntime "
                           "(pip install rapidocr-onnxruntime)") from err
    # windows around a bar are small: detect at their own size (the default upsamples each to 736 px)
    return RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1, det_limit_type="max", det_limit_side_len=960)


def rapid_ocr() -> Ocr:
    """The OCR: RapidOCR with its bundled models, one thread (called per image, beside training)."""

    def read(image: np.ndarray, zoom: int = 1) -> list[Text]:
        array = np.asarray(image, dtype=np.float32)
        low, high = float(array.min()), float(array.max())
        if high <= low:
            unit8 = np.zeros(array.shape, np.uint8)
        else:
            unit8 = ((array - low) / (high - low) * 255).astype(np.uint8)
        # the text detector misses some small type near a window's edge: a border of edge pixels
        ready = np.pad(np.kron(unit8, np.ones((zoom, zoom), np.uint8)), OCR_PAD, mode="edge")
        result, _ = _engine()(np.stack([ready] * 3, axis=-1), use_cls=False)  # labels are upright
        texts = []
        for box, text, _score in result or []:
            ys = [(p[1] - OCR_PAD) / zoom for p in box]
            xs = [(p[0] - OCR_PAD) / zoom for p in box]
            texts.append(Text(str(text), float(min(ys)), float(min(xs)), float(max(ys)), float(max(xs))))
        return texts

    return read
