"""Plugins: a toy package installed with pip from a temporary folder, a broken one, a blocked one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pluggy
import pytest
import torch

from harness.errors import HarnessError
from harness.methods.base import SSLMethod
from harness.methods.registry import available_methods, get_method
from harness.plugins import hookspecs
from harness.plugins.hookspecs import provides_methods
from harness.plugins.manager import PluginInfo, PluginState

HARNESS = [sys.executable, "-m", "harness"]

ROOT = Path(__file__).resolve().parents[1]

# The backbones hook, added to the toy of CONTRIBUTING.md: a new name, and an attempt to redefine
# a built-in one (which must be ignored)
TOY_BACKBONES = """

from harness.plugins.hookspecs import hookimpl


@hookimpl
def harness_backbones():
    return {"toy_resnet": "resnet10t", "convnextv2_atto": "resnet18"}
"""


def contributing_files() -> dict[str, str]:
    """The plugin example of CONTRIBUTING.md: every fenced block whose first line is a comment
    naming a file under harness-toy/."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    files = {}
    for block in re.findall(r"```(?:toml|python)\n(.*?)```", text, flags=re.S):
        first, _, body = block.partition("\n")
        if first.startswith("# harness-toy/"):
            files[first[2:].strip()] = body
    return files


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


def test_contributing_holds_the_whole_example_plugin():
    assert sorted(contributing_files()) == ["harness-toy/harness_toy/__init__.py", "harness-toy/harness_toy/module.py",
                                            "harness-toy/pyproject.toml", "harness-toy/tests/test_toy.py"]


@pytest.fixture(scope="module")
def toy_source(tmp_path_factory) -> Path:
    """CONTRIBUTING.md's toy plugin written out as its files (plus the backbones hook)."""
    root = tmp_path_factory.mktemp("contributing")
    for name, body in contributing_files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body + (TOY_BACKBONES if name.endswith("harness_toy/__init__.py") else ""))
    return root / "harness-toy"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory, toy_source) -> Path:
    """A folder with the toy and the broken plugin pip-installed into it (no network, no deps)."""
    root = tmp_path_factory.mktemp("plugins")
    site = root / "site"
    broken = _package(root, "broken_harness_plugin", "raise ImportError('this plugin is broken on purpose')\n",
                      "broken")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(toy_source), str(broken)],
        check=True, capture_output=True,
    )
    return site


