"""The leaderboard store: immutable, validated record files and frozen releases.

Layout under a leaderboard root (``leaderboard/`` in the repository)::

    records/<dataset key>/<run_id>.json            one RunRecord, canonical JSON, never rewritten
    records/<dataset key>/<run_id>.per_image.json  its per-test-image scores (when the run kept them)
    releases/<vN>.json                             a manifest: every file above with its sha256

Filing is safe under concurrency: every file is written to a private temporary name, flushed,
and then hard-linked to its final name (``os.link`` fails instead of overwriting), while an
advisory lock on ``.lock`` serialises the duplicate checks of concurrent ``add`` processes.
A reader therefore sees a record completely or not at all, and nothing filed is ever replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.data.io import locked
from harness.errors import HarnessError
from harness.metrics.classification import ClassificationReport, check_rows
from harness.results.artifacts import OVERLAY_FILE
from harness.results.integrity import check_record, digest_path, digest_problem, digest_text, sha256_of
from harness.results.record import PER_IMAGE_FILE, RECORD_FILE, SCHEMA_VERSION, RunRecord, migrate

ROOT_ENV = "HARNESS_LEADERBOARD_DIR"
RECORDS_DIR = "records"
RELEASES_DIR = "releases"
CONFIRMATIONS_DIR = "confirmations"  # declarations of tests made before their cells ran (results.confirmation)
PER_IMAGE_SUFFIX = ".per_image.json"
#: The run folder's overlay montage, filed beside its record when the run has one (a picture for
#: readers: not part of the digest, which vouches for numbers)
OVERLAY_SUFFIX = ".overlay.png"
LOCK_FILE = ".lock"
RELEASE_NAME = re.compile(r"^v[0-9]+$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # a file name on any file system


class AlreadyFiled(HarnessError):
    """``add`` of a run whose record is filed with these very bytes: nothing to do (a sweep that files
    as it goes meets it on every cell it finished before)."""


def default_root() -> Path:
    """``$HARNESS_LEADERBOARD_DIR`` when set, else ``leaderboard`` in the working directory."""
    return Path(os.environ.get(ROOT_ENV) or "leaderboard")


def canonical_bytes(data: Any) -> bytes:
    """The one serialisation of a filed JSON document (sorted keys, 2-space indent, final newline)."""
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def validation_reason(err: ValidationError) -> str:
    """A pydantic error as one line: ``field.path: message; ...``."""
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        parts.append(f"{where}: {item['msg']}")
    return f"{err.error_count()} schema error(s): " + "; ".join(parts)


def cell_identity(record: RunRecord) -> dict[str, Any]:
    """What makes two records the same grid cell: filing both would count one seed twice."""
    return {
        "dataset": record.dataset.key,
        "manifest": record.dataset.manifest_hash,
        "profile": record.dataset.profile,
        "method": record.method.name,
        "code": record.method.code,
        "config": record.method.config_hash,
        "backbone": record.backbone,
        "budget": record.budget,
        "protocol": record.protocol,
        "seeds": record.seeds.model_dump(),
        "settings": record.settings,
        "numerics": record.numerics,
    }


def describe_cell(record: RunRecord) -> str:
    s = record.seeds
    return (f"method {record.method.name} (config {record.method.config_hash}), backbone {record.backbone}, "
            f"budget {record.budget}, protocol {record.protocol}, seeds split/data/train "
            f"{s.split}/{s.data}/{s.train}")


@dataclass(frozen=True)
class Filed:
    """A record as stored in the leaderboard."""

    path: Path
    record: RunRecord
    stored_schema: int  # the schema version written in the file (before migration)
    per_image: Path | None

    def per_image_scores(self) -> list[dict[str, Any]] | None:
        if self.per_image is None:
            return None
        return json.loads(self.per_image.read_text())


class ReleaseFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str  # relative to the leaderboard root, POSIX separators
    sha256: str


class ReleaseManifest(BaseModel):
    """A frozen snapshot: rebuilding tables from exactly these bytes gives the published tables."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    release: str
    created: str
    harness_version: str
    schema_versions: list[int]
    datasets: dict[str, int]  # dataset key -> number of records
    files: list[ReleaseFile]


# ---- reading a run ------------------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HarnessError(f"{path}: not valid JSON ({err})") from None


