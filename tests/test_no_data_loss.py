"""Nothing is lost: no command writes over its inputs or a finished record, writes are atomic, and
bad seeds or a diverging run end in one line, not a traceback (issue: nothing lost, items 1, 2, 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from harness.cli import main
from harness.data.io import write_text_atomic


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_evaluate_refuses_to_write_its_scores_among_its_inputs(tmp_path):
    for side in ("pred", "truth"):
        (tmp_path / side).mkdir()
        Image.fromarray(np.array([[0, 1], [1, 1]], dtype=np.uint8)).save(tmp_path / side / "a.png")
    mask = tmp_path / "truth" / "a.png"
    before = mask.read_bytes()
    result = invoke("evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"),
                    "--json", str(mask))
    assert result.exit_code == 2 and "inside the --truth folder" in result.output
    assert mask.read_bytes() == before
    ok = invoke("evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"),
                "--json", str(tmp_path / "scores.json"))
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "scores.json").read_text())["images"]


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    path = write_text_atomic(tmp_path / "deep" / "x.json", "{}\n")
    write_text_atomic(path, "[]\n")
    assert path.read_text() == "[]\n" and [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_atomic_writes_give_ordinary_files_by_the_umask(tmp_path):
    """The temporary file is private (mkstemp); what it becomes must be readable as the umask says, or a
    web server running as another user cannot serve the static site."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert stat.S_IMODE(write_text_atomic(tmp_path / "a.html", "x").stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(write_text_atomic(tmp_path / "b.html", "x").stat().st_mode) == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize("args", [
    ["run", "--method", "none", "--budget", "10%", "--seed", "-1"],
    ["run", "--method", "none", "--budget", "10%", "--seed", str(2**64)],
    ["run", "--method", "none", "--budget", "10%", "--data-seed", "-1"],
    ["run", "--method", "none", "--budget", "10%", "--split-seed", "-3"],
    ["sweep", "--methods", "none", "--seeds", "0,-1"],
    ["sweep", "--methods", "none", "--seeds", "3-1"],
    ["sweep", "--methods", "none", "--seeds", "0-x"],
    ["leaderboard", "show", "--seeds", "2-"],
    ["leaderboard", "show", "--seeds", "0-100000"],
    ["leaderboard", "show", "--seeds", ","],
    ["data", "check", ".", "--split-seed", "-1"],
])
def test_bad_seeds_are_refused_in_one_line(args):
    result = invoke(*args, "--profile", "smoke") if args[0] in ("run", "sweep") else invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and ("seed" in result.output.lower())


def test_a_run_never_replaces_a_finished_record(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "record.json").write_text('{"kept": true}\n')
    result = invoke("run", "--method", "none", "--budget", "10%", "--profile", "smoke", "--quiet", "--out", str(out))
    assert result.exit_code == 2 and "already holds a run record" in result.output
    assert json.loads((out / "record.json").read_text()) == {"kept": True}


def test_a_sweep_skips_finished_cells_and_force_runs_them_again(tmp_path):
    args = ["sweep", "--methods", "none", "--budgets", "10%", "--seeds", "0", "--profile", "smoke", "--quiet",
            "--out", str(tmp_path)]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    (record,) = tmp_path.glob("*/*/record.json")
    made = json.loads(record.read_text())["run_id"]
    again = invoke(*args)
    assert again.exit_code == 0 and "skipping" in again.output
    assert json.loads(record.read_text())["run_id"] == made
    forced = invoke(*args, "--force")
    assert forced.exit_code == 0 and "skipping" not in forced.output
    assert json.loads(record.read_text())["run_id"] != made
    assert (record.parent / "per_image.json").is_file()


