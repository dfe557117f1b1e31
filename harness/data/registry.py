"""Resolve a dataset name or folder path to a :class:`~harness.data.base.Dataset`."""

from __future__ import annotations

from pathlib import Path

from harness.data.base import Dataset
from harness.errors import HarnessError
from harness.profiles import DEFAULT_PROFILE, PROFILES

SYNTHETIC = {"synthetic-sem": "SEM", "synthetic-tem": "TEM"}
NANOWIRE = "synthetic-nanowire"


def dataset_names() -> list[str]:
    return sorted([*SYNTHETIC, NANOWIRE])


def open_dataset(
    name: str,
    profile: str = DEFAULT_PROFILE,
    seed: int = 0,
    connectivity: int = 8,
    crop_bottom: int | None = None,
) -> Dataset:
    """An embedded dataset by name (sized by ``profile``, generated from ``seed``), or a folder.

    ``seed`` is the data-generation seed of embedded datasets; it is not the split seed and not
    the training seed. ``connectivity`` (binary masks -> particles) and ``crop_bottom`` (data-bar
    rows) apply to folders only.
    """
    if profile not in PROFILES:
        raise HarnessError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    if name in SYNTHETIC:
        from harness.data.synthetic import SyntheticDataset

        return SyntheticDataset(modality=SYNTHETIC[name], profile=profile, seed=seed)
    if name == NANOWIRE:
        from harness.data.nanowire import NanowireDataset

        return NanowireDataset(profile=profile, seed=seed)
    path = Path(name)
    if path.is_dir():
        from harness.data.folder import FolderDataset

        return FolderDataset(path, connectivity=connectivity, crop_bottom=crop_bottom)
    if path.exists():
        raise HarnessError(f"dataset {name!r} is a file, not a folder: give the folder holding images/ and masks/")
    if len(path.parts) > 1 or name.startswith((".", "~")):  # meant as a path
        raise HarnessError(f"dataset folder {name!r} does not exist")
    raise HarnessError(
        f"unknown dataset {name!r}: give one of {', '.join(dataset_names())} or a folder path"
    )