def parse_record(data: Any, source: Path) -> tuple[RunRecord, int]:
    """Validate raw JSON as a record (migrating older schemas); returns it and its stored schema version."""
    if not isinstance(data, dict):
        raise HarnessError(f"{source}: a record must be a JSON object, got {type(data).__name__}")
    stored = data.get("schema_version")
    try:
        migrated = migrate(dict(data))
    except ValueError as err:
        raise HarnessError(f"{source}: {err}") from None
    try:
        record = RunRecord.model_validate(migrated)
    except ValidationError as err:
        raise HarnessError(f"{source}: not a valid result record: {validation_reason(err)}") from None
    for what, value in (("dataset key", record.dataset.key), ("run_id", record.run_id)):
        if not _SAFE_NAME.match(value):
            raise HarnessError(f"{source}: {what} {value!r} is not a safe file name ([A-Za-z0-9._-], "
                               "at most 100 characters)")
    return record, int(stored)  # type: ignore[arg-type]  # migrate() accepted it: a known version


def _check_identity(record: RunRecord, source: Path) -> None:
    """Refuse a record whose cell could not have come from a run (an edited record.json): the numbers
    are recomputed on filing, but the fields that place a record in a table are not numbers."""
    from harness.data.splits import MAX_SEED, Budget

    if not _SAFE_NAME.match(record.method.name):
        raise HarnessError(f"{source}: method name {record.method.name!r} is not a method's name")
    try:
        Budget.parse(record.budget)
    except HarnessError as err:
        raise HarnessError(f"{source}: {err}") from None
    for what, seed in record.seeds.model_dump().items():
        if not 0 <= seed <= MAX_SEED:
            raise HarnessError(f"{source}: {what} seed {seed} is outside 0..{MAX_SEED}")
    # an ensemble's record names its K networks, member 0 with the run's seed; a reference row trains none
    stated, members = record.settings.get("ensemble", 1), record.members or []
    trained = stated if isinstance(stated, int) and stated > 1 and record.method.role != "reference" else 0
    if len(members) != trained or (members and members[0].seed != record.seeds.train):
        raise HarnessError(f"{source}: settings state an ensemble of {stated!r}, but the record names "
                           f"{len(members)} member(s) (seeds {[m.seed for m in members]}) for training seed "
                           f"{record.seeds.train}")


def _check_per_image(data: Any, record: RunRecord, source: Path) -> list[dict[str, Any]]:
    from pydantic import TypeAdapter

    from harness.metrics import OVERALL, ImageScores

    if isinstance(record.metrics, ClassificationReport):  # rows of truth and predictions, not particle scores
        try:
            return check_rows(data, record.metrics.classes)
        except ValueError as err:
            raise HarnessError(f"{source}: not the per-image rows of a classification record: {err}") from None
    try:
        scores = TypeAdapter(list[ImageScores]).validate_python(data)
    except ValidationError as err:
        raise HarnessError(f"{source}: not a list of per-image scores: {validation_reason(err)}") from None
    expected = record.metrics.n_images(OVERALL)
    if expected is not None and len(scores) != expected:
        raise HarnessError(f"{source}: {len(scores)} per-image scores, but the record's metrics cover "
                           f"{expected} test images")
    return [s.model_dump(mode="json") for s in scores]


def locate_record(source: Path) -> tuple[Path, Path | None]:
    """(record file, per-image file or None) for a run folder, a record.json or a filed record."""
    source = Path(source)
    if source.is_dir():
        record_path = source / RECORD_FILE
        per_image = source / PER_IMAGE_FILE
    else:
        record_path = source
        if source.name.endswith(PER_IMAGE_SUFFIX):
            raise HarnessError(f"{source}: this is a per-image score file; give the record beside it")
        if source.name == RECORD_FILE:
            per_image = source.with_name(PER_IMAGE_FILE)
        else:
            per_image = source.with_name(source.name.removesuffix(".json") + PER_IMAGE_SUFFIX)
    if not record_path.is_file():
        raise HarnessError(f"{source}: no {RECORD_FILE} there (a run folder or a record file is expected)")
    return record_path, per_image if per_image.is_file() else None


