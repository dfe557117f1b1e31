"""The numerics version (issue: nothing lost, item 11): pinned, stated by every record, never
pooled across, and a committed smoke record reproduces to the last digit at HEAD (the CI
regression test for anything that moves a number)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.numerics import NUMERICS_VERSION
from harness.reproduce import reproduce
from harness.results.boards import build_boards
from harness.results.leaderboard import RecordStore
from harness.results.provenance import ROUNDING_KEYS, hardware
from harness.results.record import RunRecord, read_record

REFERENCE = Path(__file__).parent / "data" / "reference-run"
# the same run made on each CPU kind these machines come in (torch's, numpy's and the BLAS's kernels
# decide the last digits): reference-run on an AMD EPYC with AVX512, reference-run-xeon on an Intel Xeon
# (AVX512_SPR), reference-run-avx2 on an AMD EPYC with AVX2 only (OpenBLAS Haswell kernels)
REFERENCES = sorted(REFERENCE.parent.glob("reference-run*"))
KERNEL_KEYS = ROUNDING_KEYS  # torch's and numpy's instruction sets, BLAS kernels


def test_the_numerics_version_is_pinned():
    # A change that moves any number bumps NUMERICS_VERSION (harness/numerics.py), regenerates
    # tests/data/reference-run* (harness run --method denoise --budget 2 --seed 0 --profile smoke
    # --task-version distmap-v2 --out /tmp/ref --quiet with OMP_NUM_THREADS=1, on a clean tree; each on
    # its own CPU kind, and those of a kind not at hand are removed) and updates this line, in the same commit.
    assert NUMERICS_VERSION == "2"


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the reference record states 1 thread
    yield
    torch.set_num_threads(threads)


def test_the_committed_reference_records_are_one_run_on_different_cpus():
    records = [read_record(folder / "record.json") for folder in REFERENCES]
    assert records and all(r.numerics == NUMERICS_VERSION for r in records)
    # one run: the same cell and settings (a command may restate what was the default when it ran:
    # --task-version distmap-v2 once distmap-v3 became the default)
    assert len({(r.method.name, r.budget, r.seeds.train, r.dataset.profile) for r in records}) == 1
    assert all(r.command.startswith("harness run --method denoise --budget 2 --seed 0 --profile smoke")
               for r in records)
    assert len({json.dumps(r.settings, sort_keys=True) for r in records}) == 1
    assert len({tuple(r.hardware.get(k) for k in KERNEL_KEYS) for r in records}) == len(records)


def test_the_committed_reference_record_reproduces_at_head(one_thread):
    here = tuple(hardware()[k] for k in KERNEL_KEYS)
    matching = [f for f in REFERENCES if tuple(read_record(f / "record.json").hardware.get(k) for k in KERNEL_KEYS)
                == here]
    if not matching:
        pytest.skip(f"this CPU runs {dict(zip(KERNEL_KEYS, here))} kernels; no reference record was made with "
                    "them: float results may differ in the last digits")
    record = read_record(matching[0] / "record.json")
    assert record.numerics == NUMERICS_VERSION and record.method.name == "denoise" and record.pretrain.steps > 0
    per_image = json.loads((matching[0] / "per_image.json").read_text())
    result = reproduce(record, per_image, fresh=True, log=lambda _msg: None)
    assert result.matches, result.summary()
    assert result.compared > 500


def test_a_record_of_another_numerics_version_is_not_reproduced_without_force(one_thread):
    data = json.loads((REFERENCE / "record.json").read_text())
    data["numerics"] = "0"
    with pytest.raises(HarnessError, match="cannot reproduce run .* exactly: it was computed under an unversioned"):
        reproduce(RunRecord.model_validate(data), log=lambda _msg: None)


def test_records_of_different_numerics_versions_never_share_a_table(tmp_path):
    store = RecordStore(tmp_path / "lb")
    for numerics in ("0", "1"):
        data = json.loads((REFERENCE / "record.json").read_text())
        data.update(numerics=numerics, run_id=f"reference-n{numerics}")
        run = tmp_path / numerics
        run.mkdir()
        (run / "record.json").write_text(json.dumps(data))
        (run / "per_image.json").write_text((REFERENCE / "per_image.json").read_text())
        store.add(run)  # the same cell and seed, but another numerics version: another cell
    boards = build_boards(store.records())
    assert len(boards) == 2 and {b.key.numerics for b in boards} == {"0", "1"}
    assert [b.key.title.endswith("numerics 1") for b in boards] == [False, True]


def test_the_blas_fingerprint_is_numpys_and_scipys_whatever_else_is_loaded(tmp_path):
    from harness.results.provenance import _under_package, blas_core

    before = blas_core()
    import rapidocr_onnxruntime  # noqa: F401  (loads opencv, which ships an OpenBLAS of its own)

    assert blas_core() == before and before.startswith("openblas ")
    site = tmp_path / "site-packages"
    assert _under_package(site / "numpy.libs" / "libscipy_openblas64_.so", site, ("numpy", "scipy"))
    assert not _under_package(site / "opencv_python.libs" / "libopenblasp.so", site, ("numpy", "scipy"))
    assert not _under_package(tmp_path / "elsewhere" / "libopenblas.so", site, ("numpy", "scipy"))
