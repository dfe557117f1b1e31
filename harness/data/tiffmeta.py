"""Pixel size (nm per pixel) from the TIFF file itself.

Microscopes hide the pixel size in vendor tags that tifffile parses:

- ``CZ_SEM`` (tag 34118, Zeiss SEM): ``ap_image_pixel_size`` ("Image Pixel Size"), else
  ``ap_pixel_size``; a value with a unit such as ``543.0 pm``.
- ``FEI_HELIOS`` (34682) and ``FEI_SFEG`` (34680), Thermo Fisher/FEI: an INI-style text whose
  ``[Scan]`` (else ``[EScan]``) section holds ``PixelWidth`` in metres.
- TIFF resolution tags with a physical unit: ``XResolution`` pixels per centimetre or inch, or
  ImageJ's ``unit=`` in the image description with no TIFF unit. A resolution in pixels per inch
  coarser than 10,000 dpi is a print setting (72, 96, 300 dpi are common defaults), never a
  microscope's pixel, and is ignored.

The first of these that gives a plausible size wins (vendor tags before resolution tags) and the
source is recorded under the names in :data:`PIXEL_SIZE_SOURCES`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import tifffile
from pydantic import BaseModel, ConfigDict

from harness.errors import HarnessError

PIXEL_SIZE_SOURCES = ("metadata.csv", "CZ_SEM", "FEI_HELIOS", "FEI_SFEG", "tiff-resolution", "data-bar text",
                      "scale bar", "unknown")  # data-bar text and scale bar: harness.data.scalebar
VENDOR_TAGS = {"CZ_SEM": 34118, "FEI_HELIOS": 34682, "FEI_SFEG": 34680}

#: Sizes outside this range (nm per pixel) are not believed: 1 pm to 100 um per pixel.
PLAUSIBLE_NM = (1e-3, 1e5)
#: Resolutions in pixels per inch coarser than this are print settings, not microscope pixels.
MAX_PRINT_DPI = 10_000

_UNIT_NM = {
    "m": 1e9,
    "mm": 1e6,
    "cm": 1e7,
    "um": 1e3,
    "µm": 1e3,  # micro sign
    "μm": 1e3,  # Greek mu
    "micron": 1e3,
    "microns": 1e3,
    "\\u00b5m": 1e3,  # ImageJ escapes the micro sign in its description
    "nm": 1.0,
    "pm": 1e-3,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
}


class PixelSize(BaseModel):
    """A pixel size and where it came from; ``nm`` is None when unknown."""

    model_config = ConfigDict(frozen=True)

    nm: float | None
    source: str = "unknown"
    note: str = ""  # why a candidate was ignored, for the check report


UNKNOWN = PixelSize(nm=None, source="unknown")


def length_to_nm(value: Any, unit: str) -> float | None:
    """``value`` in ``unit`` as nanometres; None when the unit is not a length."""
    factor = _UNIT_NM.get(str(unit).strip().lower())
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if factor is None or not math.isfinite(number):
        return None
    return number * factor


def _plausible(nm: float | None) -> bool:
    return nm is not None and math.isfinite(nm) and PLAUSIBLE_NM[0] <= nm <= PLAUSIBLE_NM[1]


def cz_sem_pixel_size(meta: dict[str, Any]) -> float | None:
    """Image pixel size in nm from tifffile's parsed ``CZ_SEM`` dictionary."""
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        entry = meta.get(key)
        # parsed entries look like ('Image Pixel Size', 543.0, 'pm')
        if isinstance(entry, tuple) and len(entry) >= 3:
            nm = length_to_nm(entry[1], entry[2])
            if _plausible(nm):
                return nm
    return None


