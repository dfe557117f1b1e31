"""Every built-in method runs the whole job: `harness run --method M --budget 10% --profile smoke`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.methods.registry import available_methods

BUILT_IN = ["none", "denoise", "simclr", "byol", "barlowtwins", "moco", "dino", "fcmae", "pix2pix"]


# the paper's 8192-wide Barlow Twins projector (~150 M parameters) makes one smoke run take ~50 s on
# 2 cores; the run road is the same with a narrower one (the defaults are tested in the plugin)
SMOKE_CONFIG = {"barlowtwins": ["--config", "projection_hidden_dim=512", "--config", "projection_dim=512"]}


def test_every_built_in_method_is_installed():
    assert set(BUILT_IN) <= set(available_methods())


@pytest.mark.parametrize("method", [m for m in BUILT_IN if m not in ("none", "denoise")])
def test_run_smoke(method, tmp_path):
    out = tmp_path / method
    result = CliRunner().invoke(
        main, ["run", "--method", method, "--budget", "10%", "--profile", "smoke", "--quiet", "--out", str(out),
               *SMOKE_CONFIG.get(method, [])],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "record.json").read_text())
    assert record["method"]["name"] == method
    assert record["pretrain"]["steps"] > 0 and record["pretrain"]["final_loss"] is not None
    assert record["metrics"]