def read_run(source: Path) -> tuple[RunRecord, int, list[dict[str, Any]] | None, dict[str, Any]]:
    """Validate a run folder (or record file).

    Returns the (migrated) record, its stored schema version, its per-image scores or None, and
    the raw JSON document as stored.
    """
    record_path, per_image_path = locate_record(source)
    raw = _load_json(record_path)
    record, stored = parse_record(raw, record_path)
    per_image = None
    if per_image_path is not None:
        per_image = _check_per_image(_load_json(per_image_path), record, per_image_path)
    return record, stored, per_image, raw


# ---- atomic file creation -----------------------------------------------------------------------


def create_exclusive(path: Path, payload: bytes) -> bool:
    """Write ``payload`` to ``path`` only if nothing is there; True if written, False if it existed.

    The bytes go to a private temporary file first, are flushed to disk, and are then hard-linked
    into place: the final name either does not exist or holds complete content.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # file systems without hard links: O_EXCL creation is the fallback
            try:
                fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd2, "wb") as handle:
                handle.write(payload)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# ---- the store ----------------------------------------------------------------------------------


class RecordStore:
    """Records and releases under one root folder."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    @property
    def records_dir(self) -> Path:
        return self.root / RECORDS_DIR

    @property
    def releases_dir(self) -> Path:
        return self.root / RELEASES_DIR

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # without POSIX locks (Windows) the hard-link step alone still prevents overwrites
        with locked(self.root / LOCK_FILE):
            yield

    # -- adding

    def add(self, source: Path, *, check: bool = True) -> Path:
        """Validate a run and file it; returns the new record file. Refusals raise HarnessError.

        Every aggregate of the record is recomputed from its per-image scores first
        (:func:`harness.results.integrity.check_record`); ``check=False`` skips only that, for
        tests of the tables that file fabricated numbers on purpose.
        """
        record, stored, per_image, raw = read_run(source)
        _check_identity(record, source)
        if record.accepted_leaks:
            raise HarnessError(f"{source}: the run accepted {len(record.accepted_leaks)} near-duplicate pair(s) "
                               f"between images it chose on and images it was judged on (--allow-leakage; the first: "
                               f"{record.accepted_leaks[0]}), so its scores are not comparable with a clean run's; "
                               "not filed")
        if check:
            check_record(record, per_image, source)
        # filed as its producer wrote it (older schemas are migrated on every read, never on disk),
        # so the stored schema version keeps telling which records may share a table
        payload = canonical_bytes(raw if stored != SCHEMA_VERSION else record.dump())
        directory = self.records_dir / record.dataset.key
        target = directory / f"{record.run_id}.json"
        identity = cell_identity(record)
        with self._locked():
            if target.exists():
                if target.read_bytes() == payload:
                    raise AlreadyFiled(f"{source}: already filed with identical content as {target}")
                raise HarnessError(f"{source}: run_id {record.run_id} is already filed as {target} "
                                   "with different content; records are immutable")
            for other in self._dataset_records(directory):
                if cell_identity(other.record) == identity:
                    raise HarnessError(f"{source}: the same grid cell is already filed as {other.path} "
                                       f"(run {other.record.run_id}: {describe_cell(record)}); "
                                       "one record per cell and seed")
            files = [target]
            if per_image is not None:
                side = directory / f"{record.run_id}{PER_IMAGE_SUFFIX}"
                with contextlib.suppress(FileNotFoundError):
                    side.unlink()  # an orphan left by an interrupted add (no record claims it)
                create_exclusive(side, canonical_bytes(per_image))
                files.append(side)
            picture = source / OVERLAY_FILE if Path(source).is_dir() else Path(source).with_name(OVERLAY_FILE)
            if picture.is_file():
                overlay = directory / f"{record.run_id}{OVERLAY_SUFFIX}"
                with contextlib.suppress(FileNotFoundError):
                    overlay.unlink()  # an orphan of an interrupted add, as above
                create_exclusive(overlay, picture.read_bytes())
            digest = digest_path(target)
            with contextlib.suppress(FileNotFoundError):
                digest.unlink()  # likewise an orphan: the record it names is not filed
            if not create_exclusive(target, payload):  # pragma: no cover - the lock prevents it
                raise HarnessError(f"{source}: {target} appeared while filing; nothing was replaced")
            # the digest comes last: a record without one reads as filed before digests were kept
            create_exclusive(digest, digest_text(files).encode("utf-8"))
        return target

    # -- reading

    def _dataset_records(self, directory: Path) -> list[Filed]:
        if not directory.is_dir():
            return []
        files = sorted(p for p in directory.glob("*.json")
                       if not p.name.endswith(PER_IMAGE_SUFFIX) and not p.name.startswith("."))
        return [self._read_filed(p) for p in files]

    def _read_filed(self, path: Path) -> Filed:
        record, stored = parse_record(_load_json(path), path)
        if path.stem != record.run_id or path.parent.name != record.dataset.key:
            raise HarnessError(f"{path}: filed under the wrong name (run {record.run_id}, dataset "
                               f"{record.dataset.key}); records must not be moved by hand")
        side = path.with_name(f"{record.run_id}{PER_IMAGE_SUFFIX}")
        problem = digest_problem(path, [path, side] if side.is_file() else [path])
        if problem:
            raise HarnessError(f"{path}: {problem}; filed records are never edited (file a new run instead)")
        return Filed(path=path, record=record, stored_schema=stored, per_image=side if side.is_file() else None)

    def verify(self, seal: bool = False) -> list[tuple[Path, str | None]]:
        """Every filed record with the reason it fails (None when it holds): its digest, its schema,
        and every aggregate recomputed from its per-image scores. ``seal`` writes the digest of a
        record filed before digests were kept, once its numbers check out."""
        results: list[tuple[Path, str | None]] = []
        if not self.records_dir.is_dir():
            raise HarnessError(f"{self.root}: no leaderboard here (no records/ folder); check --root")
        for directory in sorted(p for p in self.records_dir.iterdir() if p.is_dir()):
            for path in sorted(p for p in directory.glob("*.json")
                               if not p.name.endswith(PER_IMAGE_SUFFIX) and not p.name.startswith(".")):
                try:
                    filed = self._read_filed(path)
                    check_record(filed.record, filed.per_image_scores(), path)
                except HarnessError as err:
                    results.append((path, str(err).removeprefix(f"{path}: ")))
                    continue
                if not digest_path(path).is_file():
                    if not seal:  # filed before digests were kept, or its digest removed: nothing vouches for it
                        results.append((path, f"has no digest ({digest_path(path).name}), so an edit would go "
                                              "unseen; its numbers recompute, and `harness leaderboard verify "
                                              "--seal` writes the digest if it was filed before digests were kept"))
                        continue
                    with self._locked():
                        files = [path] + ([filed.per_image] if filed.per_image is not None else [])
                        create_exclusive(digest_path(path), digest_text(files).encode("utf-8"))
                results.append((path, None))
        return results

    def records(self) -> list[Filed]:
        """Every filed record, ordered by dataset key and run id."""
        if not self.records_dir.is_dir():
            return []
        out: list[Filed] = []
        for directory in sorted(p for p in self.records_dir.iterdir() if p.is_dir()):
            out.extend(self._dataset_records(directory))
        return out

    def find(self, run_id: str) -> Filed:
        matches = [f for f in self.records() if f.record.run_id == run_id]
        if not matches:
            raise HarnessError(f"no record with run_id {run_id!r} under {self.records_dir}")
        return matches[0]

    # -- releases

    def release_path(self, name: str) -> Path:
        if not RELEASE_NAME.match(name):
            raise HarnessError(f"release name {name!r} must look like v1, v2, ...")
        return self.releases_dir / f"{name}.json"

    def release(self, name: str) -> ReleaseManifest:
        """Freeze every filed record (and per-image file), and every declared confirmation, with its sha256
        as release ``name``."""
        from harness import __version__

        path = self.release_path(name)
        if not self.records_dir.is_dir():  # before the lock, which would create the folder it refuses
            raise HarnessError(f"no records under {self.records_dir} to release (check --root)")
        with self._locked():
            if path.exists():
                raise HarnessError(f"release {name} already exists ({path}); releases are immutable")
            filed = self.records()
            if not filed:
                raise HarnessError(f"no records under {self.records_dir} to release")
            files = []
            for f in filed:
                files.append(self._entry(f.path))
                if f.per_image is not None:
                    files.append(self._entry(f.per_image))
            files += [self._entry(path) for path in self._confirmation_files()]
            datasets: dict[str, int] = {}
            for f in filed:
                datasets[f.record.dataset.key] = datasets.get(f.record.dataset.key, 0) + 1
            manifest = ReleaseManifest(
                release=name,
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                harness_version=__version__,
                schema_versions=sorted({f.stored_schema for f in filed}),
                datasets=dict(sorted(datasets.items())),
                files=sorted(files, key=lambda e: e.path),
            )
            if not create_exclusive(path, canonical_bytes(manifest.model_dump(mode="json"))):
                raise HarnessError(f"release {name} appeared while writing it ({path})")  # pragma: no cover
        return manifest

    def _entry(self, path: Path) -> ReleaseFile:
        return ReleaseFile(path=path.relative_to(self.root).as_posix(), sha256=sha256_of(path))

    def read_release(self, name: str) -> ReleaseManifest:
        path = self.release_path(name)
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in self.releases_dir.glob("v*.json"))) or "none"
            raise HarnessError(f"release {name} not found under {self.releases_dir} (releases: {known})")
        try:
            manifest = ReleaseManifest.model_validate(_load_json(path))
        except ValidationError as err:
            raise HarnessError(f"{path}: not a release manifest: {validation_reason(err)}") from None
        # the manifest vouches for its files; its own edits show where it disagrees with itself
        if manifest.release != name:
            raise HarnessError(f"{path}: names release {manifest.release!r}, not {name!r} (edited or renamed)")
        records: dict[str, int] = {}
        for entry in manifest.files:
            parts = entry.path.split("/")
            if parts[0] != CONFIRMATIONS_DIR and not entry.path.endswith(PER_IMAGE_SUFFIX) and len(parts) >= 2:
                records[parts[-2]] = records.get(parts[-2], 0) + 1
        if records != {k: v for k, v in manifest.datasets.items() if v}:
            raise HarnessError(f"{path}: lists {sum(records.values())} record file(s) where its dataset counts say "
                               f"{sum(manifest.datasets.values())} (edited)")
        return manifest

    def latest_release(self) -> ReleaseManifest | None:
        """The newest release's manifest (by its number, v2 before v10), or None before the first."""
        names = sorted((p.stem for p in self.releases_dir.glob("v*.json") if p.stem[1:].isdigit()),
                       key=lambda n: int(n[1:]))
        return self.read_release(names[-1]) if names else None

    def release_records(self, name: str) -> list[Filed]:
        """The records of release ``name``, after checking every file against its sha256."""
        manifest = self.read_release(name)
        listed = {e.path: e.sha256 for e in manifest.files}
        for rel, digest in listed.items():
            path = self.root / rel
            if not path.is_file():
                raise HarnessError(f"release {name}: {path} is missing")
            if sha256_of(path) != digest:
                raise HarnessError(f"release {name}: {path} changed since the release (sha256 differs)")
        out = []
        for rel in sorted(listed):
            if rel.endswith(PER_IMAGE_SUFFIX) or rel.startswith(f"{CONFIRMATIONS_DIR}/"):
                continue
            filed = self._read_filed(self.root / rel)
            side = filed.per_image
            if side is not None and side.relative_to(self.root).as_posix() not in listed:
                filed = Filed(filed.path, filed.record, filed.stored_schema, None)  # added after the release
            out.append(filed)
        return out

    def _confirmation_files(self) -> list[Path]:
        return sorted((self.root / CONFIRMATIONS_DIR).glob("*.json"))

    def confirmations(self, release: str | None = None) -> list[str]:
        """The names of the declared confirmations: those frozen in ``release`` (checked with its records),
        else those under the root now."""
        if release is None:
            return [p.stem for p in self._confirmation_files()]
        prefix = f"{CONFIRMATIONS_DIR}/"
        return sorted(Path(e.path).stem for e in self.read_release(release).files if e.path.startswith(prefix))

    def select(self, release: str | None = None) -> list[Filed]:
        return self.release_records(release) if release else self.records()


def add_many(store: RecordStore, sources: Sequence[Path]) -> list[tuple[Path, Path | None, str]]:
    """File several runs; returns (source, filed path or None, message) for each, refusals included."""
    outcomes: list[tuple[Path, Path | None, str]] = []
    for source in sources:
        try:
            target = store.add(source)
            outcomes.append((Path(source), target, f"filed {target}"))
        except HarnessError as err:
            outcomes.append((Path(source), None, f"refused: {err}"))
    return outcomes
