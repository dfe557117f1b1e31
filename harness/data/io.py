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

import contextlib
import csv
import errno
import io
import os
import shutil
import tempfile
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from harness.errors import HarnessError

try:  # advisory locks exist on POSIX; elsewhere every lock is granted at once
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
#: The most pixels harness decodes from one file (16384 x 8192; below Pillow's own decompression-bomb
#: refusal). Checked against the size a header declares, before any pixel is decoded, so a small
#: file claiming a huge image cannot make harness allocate gigabytes.
MAX_IMAGE_PIXELS = 2**27
METADATA_FILE = "metadata.csv"


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is private; the result is an ordinary file
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> str:
    """A CSV table (header, then ``rows`` in ``columns`` order, newline line ends) as text."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@contextmanager
def locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """An advisory lock on the file ``path`` (made if missing), held for the block; yields whether it
    is held. ``wait=False`` yields False at once when another process holds it. The lock goes with its
    process, so one that is killed never leaves it taken. Where locks cannot be taken (no POSIX locks,
    a file system without flock such as Lustre mounted without it, a read-only folder) the block runs
    unlocked, with one warning per folder: the work is still right, only not kept to one process."""
    held = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")  # closed by the with below, after the block
    except OSError as err:
        _unlocked(path, err)
        handle = None
    if handle is None:  # yielded outside the handler, so the block's own errors do not chain to it
        yield True
        return
    with handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                held = True
            except BlockingIOError:
                pass  # yielded below, outside this handler, so the block's own errors do not chain to it
            except OSError as err:  # ENOSYS, EOPNOTSUPP, ENOLCK: no locks on this file system
                _unlocked(path, err)
                held = True
        else:  # pragma: no cover - Windows
            held = True
        if not held:
            yield False
            return
        try:
            yield True
        finally:
            if fcntl is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _unlocked(path: Path, err: OSError) -> None:
    # the warnings registry shows each message once per process: once per folder. stacklevel: past this
    # helper, the generator and contextlib, to the caller's with-statement
    warnings.warn(f"{path.parent}: file locks cannot be taken here ({err.strerror or err}); going on without "
                  "them, so let one process at a time write in this folder", stacklevel=4)


@contextmanager
def folder_written_whole(out: Path) -> Iterator[Path]:
    """A hidden folder beside ``out`` to write into, renamed to ``out`` when the block ends and
    removed if it fails: a command stopped part-way (a bad image, Ctrl-C) leaves no half folder under
    the name asked for, so it can simply be run again. ``out`` must be absent or an empty folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        work.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary folder
        yield work
        if out.exists():
            out.rmdir()  # empty (the caller checked); a rename cannot replace a folder
        os.rename(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


@contextmanager
def environment_set(name: str, value: str) -> Iterator[None]:
    """The environment variable ``name`` set to ``value`` while the block runs (child processes started
    in it inherit it), then as it was: restored, or removed if it was not set."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def lies_inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or lies somewhere under it (links resolved): where an output must
    not go when it would land among its own inputs."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def stem_key(name: str | Path) -> str:
    """The stem that pairs an image with its mask and its metadata row, in Unicode NFC: the same
    name typed on macOS (NFD) and elsewhere (NFC) must name the same image."""
    return unicodedata.normalize("NFC", Path(name).stem)


def separator_hint(columns: list[str]) -> str:
    """A hint when a CSV's header was read as one column because it is not comma-separated."""
    for separator, word in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
        if any(separator in str(c) for c in columns):
            return f"; the header looks separated by {word}: metadata.csv must be comma-separated"
    return ""


def link_problem(path: Path) -> str | None:
    """Why a directory entry that is a symbolic link cannot be read, or None."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link loop"
        return f"is a broken symbolic link (to {os.readlink(path)})"
    return None


def check_declared_size(path: Path, height: int, width: int) -> None:
    """Refuse, before decoding, an image whose header declares more than :data:`MAX_IMAGE_PIXELS`."""
    if height * width > MAX_IMAGE_PIXELS:
        raise HarnessError(f"{path}: declares {width} x {height} pixels ({height * width / 1e6:.0f} Mpx), more than "
                           f"the {MAX_IMAGE_PIXELS / 1e6:.0f} Mpx harness decodes from one file; "
                           "split or downsample it")


#: PIL's names of formats whose compression changes pixel values (a WebP can be lossless, but a mask
#: has no need of the doubt): a label image stored so has ids blurred at every particle edge.
LOSSY_FORMATS = ("JPEG", "MPO", "WEBP")


def lossy_mask_reason(stored_format: str | None) -> str:
    return (f"mask is stored as lossy {stored_format}, which changes label values at particle edges; save masks "
            "as PNG or TIFF")


def read_array(path: str | Path, labels: bool = False) -> np.ndarray:
    """Pixels of an image file as stored (no scaling); a clear error when it cannot be read. With
    ``labels`` (a mask), a lossy format is refused whatever the file's name says."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise HarnessError(f"{path}: file is empty (0 bytes)")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                if tif.pages:
                    check_declared_size(path, int(tif.pages.first.imagelength), int(tif.pages.first.imagewidth))
                return np.asarray(tif.asarray())
        with Image.open(path) as im:
            check_declared_size(path, im.size[1], im.size[0])
            if labels and im.format in LOSSY_FORMATS:
                raise HarnessError(f"{path}: {lossy_mask_reason(im.format)}")
            return np.asarray(im)
    except HarnessError:
        raise
    except Exception as err:
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
