"""The instrument data bar burned into the bottom rows of many SEM images.

Zeiss, Thermo Fisher/FEI, JEOL and Hitachi write magnification, voltage and a scale bar into a
band at the bottom of the saved image. That band is not specimen: it is kept out of training,
of the labels and of the metrics. Its height comes from, in order of precedence,

1. ``--crop-bottom N`` (the same N for every image; 0 turns the data bar off),
2. a ``databar_rows`` column in ``metadata.csv``,
3. :func:`detect_databar`.

Detection rests on one property every vendor's bar shares: its rows are mostly one flat grey
value (background behind the text), while micrograph rows are noisy and almost never repeat one
value on more than a few percent of their pixels. Walking up from the bottom row, the bar is the
run of such flat rows, with short interruptions allowed for lines of text and a noisy last row.

Figure crops (a dark or white background around sparse particles, a scale-bar inset, a panel
letter) also have flat bottom rows. So a candidate band is a bar only when, in addition, the whole
band is mostly its background value and it ends in a sharp edge: the rows just above it hardly
hold that value at all. When unsure, no rows are cut: deleting labelled particles is worse than
keeping a few rows of text.
"""

from __future__ import annotations

import numpy as np

from harness.errors import HarnessError

DATABAR_SOURCES = ("crop-bottom", "metadata.csv", "detected", "none")

#: A row is "flat" when its most common value covers at least this share of its pixels.
FLAT_SHARE = 0.5
#: Bars are never taller than this share of the image; a taller flat band is not a data bar.
MAX_BAR_SHARE = 0.35
#: Shortest band accepted as a bar (one or two flat rows are just a saturated line).
MIN_BAR_ROWS = 4
#: Non-flat rows tolerated inside the bar (text lines, logos) and below it (a noisy edge row).
MAX_GAP = 3
#: The whole band must be at least this share of its background value (text is a minority).
BAND_SHARE = 0.5
#: The sharp edge: in the EDGE_ROWS rows above the band, at most this share of the pixels lies
#: within EDGE_TOLERANCE (of the image's value range) of the band's background value.
EDGE_ROWS = 4
EDGE_SHARE = 0.25
EDGE_TOLERANCE = 0.03


def flat_share(row: np.ndarray) -> float:
    """Share of the pixels of ``row`` that hold its most common value."""
    _, counts = np.unique(row, return_counts=True)
    return float(counts.max()) / row.size


def detect_databar(image: np.ndarray) -> int:
    """Number of bottom rows that form an instrument data bar (0 when there is none).

    ``image`` is a 2-D grayscale micrograph of any dtype.
    """
    array = np.asarray(image)
    if array.ndim != 2:
        raise HarnessError(f"data bar detection needs a 2-D image, got shape {array.shape}")
    height = array.shape[0]
    if height == 0 or array.shape[1] == 0:
        return 0
    limit = int(height * MAX_BAR_SHARE)
    top: int | None = None
    gap = 0
    for offset in range(limit):
        if flat_share(array[height - 1 - offset]) >= FLAT_SHARE:
            top = height - 1 - offset
            gap = 0
            continue
        gap += 1
        if gap > MAX_GAP:
            return _accept(array, top)
    # the flat band reaches the height limit: a blank or saturated image, not a data bar
    return 0


def _accept(array: np.ndarray, top: int | None) -> int:
    height = array.shape[0]
    if top is None or height - top < MIN_BAR_ROWS:
        return 0
    band = array[top:]
    values, counts = np.unique(band, return_counts=True)
    background = values[counts.argmax()]
    if counts.max() / band.size < BAND_SHARE:
        return 0  # mostly not background: image content, not a bar holding text
    above = array[max(top - EDGE_ROWS, 0) : top].astype(np.float64)
    if above.size:
        value_range = float(array.max()) - float(array.min())
        near = np.abs(above - float(background)) <= EDGE_TOLERANCE * max(value_range, 1e-12)
        if near.mean() > EDGE_SHARE:
            return 0  # no sharp edge: the background goes on above (a figure's dark or white surround)
    return height - top


def resolve_databar(
    image: np.ndarray, crop_bottom: int | None, metadata_rows: int | None
) -> tuple[int, str]:
    """Data bar height and its source (one of :data:`DATABAR_SOURCES`) by the precedence above."""
    height = np.asarray(image).shape[0]
    if crop_bottom is not None:
        rows, source = crop_bottom, "crop-bottom"
    elif metadata_rows is not None:
        rows, source = metadata_rows, "metadata.csv"
    else:
        rows = detect_databar(image)
        source = "detected" if rows else "none"
    if rows < 0:
        raise HarnessError(f"data bar height must be >= 0 rows, got {rows} ({source})")
    if rows >= height:
        raise HarnessError(f"data bar of {rows} rows ({source}) leaves none of the image's {height} rows")
    return rows, source
