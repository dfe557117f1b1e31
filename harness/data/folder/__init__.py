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

from harness.data.folder.dataset import (
    FolderDataset,
    LoadResult,
    content_digests,
    index_frame,
    load_record,
)
from harness.data.folder.decode import (
    FileProblem,
    Header,
    mask_to_instances,
    quiet_tifffile,
    read_gray,
    read_header,
    read_mask_raw,
    rgb_to_gray,
)
from harness.data.folder.metadata import (
    MetadataTable,
    parse_metadata_row,
    read_metadata,
    read_metadata_table,
)
from harness.data.folder.records import (
    FOLDER_VERSION,
    IMAGES_DIR,
    LUMA,
    MASKS_DIR,
    PIL_DTYPES,
    PIXEL_SIZE_TOLERANCE,
    PREDICTS_AS_CURRENT,
    RGB_MASK,
    SPLIT_FRACTIONS,
    FolderScan,
    ImageRecord,
    Layout,
    Problem,
    Severity,
    folder_version_of,
)
from harness.data.folder.scan import (
    scan_folder,
)

__all__ = [
    "FOLDER_VERSION",
    "PREDICTS_AS_CURRENT",
    "FileProblem",
    "FolderDataset",
    "FolderScan",
    "folder_version_of",
    "Header",
    "IMAGES_DIR",
    "ImageRecord",
    "LUMA",
    "Layout",
    "LoadResult",
    "MASKS_DIR",
    "MetadataTable",
    "PIL_DTYPES",
    "PIXEL_SIZE_TOLERANCE",
    "Problem",
    "RGB_MASK",
    "SPLIT_FRACTIONS",
    "Severity",
    "content_digests",
    "index_frame",
    "load_record",
    "mask_to_instances",
    "parse_metadata_row",
    "quiet_tifffile",
    "read_gray",
    "read_header",
    "read_mask_raw",
    "read_metadata",
    "read_metadata_table",
    "rgb_to_gray",
    "scan_folder",
]
