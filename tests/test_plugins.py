"""Plugins: a toy package installed with pip from a temporary folder, a broken one, a blocked one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HARNESS = [sys.executable, "-m", "harness"]

TOY_METHOD = '''
"""A toy method: reconstruct the crop from the deepest features (a real, if weak, pretext)."""
import torch
import torch.nn.functional as F
from pydantic import Field

from harness.methods.base import MethodConfig, PretrainModule, SSLMethod
from harness.plugins.hookspecs import hookimpl


class ToyConfig(MethodConfig):
    width: int = Field(8, gt=0)


class ToyModule(PretrainModule):
    def __init__(self, backbone, config):
        super().__init__(backbone)
        self.head = torch.nn.Conv2d(backbone.channels[-1], 1, 1)

    def training_step(self, images, step, total_steps):
        deepest = self.backbone(images)[-1]
        restored = F.interpolate(self.head(deepest), size=images.shape[-2:], mode="bilinear")
        return F.mse_loss(restored.float(), images.float())


class Toy(SSLMethod):
    name = "toy"
    description = "Toy plugin used by the harness test suite."
    Config = ToyConfig

    def build(self, backbone):
        return ToyModule(backbone, self.config)


@hookimpl
def harness_methods():
    return [Toy]


@hookimpl
def harness_backbones():
    # a new name, and an attempt to redefine a built-in one (which must be ignored)
    return {"toy_resnet": "resnet10t", "convnextv2_atto": "resnet18"}
'''


def _package(root: Path, name: str, module_source: str, entry_name: str) -> Path:
    folder = root / name
    (folder / name).mkdir(parents=True)
    (folder / name / "__init__.py").write_text(module_source)
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name.replace('_', '-')}"
        version = "0.0.7"
        [project.entry-points.harness]
        {entry_name} = "{name}"
        [tool.setuptools]
        packages = ["{name}"]
    """))
    return folder


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """A folder with the toy and the broken plugin pip-installed into it (no network, no deps)."""
    root = tmp_path_factory.mktemp("plugins")
    site = root / "site"
    toy = _package(root, "toy_harness_plugin", TOY_METHOD, "toy")
    broken = _package(root, "broken_harness_plugin", "raise ImportError('this plugin is broken on purpose')\n",
                      "broken")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(toy), str(broken)],
        check=True, capture_output=True,
    )
    return site


def _harness(site: Path, *args: str, env_extra: dict | None = None, cwd: Path | None = None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           **(env_extra or {})}
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_installed_plugin_is_listed_and_broken_one_is_reported(plugin_site):
    result = _harness(plugin_site, "methods")
    assert result.returncode == 0, result.stderr
    assert "toy" in result.stdout and "toy-harness-plugin" in result.stdout and "0.0.7" in result.stdout
    assert "none" in result.stdout  # built-ins keep working next to a broken plugin
    assert "plugin 'broken' failed to load" in result.stderr and "broken on purpose" in result.stderr


def test_plugins_can_be_blocked_by_name(plugin_site):
    result = _harness(plugin_site, "methods", env_extra={"HARNESS_DISABLE_PLUGINS": "toy,broken"})
    assert result.returncode == 0, result.stderr
    assert "toy-harness-plugin" not in result.stdout
    assert "failed to load" not in result.stderr
    assert "blocked by HARNESS_DISABLE_PLUGINS: broken, toy" in result.stderr


def test_plugin_backbones_are_listed_and_cannot_redefine_built_ins(plugin_site):
    result = _harness(plugin_site, "backbones")
    assert result.returncode == 0, result.stderr
    toy = next(line for line in result.stdout.splitlines() if line.startswith("toy_resnet"))
    assert "resnet10t" in toy and "'toy'" in toy
    atto = next(line for line in result.stdout.splitlines() if line.startswith("convnextv2_atto "))
    assert "convnextv2_atto" in atto.split()[1]  # still the built-in ConvNeXt V2
    assert "plugin 'toy': backbone 'convnextv2_atto' (resnet18) ignored" in result.stderr


def test_installed_plugin_runs_end_to_end_on_its_own_backbone(plugin_site, tmp_path, isolated_cache):
    out = tmp_path / "run"
    result = _harness(plugin_site, "run", "--method", "toy", "--budget", "10%", "--profile", "smoke",
                      "--quiet", "--out", str(out), "--config", "width=4", "--backbone", "toy_resnet")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "record.json").read_text())
    assert record["backbone"] == "toy_resnet"
    assert record["method"]["distribution"] == "toy-harness-plugin"
    assert record["method"]["config"]["width"] == 4
    assert record["pretrain"]["steps"] > 0


def test_unknown_method_is_one_clear_line(plugin_site):
    result = _harness(plugin_site, "run", "--method", "nope", "--budget", "10%", "--profile", "smoke")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown method 'nope'")
    assert "Traceback" not in result.stderr


def test_bad_method_config_is_one_clear_line(plugin_site):
    result = _harness(plugin_site, "run", "--method", "toy", "--budget", "10%", "--profile", "smoke",
                      "--config", "width=-1")
    assert result.returncode == 2
    assert "invalid config for method 'toy'" in result.stderr and "width" in result.stderr
    assert "Traceback" not in result.stderr