def test_the_documented_plugin_passes_its_contract_tests(plugin_site, toy_source):
    """The third-party road: the kit's tests run from the plugin's own folder, outside this repo."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=toy_source, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "7 passed" in done.stdout, done.stdout[-2000:]


def _harness(site: Path, *args: str, env_extra: dict | None = None, cwd: Path | None = None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           **(env_extra or {})}
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_installed_plugin_is_listed_and_broken_one_is_reported(plugin_site):
    result = _harness(plugin_site, "methods")
    assert result.returncode == 0, result.stderr
    assert "toy" in result.stdout and "harness-toy" in result.stdout and "0.1.0" in result.stdout
    assert "none" in result.stdout  # built-ins keep working next to a broken plugin
    assert "plugin 'broken' failed to load" in result.stderr and "broken on purpose" in result.stderr


def test_plugins_can_be_blocked_by_name(plugin_site):
    result = _harness(plugin_site, "methods", env_extra={"HARNESS_DISABLE_PLUGINS": "toy,broken"})
    assert result.returncode == 0, result.stderr
    assert "harness-toy" not in result.stdout
    assert "failed to load" not in result.stderr
    assert "blocked by -p no:NAME or HARNESS_DISABLE_PLUGINS: broken, toy" in result.stderr
    # the command-line switch, as pytest's: the same blocks for one command
    switched = _harness(plugin_site, "-p", "no:toy", "-p", "no:broken", "methods")
    assert switched.returncode == 0 and switched.stdout == result.stdout, switched.stderr
    assert "blocked by -p no:NAME or HARNESS_DISABLE_PLUGINS: broken, toy" in switched.stderr
    wrong = _harness(plugin_site, "-p", "toy", "methods")
    assert wrong.returncode == 2 and "no:NAME" in wrong.stderr and "Traceback" not in wrong.stderr


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
    assert record["method"]["distribution"] == "harness-toy"
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


class _Documented(SSLMethod):
    """Learn something useful
    from crops.

    Details a reader of the code wants, not ``harness methods``."""

    name = "documented"


def test_description_is_the_docstrings_first_paragraph_and_the_module_follows_the_convention():
    assert _Documented.description == "Learn something useful from crops."
    assert _Documented.module_path() == f"{__name__}.module:_DocumentedModule"

    class Named(_Documented):
        """Another."""

        description = "said outright"
        module = "elsewhere.heavy:Net"

    assert Named.description == "said outright" and Named.module_path() == "elsewhere.heavy:Net"


def test_a_method_whose_module_cannot_be_loaded_is_one_clear_line():
    where = re.escape(f"{__name__}.module:_DocumentedModule")
    with pytest.raises(HarnessError, match=f"method 'documented': no `module` is set and the convention names {where}"):
        _Documented().build(torch.nn.Identity())


def _state(monkeypatch, **plugins: object) -> PluginState:
    """A plugin state holding the internal `baseline` plugin and then ``plugins`` (name -> object), in
    that order, as the methods registry and the backbone resolver see it."""
    from harness.methods import baseline

    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    state = PluginState(manager)
    for name, obj in {"baseline": baseline, **plugins}.items():
        manager.register(obj, name=name)
        state.plugins[name] = PluginInfo(name, f"harness-{name}", "0.1", name)
    monkeypatch.setattr("harness.methods.registry.plugin_state", lambda: state)
    monkeypatch.setattr("harness.plugins.manager.plugin_state", lambda: state)
    return state


class _Loud(SSLMethod):
    """Pretrain loudly."""

    name = "loud"


def test_a_dependency_missing_inside_a_methods_module_is_named_not_blamed_on_the_convention(tmp_path,
                                                                                             monkeypatch):
    package = tmp_path / "needy_method"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "module.py").write_text("import a_package_nobody_installed  # noqa\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class Needy(SSLMethod):
        """Needs more."""

        name = "needy"
        module = "needy_method.module:NeedyModule"

    with pytest.raises(HarnessError, match="method 'needy': needy_method.module imports "
                                           "'a_package_nobody_installed', which is not installed"):
        Needy().build(torch.nn.Identity())


def test_a_method_without_a_description_is_refused_naming_its_plugin(monkeypatch):
    class Silent(SSLMethod):
        name = "silent"

    state = _state(monkeypatch, quiet=types.SimpleNamespace(harness_methods=provides_methods(Silent, _Loud)))
    assert sorted(available_methods()) == ["loud", "none"]  # the plugin's good method and the others stay
    assert "method class Silent needs a `name` and a docstring" in state.failures["quiet"]


def test_a_hook_that_raises_or_answers_wrongly_is_refused_and_the_others_keep_working(monkeypatch):
    @hookspecs.hookimpl
    def raising() -> list[type]:
        raise RuntimeError("bug in the plugin")

    @hookspecs.hookimpl
    def unlisted() -> type:
        return _Loud

    state = _state(monkeypatch, bad=types.SimpleNamespace(harness_methods=raising),
                   lazy=types.SimpleNamespace(harness_methods=unlisted),
                   good=types.SimpleNamespace(harness_methods=provides_methods(_Loud)))
    assert sorted(available_methods()) == ["loud", "none"]
    assert state.failures["bad"] == "harness_methods() raised RuntimeError: bug in the plugin"
    assert state.failures["lazy"].startswith("harness_methods() must return a list of method classes")
    with pytest.raises(HarnessError, match="unknown method 'nope'.*; plugin 'bad' failed to load: harness_methods"):
        get_method("nope")


def test_a_method_name_already_taken_stays_with_its_first_plugin(monkeypatch):
    class Impostor(SSLMethod):
        """Not the baseline."""

        name = "none"

    @hookspecs.hookimpl(trylast=True)  # pluggy lists a trylast implementation first
    def harness_methods() -> list[type]:
        return [Impostor, _Loud]

    state = _state(monkeypatch, impostor=types.SimpleNamespace(harness_methods=harness_methods))
    methods = available_methods()
    assert methods["none"].plugin.name == "baseline" and methods["loud"].plugin.name == "impostor"
    assert state.failures["impostor"] == "method 'none' is already registered by 'baseline' (harness-baseline); " \
                                         "ignored: rename it"


@pytest.mark.parametrize(("attribute", "value", "why"), [
    ("name", "../My Method", "name '../My Method' must be lower-case letters, digits"),
    ("name", "a,b", "name 'a,b' must be"),
    ("role", "controll", "role 'controll' is not one of method, control, reference"),
])
def test_a_method_named_unsafely_or_with_an_unknown_role_is_refused(monkeypatch, attribute, value, why):
    odd = type("Odd", (_Loud,), {"__doc__": "Odd.", attribute: value})
    state = _state(monkeypatch, odd=types.SimpleNamespace(harness_methods=provides_methods(odd)))
    assert sorted(available_methods()) == ["none"]
    assert why in state.failures["odd"]


def test_a_plugin_whose_hooks_are_not_marked_is_reported_not_silently_empty():
    from harness.plugins.manager import _register

    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    state = PluginState(manager)
    _register(state, "plain", types.SimpleNamespace(harness_methods=lambda: [_Loud]),
              PluginInfo("plain", "harness-plain", "0.1", "plain_module"))
    assert "plain" not in state.plugins
    assert state.failures["plain"].startswith("plain_module implements no hook: mark each hook function with")


def test_a_backbone_name_stays_with_the_first_registered_plugin_whatever_its_hook_marks(monkeypatch):
    from harness.models.backbones import resolve_backbones

    @hookspecs.hookimpl
    def first() -> dict[str, str]:
        return {"shared_net": "resnet10t"}

    @hookspecs.hookimpl(trylast=True)  # pluggy lists a trylast implementation first
    def second() -> dict[str, str]:
        return {"shared_net": "resnet18"}

    _state(monkeypatch, early=types.SimpleNamespace(harness_backbones=first),
           late=types.SimpleNamespace(harness_backbones=second))
    specs, refused = resolve_backbones()
    assert specs["shared_net"].timm_name == "resnet10t" and refused == [("late", "shared_net", "resnet18")]


def test_a_backbones_hook_that_raises_is_refused_and_built_ins_stay(monkeypatch):
    from harness.models.backbones import resolve_backbones

    @hookspecs.hookimpl
    def harness_backbones() -> dict[str, str]:
        raise ValueError("no timm here")

    state = _state(monkeypatch, nets=types.SimpleNamespace(harness_backbones=harness_backbones))
    specs, refused = resolve_backbones()
    assert "resnet18" in specs and refused == []
    assert state.failures["nets"] == "harness_backbones() raised ValueError: no timm here"


class _EntryPoint:
    """What the manager reads of an installed entry point."""

    def __init__(self, name: str, distribution: str, obj: object):
        self.name, self.value, self.obj = name, f"{distribution.replace('-', '_')}:plugin", obj
        self.dist = types.SimpleNamespace(metadata={"Name": distribution}, version="1.0")

    def load(self) -> object:
        return self.obj


def test_an_entry_point_name_clash_keeps_the_shipped_plugin_and_names_both(monkeypatch):
    from harness.plugins import manager

    shipped = types.SimpleNamespace(harness_methods=provides_methods(_Loud))
    rival = types.SimpleNamespace(harness_methods=provides_methods())
    # the rival's distribution sorts first by name; the shipped one is loaded first all the same
    points = [_EntryPoint("fcmae", "aaa-fcmae", rival), _EntryPoint("fcmae", "harness-fcmae", shipped)]
    monkeypatch.setattr(manager.metadata, "entry_points", lambda group: points)
    monkeypatch.setenv(manager.DISABLE_ENV, "typo,baseline")
    state = manager.build_plugin_state()
    assert state.plugins["fcmae"].distribution == "harness-fcmae"
    assert state.failures == {"fcmae (aaa-fcmae)": "entry point 'fcmae' of aaa-fcmae 1.0 (aaa_fcmae:plugin) is "
                                                   "already the plugin of harness-fcmae 1.0 (harness_fcmae:plugin); "
                                                   "ignored: rename it"}
    assert state.unmatched_blocks == ["baseline", "typo"]  # an internal plugin cannot be blocked
    assert any("names baseline, typo, which blocks nothing" in line for line in manager.failure_lines(state))


def test_the_shipped_distributions_are_the_packages_under_plugins():
    from harness.plugins.manager import SHIPPED_DISTRIBUTIONS

    names = [re.search(r'^name = "(.+)"$', (folder / "pyproject.toml").read_text(), flags=re.M).group(1)
             for folder in sorted((ROOT / "plugins").iterdir()) if (folder / "pyproject.toml").is_file()]
    assert sorted(SHIPPED_DISTRIBUTIONS) == sorted(names)


def test_contributing_documents_every_hook_of_the_hookspecs():
    hooks = {name for name in vars(hookspecs) if name.startswith("harness_")}
    section = (ROOT / "CONTRIBUTING.md").read_text().split("## Hooks", 1)[1].split("\n## ", 1)[0]
    assert hooks == set(re.findall(r"`(harness_\w+)\(\)`", section))


def test_the_p_no_switch_blocks_a_plugin_for_one_command_only(monkeypatch):
    from click.testing import CliRunner

    from harness.cli import main
    from harness.plugins.manager import DISABLE_ENV

    monkeypatch.delenv(DISABLE_ENV, raising=False)
    blocked = CliRunner().invoke(main, ["-p", "no:simclr", "methods"])
    assert blocked.exit_code == 0, blocked.output
    assert "simclr" not in blocked.stdout and "denoise" in blocked.stdout
    assert DISABLE_ENV not in os.environ  # restored when the command ends
    assert "simclr" in CliRunner().invoke(main, ["methods"]).stdout
    monkeypatch.setenv(DISABLE_ENV, "byol")
    unknown = CliRunner().invoke(main, ["-p", "no:simclr", "run", "--method", "simclr", "--budget", "1"])
    assert unknown.exit_code == 2 and "unknown method 'simclr'" in unknown.output, unknown.output
    assert "blocked by -p no:NAME or HARNESS_DISABLE_PLUGINS: byol, simclr" in unknown.output
    assert os.environ[DISABLE_ENV] == "byol"  # a failing command restores the shell's value too
