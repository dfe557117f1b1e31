"""``metadata.csv``: the one reader of the format (the folder dataset, ``data check``, ``harness evaluate``)."""

from __future__ import annotations

import csv
import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.data.folder.records import IMAGES_DIR, Problem
from harness.data.io import (
    METADATA_FILE,
    separator_hint,
    stem_key,
)
from harness.data.sample import MODALITIES
from harness.data.scales import SCALE_NAMES, UNKNOWN_SCALE
from harness.data.splits import POOLS

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


def _ragged_lines(path: Path) -> list[tuple[int, int, int]]:
    """(line, fields, header fields) of every non-blank row whose field count is not the header's."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, skipinitialspace=True))
    if not rows:
        return []
    header = len(rows[0])
    return [(number, len(row), header) for number, row in enumerate(rows[1:], start=2)
            if any(cell.strip() for cell in row) and len(row) != header]


def read_metadata_table(path: Path) -> MetadataTable:
    """Parse a ``metadata.csv``: the one reader of the format (the folder dataset, ``data check``
    and ``harness evaluate`` all read it here). A missing file is an empty table."""
    if not path.exists():
        return MetadataTable()
    if path.stat().st_size == 0:
        return MetadataTable(problems=[Problem(file=METADATA_FILE, reason="file is empty (0 bytes); it is ignored",
                                               severity="warning")])
    try:
        # a row with a field more than the header would make pandas take its image name for the
        # index and shift every value one column left: refused here, by line
        ragged = _ragged_lines(path)
        table = None if ragged else pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                                                index_col=False)
    except Exception as err:  # noqa: BLE001 - pandas raises several types for malformed CSV
        return MetadataTable(problems=[Problem(file=METADATA_FILE,
                                               reason=f"cannot be parsed as CSV ({type(err).__name__}: {err})")])
    if table is None:
        line, fields, header = ragged[0]
        more = f" (and {len(ragged) - 1} more line(s))" if len(ragged) > 1 else ""
        return MetadataTable(problems=[Problem(file=METADATA_FILE, reason=(
            f"line {line} has {fields} fields, the header {header}{more}: its values cannot be matched to "
            "columns (a trailing comma?)"))])
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
