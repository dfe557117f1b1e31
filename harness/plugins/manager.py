"""Finding plugins: entry points of group ``harness``, loaded one by one so one broken plugin
never takes the others down. ``harness -p no:NAME`` (as pytest's) or ``HARNESS_DISABLE_PLUGINS=a,b``
blocks plugins by entry-point name.

Order decides name clashes (an entry-point name, a method name), and the first comer keeps the name,
so that a name in a recorded result always means the same code: the internal plugins, then the
distributions this project ships (``plugins/``), then every other entry point by name. The later
claimant is refused and reported, as a plugin that fails to import is.

The manager is built per process (and per set of blocked names) on first use and is never shared between
processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import types
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path

import pluggy

from harness.plugins import hookspecs

ENTRY_POINT_GROUP = "harness"
DISABLE_ENV = "HARNESS_DISABLE_PLUGINS"
# The core's own rows (none; oracle, classical): internal plugins on the same hooks and checks as any
# other, registered first, without an entry point, so they cannot be blocked.
INTERNAL_PLUGINS = ("harness.methods.baseline", "harness.methods.reference")
# The method packages under plugins/ (a test holds this to their pyproject names): first in a clash.
SHIPPED_DISTRIBUTIONS = ("harness-barlowtwins", "harness-byol", "harness-denoise", "harness-dino", "harness-fcmae",
                         "harness-moco", "harness-pix2pix", "harness-simclr", "harness-supervised")


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str
    # a digest of the plugin package's source as loaded (source_digest): the encoder cache follows it
    source: str = ""


@dataclass
class PluginState:
    manager: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # plugin name -> reason
    blocked: list[str] = field(default_factory=list)
    # names blocked (-p no:NAME, HARNESS_DISABLE_PLUGINS) that block nothing: no such entry point, or an internal plugin
    unmatched_blocks: list[str] = field(default_factory=list)

    def refuse(self, name: str, reason: str) -> None:
        """Report plugin ``name`` as failed (a second reason is appended, never replaces the first)."""
        known = self.failures.get(name)
        if known is None:
            self.failures[name] = reason
        elif reason not in known:
            self.failures[name] = f"{known}; {reason}"


def blocked_names() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def blocking(names: list[str]) -> contextlib.AbstractContextManager[None]:
    """``names`` blocked as well while the block runs, through the environment, which the command's
    worker processes (sweep lanes, submitit jobs) inherit; the previous value is restored after it."""
    from harness.data.io import environment_set

    return environment_set(DISABLE_ENV, ",".join(sorted(blocked_names() | set(names))))


def _register(state: PluginState, name: str, obj: object, info: PluginInfo) -> None:
    try:
        state.manager.register(obj, name=name)
        state.manager.check_pending()
    except Exception as err:  # noqa: BLE001 - a bad plugin is reported, never fatal
        if state.manager.is_registered(obj):
            state.manager.unregister(obj)
        state.refuse(name, f"{type(err).__name__}: {err}")
        return
    if not state.manager.get_hookcallers(obj):  # a plain function named like a hook is not one
        state.manager.unregister(obj)
        state.refuse(name, f"{info.module} implements no hook: mark each hook function with "
                           "@harness.plugins.hookspecs.hookimpl (or use provides_methods)")
        return
    state.plugins[name] = info


def source_digest(plugin: object) -> str:
    """A digest of the Python source of the package a plugin was loaded from: every ``.py`` file under
    each folder of its top-level package (a namespace package may have several), by relative path; its
    one file where it is a single module. Read when the plugin loads, so that it names the code that
    runs even if the files are edited later in the process. ``"unknown"`` where no source file can be
    read (a zip install, ``__main__``): such a plugin's encoder cache then follows its version only."""
    name = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
    top = sys.modules.get(name.split(".", 1)[0])
    folders = [Path(p) for p in getattr(top, "__path__", None) or []]
    single = getattr(top, "__file__", None) if not folders else None
    files = [(Path(single).name, Path(single))] if single else \
        [(str(f.relative_to(folder)), f) for folder in folders for f in sorted(folder.rglob("*.py"))]
    digest = hashlib.sha256()
    read = 0
    for relative, file in files:
        try:
            digest.update(relative.encode() + b"\0" + file.read_bytes() + b"\0")
            read += 1
        except OSError:
            continue
    return digest.hexdigest()[:16] if read else "unknown"


def _entry_point_order(entry_point: metadata.EntryPoint) -> tuple[bool, str, str]:
    dist = _distribution_name(entry_point)
    return dist not in SHIPPED_DISTRIBUTIONS, entry_point.name, dist


def _distribution_name(entry_point: metadata.EntryPoint) -> str:
    dist = entry_point.dist
    return dist.metadata["Name"] if dist else "?"


def build_plugin_state() -> PluginState:
    """A fresh manager with internal plugins and every installed, non-blocked entry point."""
    import importlib

    from harness import __version__

    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    state = PluginState(manager)
    blocked = blocked_names()
    for module_name in INTERNAL_PLUGINS:
        name = module_name.rsplit(".", 1)[-1]
        info = PluginInfo(name, "harness", __version__, module_name)
        _register(state, name, importlib.import_module(module_name), info)
    seen = {info.name: info for info in state.plugins.values()}
    for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=_entry_point_order):
        name = entry_point.name
        if name in blocked:
            state.blocked.append(name)
            continue
        dist = entry_point.dist
        info = PluginInfo(name, _distribution_name(entry_point), dist.version if dist else "?", entry_point.value)
        if name in seen:
            first = seen[name]
            state.refuse(f"{name} ({info.distribution})",
                         f"entry point {name!r} of {info.distribution} {info.version} ({info.module}) is already the "
                         f"plugin of {first.distribution} {first.version} ({first.module}); ignored: rename it")
            continue
        seen[name] = info
        try:
            obj = entry_point.load()
        except Exception as err:  # noqa: BLE001 - report the broken plugin by name, keep the rest
            state.refuse(name, f"failed to import {entry_point.value}: {type(err).__name__}: {err}")
            continue
        info.source = source_digest(obj)
        _register(state, name, obj, info)
    state.unmatched_blocks = sorted(blocked - set(state.blocked))
    return state


def failure_lines(state: PluginState) -> list[str]:
    """One line per refused plugin, then what -p no:NAME / HARNESS_DISABLE_PLUGINS blocked or could not block."""
    lines = [f"plugin {name!r} failed to load: {reason}" for name, reason in sorted(state.failures.items())]
    if state.blocked:
        lines.append(f"blocked by -p no:NAME or {DISABLE_ENV}: {', '.join(sorted(state.blocked))}")
    if state.unmatched_blocks:
        lines.append(f"-p no:NAME or {DISABLE_ENV} names {', '.join(state.unmatched_blocks)}, which blocks nothing: "
                     "no installed "
                     "entry point has that name (the internal plugins baseline and reference cannot be blocked)")
    return lines


def in_registration_order(state: PluginState, hook: str) -> list[pluggy.HookImpl]:
    """The implementations of ``hook``, first registered first, whatever their tryfirst/trylast marks
    (pluggy orders by those): the order that decides who keeps a name."""
    position = {name: k for k, name in enumerate(state.plugins)}
    impls = getattr(state.manager.hook, hook).get_hookimpls()
    return sorted(impls, key=lambda impl: position.get(impl.plugin_name, len(position)))


def plugin_state() -> PluginState:
    """This process's plugins for the names blocked now (``-p no:NAME`` sets them for one command)."""
    return _state_blocking(frozenset(blocked_names()))


@cache
def _state_blocking(blocked: frozenset[str]) -> PluginState:
    return build_plugin_state()