def fei_pixel_size(meta: dict[str, Any]) -> float | None:
    """Pixel width in nm from tifffile's parsed FEI INI dictionary (``PixelWidth`` in metres)."""
    sections = [meta.get("Scan"), meta.get("EScan")] + [v for k, v in meta.items() if k not in ("Scan", "EScan")]
    for section in sections:
        if isinstance(section, dict) and "PixelWidth" in section:
            nm = length_to_nm(section["PixelWidth"], "m")
            if _plausible(nm):
                return nm
    return None


def resolution_pixel_size(page: tifffile.TiffPage, imagej: dict[str, Any] | None) -> PixelSize:
    """Pixel size from ``XResolution`` + ``ResolutionUnit`` (or ImageJ's unit)."""
    tags = page.tags
    res_tag = tags.get("XResolution")
    if res_tag is None:
        return UNKNOWN
    try:
        numerator, denominator = res_tag.value
        pixels_per_unit = numerator / denominator
    except (TypeError, ValueError, ZeroDivisionError):
        return UNKNOWN
    if not math.isfinite(pixels_per_unit) or pixels_per_unit <= 0:
        return UNKNOWN
    unit_tag = tags.get("ResolutionUnit")
    unit_code = int(unit_tag.value) if unit_tag is not None else 2  # TIFF default: inch
    if unit_code == 3:
        nm = 1e7 / pixels_per_unit
    elif unit_code == 2:
        if pixels_per_unit < MAX_PRINT_DPI:
            return PixelSize(
                nm=None,
                note=f"resolution tag says {pixels_per_unit:g} pixels per inch, a print setting: ignored",
            )
        nm = 2.54e7 / pixels_per_unit
    else:
        unit = (imagej or {}).get("unit")
        nm_per_unit = length_to_nm(1.0, unit) if unit else None
        if nm_per_unit is None:
            return UNKNOWN
        nm = nm_per_unit / pixels_per_unit
    if not _plausible(nm):
        return PixelSize(nm=None, note=f"resolution tag gives {nm:g} nm/px, outside the plausible range: ignored")
    return PixelSize(nm=nm, source="tiff-resolution")


def _vendor_meta(page: tifffile.TiffPage, code: int) -> dict[str, Any] | None:
    try:
        value = page.tags.valueof(code)
    except Exception:  # noqa: BLE001 - a malformed vendor tag is treated like a missing one
        return None
    return value if isinstance(value, dict) else None


def pixel_size_from_tiff(tif: tifffile.TiffFile) -> PixelSize:
    """The pixel size recorded in an open TIFF's first page, with its source."""
    page = tif.pages.first
    notes: list[str] = []
    for source, code in VENDOR_TAGS.items():
        if code not in page.tags:
            continue
        meta = _vendor_meta(page, code)
        if meta is None:
            notes.append(f"{source} tag could not be parsed")
            continue
        nm = cz_sem_pixel_size(meta) if source == "CZ_SEM" else fei_pixel_size(meta)
        if nm is not None:
            return PixelSize(nm=nm, source=source)
        notes.append(f"{source} tag holds no usable pixel size")
    try:
        imagej = tif.imagej_metadata
    except Exception:  # noqa: BLE001 - a broken ImageJ description only loses the unit
        imagej = None
    found = resolution_pixel_size(page, imagej)
    if found.nm is not None:
        return found
    if found.note:
        notes.append(found.note)
    return PixelSize(nm=None, source="unknown", note="; ".join(notes))


def vendor_of(tif: tifffile.TiffFile) -> str | None:
    """Name of the first vendor tag present (an SEM file), else None."""
    page = tif.pages.first
    return next((name for name, code in VENDOR_TAGS.items() if code in page.tags), None)


def read_pixel_size(path: str | Path) -> PixelSize:
    """Open ``path`` (TIFF) and return its recorded pixel size; a clear error when unreadable."""
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            return pixel_size_from_tiff(tif)
    except (OSError, tifffile.TiffFileError, ValueError) as err:
        raise HarnessError(f"{path}: cannot be read as a TIFF ({type(err).__name__}: {err})") from err
