"""`harness datasets`, `data export`, `data preview`, `splits show` as a user runs them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_version_and_help():
    assert invoke("--version").output.startswith("harness, version ")
    for command in (["--help"], ["data", "export", "--help"], ["splits", "show", "--help"], ["run", "--help"]):
        result = invoke(*command)
        assert result.exit_code == 0 and "Usage:" in result.output


def test_datasets_lists_both_modalities():
    result = invoke("datasets", "--profile", "smoke")
    assert result.exit_code == 0
    assert "synthetic-sem" in result.output and "synthetic-tem" in result.output
    assert "high-mag" in result.output and "low-mag" in result.output


def test_export_is_byte_identical_for_a_seed_and_differs_for_another(tmp_path):
    def export(name: str, seed: int) -> dict[str, str]:
        out = tmp_path / name
        result = invoke("data", "export", "synthetic-sem", "--split", "test", "--out", str(out),
                        "--profile", "smoke", "--data-seed", str(seed), "--limit", "3")
        assert result.exit_code == 0, result.output
        return tree_digest(out)

    first, again, other = export("a", 0), export("b", 0), export("c", 1)
    assert first == again
    assert any(name.startswith("images/") for name in first) and "metadata.csv" in first
    assert any(name.startswith("masks/") for name in first)
    assert first != other


def test_export_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    result = invoke("data", "export", "synthetic-sem", "--split", "test", "--out", str(tmp_path / "x"),
                    "--profile", "smoke")
    assert result.exit_code == 2 and "not empty" in result.output


def test_an_export_of_an_empty_split_is_refused_not_written_empty(tmp_path):
    from test_folder import disc_mask, make_folder, micrograph

    names = [f"i{k}.tif" for k in range(6)]
    root = make_folder(tmp_path / "lab", {n: micrograph(k) for k, n in enumerate(names)},
                       {n: disc_mask(k) for k, n in enumerate(names)})  # every image labelled: no unlabeled pool
    result = invoke("data", "export", str(root), "--split", "unlabeled", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "holds no image" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    inside = invoke("data", "export", str(root), "--split", "test", "--out", str(root / "exported"))
    assert inside.exit_code == 2 and "lies inside the dataset folder" in inside.output
    assert not (root / "exported").exists()


def test_a_stopped_export_leaves_nothing_under_its_name_and_runs_again(tmp_path, monkeypatch):
    from harness.data.synthetic import SyntheticDataset

    real_load, calls = SyntheticDataset.load, []

    def load_then_stop(self, sample_id):
        calls.append(sample_id)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the export
        return real_load(self, sample_id)

    out = tmp_path / "export"
    args = ("data", "export", "synthetic-sem", "--split", "test", "--out", str(out), "--profile", "smoke")
    monkeypatch.setattr(SyntheticDataset, "load", load_then_stop)
    stopped = invoke(*args)
    assert stopped.exit_code != 0 and not out.exists()
    assert list(tmp_path.iterdir()) == []  # no partial folder left beside it either
    monkeypatch.setattr(SyntheticDataset, "load", real_load)
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert (out / "metadata.csv").is_file() and oct(out.stat().st_mode & 0o777) == "0o755"


def test_splits_show_prints_pools_budget_and_hash():
    result = invoke("splits", "show", "synthetic-tem", "--profile", "smoke", "--budget", "10%")
    assert result.exit_code == 0, result.output
    for word in ("unlabeled", "train", "val", "test", "manifest hash", "budget 10%"):
        assert word in result.output


@pytest.mark.parametrize("budget", ["0%", "150%", "abc"])
def test_splits_show_refuses_bad_budgets(budget):
    result = invoke("splits", "show", "synthetic-sem", "--profile", "smoke", "--budget", budget)
    assert result.exit_code == 2
    assert result.output.startswith("error: label budget")


def test_unknown_dataset_is_a_clear_error():
    result = invoke("splits", "show", "no-such-dataset")
    assert result.exit_code == 2 and "unknown dataset 'no-such-dataset'" in result.output


def test_preview_writes_a_png(tmp_path):
    out = tmp_path / "preview.png"
    result = invoke("data", "preview", "synthetic-sem", "synthetic-tem", "--out", str(out), "--profile", "smoke",
                    "--per-scale", "1")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
