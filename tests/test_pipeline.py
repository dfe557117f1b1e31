"""The main job end to end on the smoke profile: `harness run` and `harness sweep`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.data.scales import SCALE_NAMES


def run(tmp_path, *args: str):
    result = CliRunner().invoke(main, ["run", "--profile", "smoke", "--quiet", *args], catch_exceptions=False)
    return result


def read(out) -> dict:
    return json.loads((out / "record.json").read_text())


@pytest.mark.parametrize("method", ["none", "denoise"])
def test_run_smoke_writes_a_full_record(tmp_path, method):
    out = tmp_path / method
    result = run(tmp_path, "--method", method, "--budget", "10%", "--out", str(out))
    assert result.exit_code == 0, result.output
    record = read(out)
    assert record["method"]["name"] == method
    assert record["budget"] == "10%" and record["budget_images"] >= 1
    assert record["dataset"]["manifest_hash"] and record["dataset"]["key"].startswith("synthetic-sem")
    assert record["seeds"] == {"split": 0, "data": 0, "train": 0}
    assert set(record["timings_s"]) == {"pretrain", "finetune", "tune", "evaluate"}
    # the task version and the post-processing tuned on validation are stated
    assert record["settings"]["task"] == "distmap-v3"
    assert record["postprocess"]["task"] == "distmap-v3" and set(record["postprocess"]["params"]) == {
        "seed_threshold", "foreground_threshold", "seed_dynamic", "min_share"}
    assert record["method"]["role"] == "method"
    assert record["peak_memory_mb"] > 0 and record["versions"]["torch"]
    assert record["selection"]["best_step"] is not None
    # the final table names every length-scale bin of the test split
    assert any(scale in result.output for scale in SCALE_NAMES)
    assert (method == "none") == (record["pretrain"]["steps"] == 0)


def test_pretraining_states_its_pretext_beside_a_rule_without_learning_and_moves_no_number(tmp_path, monkeypatch):
    """The record keeps the mean loss of pretraining's last tenth and the method's rule without learning
    (denoise: the best blur) on the batches that follow. Scoring that rule draws crops and noise, under a
    forked RNG: the run's numbers are those of a run without it, and a run that reuses the cached encoder
    states the same two losses, even from a cache made before runs kept the rule (it needs no weights)."""
    from harness_denoise import DenoiseModule

    from harness.pipeline import META_FILE

    records = {}
    for name in ("without", "with", "reused", "older-cache"):
        if name in ("without", "with"):
            monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / f"cache-{name}"))
        if name == "older-cache":
            (meta_file,) = (tmp_path / "cache-with" / "pretrained").glob(f"*/{META_FILE}")
            meta = json.loads(meta_file.read_text())
            del meta["reference_loss"]  # the rule is scored again; the network's held-out loss is kept
            meta_file.write_text(json.dumps(meta))
        with monkeypatch.context() as patch:
            if name == "without":
                patch.setattr(DenoiseModule, "reference_loss", lambda self, images, step, total: None)
            result = run(tmp_path, "--method", "denoise", "--budget", "2", "--out", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        records[name] = read(tmp_path / name)
    without, with_rule, reused = records["without"], records["with"], records["reused"]
    assert without["pretrain"]["reference_loss"] is None and with_rule["pretrain"]["reference_loss"] > 0
    assert with_rule["pretrain"]["late_loss"] == with_rule["pretrain"]["final_loss"]  # 4 steps: the last tenth is 1
    for part in ("headline", "metrics", "selection", "postprocess"):
        assert with_rule[part] == without[part], part
    assert without["pretrain"]["late_loss"] == with_rule["pretrain"]["late_loss"]
    assert reused["pretrain"]["reused_cache"] and not with_rule["pretrain"]["reused_cache"]
    # the trained network's own loss on the rule's batches and draws: kept with the cache, so a reuse states it
    assert without["pretrain"]["held_out_loss"] is None and with_rule["pretrain"]["held_out_loss"] > 0
    for key in ("late_loss", "reference_loss", "held_out_loss"):
        assert reused["pretrain"][key] == with_rule["pretrain"][key]
        assert records["older-cache"]["pretrain"][key] == with_rule["pretrain"][key]
    assert records["older-cache"]["headline"] == reused["headline"]


def test_a_task_version_is_chosen_stated_and_trains_as_the_version_it_extends(tmp_path):
    """distmap-v3 reads distmap-v2's network differently only at the end: the same seed keeps the same
    step (selection reads plain maps with v2's rule); tuning then also chooses the v3 parameters."""
    records = {}
    for version in ("distmap-v2", "distmap-v3"):
        out = tmp_path / version
        result = run(tmp_path, "--method", "none", "--budget", "2", "--task-version", version, "--out", str(out))
        assert result.exit_code == 0, result.output
        records[version] = read(out)
    v2, v3 = records["distmap-v2"], records["distmap-v3"]
    assert v3["settings"]["task"] == v3["postprocess"]["task"] == "distmap-v3"
    assert set(v3["postprocess"]["params"]) == {"seed_threshold", "foreground_threshold", "seed_dynamic", "min_share"}
    assert v3["postprocess"]["candidates"] == 16 * v2["postprocess"]["candidates"]
    assert v3["selection"] == v2["selection"]
    assert v3["postprocess"]["default_score"] != v2["postprocess"]["default_score"]  # flips and turns at the end
    # `harness reproduce` asks for the version again; a sweep keeps its cells apart from the default's
    from harness.context import RunRequest
    from harness.reproduce import request_for
    from harness.results.record import read_record
    from harness.sweep import cell_dir

    assert request_for(read_record(tmp_path / "distmap-v2" / "record.json")).task_version == "distmap-v2"
    assert request_for(read_record(tmp_path / "distmap-v3" / "record.json")).task_version is None  # the default
    cells = {cell_dir(tmp_path, RunRequest(method="none", budget="1%", task_version=v)) for v in (None, "distmap-v2")}
    assert len(cells) == 2


def test_an_unknown_task_version_is_refused_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["run", "--profile", "smoke", "--method", "none", "--budget", "1",
                                       "--task-version", "distmap-v9", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "distmap-v9" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_run_help_names_every_task_version():
    from harness.task import TASKS

    text = CliRunner().invoke(main, ["run", "--help"]).output
    for version in TASKS:
        assert version in text, version


def test_same_seed_same_numbers_and_cached_pretraining(tmp_path):
    first = run(tmp_path, "--method", "denoise", "--budget", "2", "--seed", "5", "--out", str(tmp_path / "a"))
    second = run(tmp_path, "--method", "denoise", "--budget", "2", "--seed", "5", "--out", str(tmp_path / "b"))
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "reusing cached encoder" in second.output
    a, b = read(tmp_path / "a"), read(tmp_path / "b")
    assert b["pretrain"]["reused_cache"] and b["pretrain"]["cache_key"] == a["pretrain"]["cache_key"]
    assert a["metrics"] == b["metrics"]


def test_pretraining_is_not_reused_across_thread_counts(tmp_path):
    """On CPU the thread count changes the numbers, and a record states the threads it ran with,
    so an encoder trained with 2 threads must not be reused by a run with 1 (and vice versa)."""
    import torch

    from harness.methods.registry import get_method
    from harness.pipeline import Context, RunRequest, pretrain_cache_key

    entry = get_method("denoise")
    method = entry.cls({})
    ctx = Context(RunRequest(method="denoise", budget="1", profile="smoke", device="cpu"))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = pretrain_cache_key(entry, method, ctx, seed=0)
        torch.set_num_threads(2)
        two = pretrain_cache_key(entry, method, ctx, seed=0)
        assert pretrain_cache_key(entry, method, ctx, seed=0) == two
    finally:
        torch.set_num_threads(threads)
    assert one != two


def test_pretraining_is_not_reused_across_numerics_or_library_versions(monkeypatch):
    """The package versions never move; a cached encoder made by code that computed other numbers
    (a numerics bump) or by other libraries must not be reused under a record that states the new ones."""
    from harness import pipeline
    from harness.methods.registry import get_method

    entry = get_method("denoise")
    method = entry.cls({})
    ctx = pipeline.Context(pipeline.RunRequest(method="denoise", budget="1", profile="smoke", device="cpu"))
    base = pipeline.pretrain_cache_key(entry, method, ctx, seed=0)
    monkeypatch.setattr(pipeline, "NUMERICS_VERSION", "99")
    bumped = pipeline.pretrain_cache_key(entry, method, ctx, seed=0)
    monkeypatch.setattr(pipeline, "library_versions", lambda: {"torch": "0.0"})
    assert len({base, bumped, pipeline.pretrain_cache_key(entry, method, ctx, seed=0)}) == 3


def test_frozen_protocol_runs(tmp_path):
    result = run(tmp_path, "--method", "none", "--budget", "1", "--protocol", "frozen", "--out", str(tmp_path / "f"))
    assert result.exit_code == 0, result.output
    assert read(tmp_path / "f")["protocol"] == "frozen"


@pytest.mark.parametrize("budget", ["0%", "150%", "abc", "100000"])
def test_bad_budget_is_refused_before_any_work(tmp_path, budget):
    result = run(tmp_path, "--method", "none", "--budget", budget)
    assert result.exit_code == 2
    assert result.output.startswith("error: label budget")


def test_sweep_runs_the_grid_and_survives_a_failing_cell(tmp_path):
    result = CliRunner().invoke(
        main,
        ["sweep", "--methods", "none,denoise", "--budgets", "1,2", "--seeds", "0", "--profile", "smoke", "--quiet",
         "--out", str(tmp_path), "--config", "dose_min=1"],
        catch_exceptions=False,
    )
    # the `none` method has no config field dose_min, so its cells fail and are recorded; denoise runs
    assert result.exit_code == 1
    assert len(list((tmp_path / "failures").glob("none-*.json"))) == 2
    records = sorted(tmp_path.glob("synthetic-sem/denoise-*/record.json"))
    assert len(records) == 2
    cached = [json.loads(p.read_text())["pretrain"]["reused_cache"] for p in records]
    assert cached.count(True) >= 1  # the second budget reused the first one's pretraining


def test_a_sweep_files_each_cell_as_it_lands(tmp_path):
    """--file-into files every finished cell into a leaderboard, including one finished by an earlier
    sweep that never filed it; run again, it files nothing twice and reports nothing."""
    from harness.results.leaderboard import RecordStore

    base = ["sweep", "--methods", "none", "--seeds", "0", "--profile", "smoke", "--quiet", "--out", str(tmp_path / "o")]
    assert CliRunner().invoke(main, [*base, "--budgets", "1"]).exit_code == 0
    board = tmp_path / "lb"
    result = CliRunner().invoke(main, [*base, "--budgets", "1,2", "--file-into", str(board)])
    assert result.exit_code == 0, result.output
    assert sorted(f.record.budget for f in RecordStore(board).records()) == ["1", "2"]
    assert result.output.count("   filed ") == 2
    again = CliRunner().invoke(main, [*base, "--budgets", "1,2", "--file-into", str(board)])
    assert again.exit_code == 0 and "filed" not in again.output and "not filed" not in again.output, again.output
    assert len(RecordStore(board).records()) == 2


def test_run_on_an_exported_folder_dataset(tmp_path):
    folder = tmp_path / "folder"
    exported = CliRunner().invoke(main, ["data", "export", "synthetic-tem", "--split", "all", "--out", str(folder),
                                         "--profile", "smoke"], catch_exceptions=False)
    assert exported.exit_code == 0, exported.output
    out = tmp_path / "run"
    result = run(tmp_path, "--method", "denoise", "--budget", "50%", "--dataset", str(folder), "--connectivity", "4",
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    record = read(out)
    assert record["dataset"]["name"] == "folder" and record["dataset"]["version"] == "folder-9"
    # images exported without masks (the unlabeled pool) are the folder's pretraining pool
    assert record["dataset"]["pool_sizes"]["unlabeled"] == 24


def test_threads_option_sets_and_records_the_thread_count(tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        result = run(tmp_path, "--method", "none", "--budget", "2", "--threads", "1", "--out", str(tmp_path / "t"))
        assert result.exit_code == 0, result.output
        assert read(tmp_path / "t")["device"]["name"].endswith("(1 threads)")
    finally:
        torch.set_num_threads(before)


def test_a_busy_machine_gets_the_passive_openmp_wait_policy():
    """Chosen before torch loads, only when the load is high and the user set nothing."""
    import subprocess
    import sys

    script = ("import os, sys; os.getloadavg = lambda: ({load}, 0, 0); os.environ.pop('OMP_WAIT_POLICY', None)\n"
              "from harness.cli import _wait_politely_on_a_busy_machine as f; f()\n"
              "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    outputs = [subprocess.run([sys.executable, "-c", script.format(load=load)], capture_output=True, text=True,
                              check=True).stdout.split() for load in (64.0, 0.0)]
    assert outputs == [["PASSIVE", "False"], ["None", "False"]]


def test_a_refused_leak_stays_refused_for_the_next_cell_of_a_sweep(monkeypatch):
    """A sweep shares one context across its cells: a leak that refused one cell must refuse the next,
    not count as checked; accepted (--allow-leakage), the pairs are kept for the record."""
    import harness.data.leakage as leakage
    from harness.errors import HarnessError
    from harness.pipeline import Context, RunRequest

    monkeypatch.setattr(leakage, "find_leaks", lambda *a, **k: [leakage.Leak("u1", "t1", 3, 0.97)])
    ctx = Context(RunRequest(method="denoise", budget="1", profile="smoke", device="cpu"))
    for _ in range(2):
        with pytest.raises(HarnessError, match="near-duplicates of validation/test images"):
            ctx.check_leakage(False, log=lambda _m: None)
    assert ctx.accepted_leaks == []
    ctx.check_leakage(True, log=lambda _m: None)
    assert ctx.accepted_leaks == ["u1 ~ t1 (3 bits apart)"]


def test_a_plugins_cached_encoder_follows_its_source_not_only_its_version(tmp_path, monkeypatch):
    """An edited plugin (an editable install, a fix released under the same version) must not reuse
    the encoder its old code pretrained: the key holds a digest of the plugin package's source, read
    when the plugin loads (an edit later in the process does not relabel the code that runs)."""
    from harness.plugins.manager import source_digest

    package = tmp_path / "edited_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("class Method:\n    pass\n")
    (package / "module.py").write_text("LOSS = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import edited_plugin

    before = source_digest(edited_plugin)
    assert source_digest(edited_plugin) == before and before != "unknown"
    (package / "module.py").write_text("LOSS = 2\n")  # not the module the plugin object is: still its package
    assert source_digest(edited_plugin) != before
    assert source_digest(object()) == "unknown"  # builtins: no source to read
    from harness.methods.registry import get_method

    assert get_method("simclr").plugin.source not in ("", "unknown")
