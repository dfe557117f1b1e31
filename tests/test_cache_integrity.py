"""Damaged caches are detected, reported and rebuilt, never a traceback in every later run
(issue: nothing lost, item 3): a truncated or edited cached encoder, an unreadable meta.json,
a truncated or edited dataset entry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from harness.cli import main
from harness.data.registry import open_dataset
from harness.errors import HarnessWarning
from harness.pipeline import ENCODER_FILE, META_FILE, read_cached_encoder


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 + 17] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def cached_encoder(tmp_path_factory) -> tuple[Path, dict]:
    """One smoke pretraining into a private cache; returns its cache folder and the record."""
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("run") / "first"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE_DIR", str(cache))
        result = CliRunner().invoke(main, ["run", "--method", "denoise", "--budget", "2", "--seed", "11",
                                           "--profile", "smoke", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "record.json").read_text())
    return cache / "pretrained" / f"denoise-{record['pretrain']['cache_key']}", record


@pytest.mark.parametrize(("damage", "file", "reason"), [
    (_truncate, ENCODER_FILE, "does not match its sha256"),
    (_flip_middle, ENCODER_FILE, "does not match its sha256"),
    (_truncate, META_FILE, "unreadable: JSONDecodeError"),
])
def test_a_damaged_cached_encoder_is_recognised(cached_encoder, tmp_path, damage, file, reason):
    directory, _ = cached_encoder
    copy = tmp_path / directory.name
    copy.mkdir()
    for name in (ENCODER_FILE, META_FILE):
        (copy / name).write_bytes((directory / name).read_bytes())
    state, meta = read_cached_encoder(copy)
    assert meta["sha256"] and all(torch.isfinite(t).all() for t in state.values())
    damage(copy / file)
    found = read_cached_encoder(copy)
    assert isinstance(found, str) and reason in found


def test_without_a_digest_truncated_weights_are_still_caught(cached_encoder, tmp_path):
    """Entries written before the digest was kept: safetensors itself refuses a cut file."""
    directory, _ = cached_encoder
    copy = tmp_path / directory.name
    copy.mkdir()
    meta = json.loads((directory / META_FILE).read_text())
    del meta["sha256"]
    (copy / META_FILE).write_text(json.dumps(meta))
    (copy / ENCODER_FILE).write_bytes((directory / ENCODER_FILE).read_bytes()[:-100])
    assert "unreadable" in read_cached_encoder(copy)


def test_a_run_over_a_damaged_cache_retrains_and_gets_the_same_numbers(cached_encoder, tmp_path, monkeypatch):
    directory, first = cached_encoder
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(directory.parent.parent))
    _truncate(directory / ENCODER_FILE)
    out = tmp_path / "healed"
    result = CliRunner().invoke(main, ["run", "--method", "denoise", "--budget", "2", "--seed", "11",
                                       "--profile", "smoke", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "is damaged" in result.output and "training it again" in result.output
    healed = json.loads((out / "record.json").read_text())
    assert not healed["pretrain"]["reused_cache"] and healed["metrics"] == first["metrics"]
    assert not isinstance(read_cached_encoder(directory), str)  # rebuilt in place


@pytest.mark.parametrize("damage", [_truncate, _flip_middle])
def test_a_damaged_dataset_entry_is_rendered_again(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    dataset = open_dataset("synthetic-sem", profile="smoke")
    sample_id = str(dataset.index()["id"].iloc[0])
    first = dataset.load(sample_id)
    entry = dataset.cache_dir / f"{sample_id}.npz"
    damage(entry)
    with pytest.warns(HarnessWarning, match="damaged dataset cache entry"):
        again = dataset.load(sample_id)
    assert np.array_equal(again.image, first.image) and np.array_equal(again.mask, first.mask)
    np.load(entry)["image"]  # healed on disk too