def test_a_diverging_run_ends_in_one_line(tmp_path):
    result = invoke("run", "--method", "denoise", "--budget", "10%", "--profile", "smoke", "--quiet",
                    "--config", "lr=1e30", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert "diverged" in result.output and "Traceback" not in result.output


def test_setting_overrides_are_stated_in_the_record_and_kept_apart(tmp_path):
    args = ["sweep", "--methods", "denoise", "--budgets", "2", "--seeds", "0", "--profile", "smoke", "--quiet",
            "--out", str(tmp_path)]
    assert invoke(*args).exit_code == 0
    short = invoke(*args, "--pretrain-steps", "2", "--finetune-steps", "3", "--crop-size", "32",
                   "--finetune-batch", "2")
    assert short.exit_code == 0 and "skipping" not in short.output, short.output
    default, = tmp_path.glob("*/denoise-2-finetune-seed0/record.json")
    override, = tmp_path.glob("*/denoise-2-finetune-seed0-pretrain2-finetune3-crop32-batch2/record.json")
    a, b = json.loads(default.read_text()), json.loads(override.read_text())
    assert b["settings"]["pretrain_steps"] == 2 and b["pretrain"]["steps"] == 2
    assert b["settings"]["finetune_steps"] == 3 and b["selection"]["finetune_steps_run"] == 3
    assert (b["settings"]["crop_size"], b["settings"]["finetune_batch"]) == (32, 2)
    assert (a["settings"]["crop_size"], a["settings"]["finetune_batch"]) == (64, 4)
    assert a["settings"]["pretrain_steps"] == 4 and a["settings"] != b["settings"]
    from harness.reproduce import request_for
    from harness.results.leaderboard import RecordStore
    from harness.results.record import read_record

    store = RecordStore(tmp_path / "lb")
    store.add(default.parent)
    store.add(override.parent)  # another cell: its settings differ
    assert request_for(read_record(override)).pretrain_steps == 2
    assert request_for(read_record(override)).finetune_steps == 3
    again, profiles = request_for(read_record(override)), request_for(read_record(default))
    assert (again.crop_size, again.finetune_batch) == (32, 2)
    assert profiles.pretrain_steps is None and (profiles.crop_size, profiles.finetune_batch) == (None, None)
    bad = invoke("run", "--method", "none", "--budget", "2", "--profile", "smoke", "--finetune-steps", "0")
    assert bad.exit_code == 2 and "--finetune-steps" in bad.output
    odd = invoke("run", "--method", "none", "--budget", "2", "--profile", "smoke", "--crop-size", "100")
    assert odd.exit_code == 2 and "--crop-size" in odd.output and "multiple of 32 (try 96)" in odd.output


def test_a_lock_is_held_once_and_a_cell_run_elsewhere_is_skipped(tmp_path):
    """Two processes on one cell would write its folder's files in turn: the second skips it, running
    nothing, and says so (a lock made by another open file description conflicts as another process's)."""
    from harness.data.io import locked
    from harness.pipeline import RunRequest
    from harness.sweep import cell_dir, run_cells

    request = RunRequest(method="none", budget="1", profile="smoke", seed=0)
    cell = cell_dir(tmp_path, request)
    warned: list[str] = []
    with locked(cell.with_name(f".{cell.name}.lock")) as held:
        with locked(cell.with_name(f".{cell.name}.lock"), wait=False) as again:
            assert held and not again
        rows = run_cells([request], tmp_path, force=False, log=lambda _m: None, warn=warned.append)
    assert [row["status"] for row in rows] == ["running elsewhere"] and not cell.exists()
    assert warned == [f"   skipping: {cell} is being run by another process now"]
    with locked(cell.with_name(f".{cell.name}.lock"), wait=False) as free:
        assert free  # released with the block


def test_where_locks_cannot_be_taken_the_work_goes_on_unlocked_with_a_warning(tmp_path, monkeypatch):
    """A file system without flock (Lustre mounted without it) or a read-only folder must not stop a
    sweep; and a refusal inside a block that waited for nothing carries no stray BlockingIOError."""
    import errno
    import warnings

    from harness.data import io

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(io.fcntl, "flock", no_locks)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with io.locked(tmp_path / "cell.lock", wait=False) as ours:
            assert ours
    assert any("file locks cannot be taken here (No locks available)" in str(w.message) for w in caught)
    monkeypatch.undo()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with io.locked(blocked / "cell.lock") as ours:  # its folder cannot be made: unlocked, warned
                assert ours
                raise ValueError("the block's own error")
        except ValueError as err:
            assert err.__context__ is None
    assert any("file locks cannot be taken here" in str(w.message) for w in caught)
    with io.locked(tmp_path / "held.lock"):
        try:
            with io.locked(tmp_path / "held.lock", wait=False) as ours:
                assert not ours
                raise ValueError("the block's own error")
        except ValueError as err:
            assert err.__context__ is None


def test_under_torchrun_a_failing_cell_is_recorded_then_ends_the_job(tmp_path, monkeypatch):
    """A rank that moved on past a failed cell would hang the others in its collectives: the cell's
    failure is written (per rank), then raised so that torchrun ends the job."""
    import harness.sweep as sweep
    from harness.pipeline import RunRequest

    def diverge(*_args, **_kwargs):
        raise RuntimeError("diverged on this rank")

    monkeypatch.setattr(sweep, "run_one", diverge)
    monkeypatch.setattr(sweep, "Context", lambda request: object())
    monkeypatch.setattr(sweep, "world_size", lambda: 2)
    monkeypatch.setattr(sweep, "rank", lambda: 1)
    request = RunRequest(method="none", budget="1", profile="smoke", seed=0)
    with pytest.raises(RuntimeError, match="diverged on this rank"):
        sweep.run_cells([request], tmp_path, force=False, log=lambda _m: None, warn=lambda _m: None)
    (failure,) = (tmp_path / "failures").glob("*-rank1.json")
    assert "diverged on this rank" in failure.read_text()
