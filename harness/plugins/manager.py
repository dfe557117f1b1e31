"""Finding plugins: entry points of group ``harness``, loaded one by one so one broken plugin
never takes the others down. ``HARNESS_DISABLE_PLUGINS=a,b`` blocks plugins by entry-point name.

The manager is built per process on first use and is never shared between processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata

import pluggy

from harness.plugins import hookspecs

ENTRY_POINT_GROUP = "harness"
DISABLE_ENV = "HARNESS_DISABLE_PLUGINS"
# Core features registered as internal plugins, exactly as third-party ones are.
INTERNAL_PLUGINS = ("harness.methods.baseline", "harness.methods.reference")


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str


@dataclass
class PluginState:
    manager: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # plugin name -> reason
    blocked: list[str] = field(default_factory=list)


def blocked_names() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _register(state: PluginState, name: str, obj: object, info: PluginInfo) -> None:
    try:
        state.manager.register(obj, name=name)
        state.manager.check_pending()
    except Exception as err:  # noqa: BLE001 - a bad plugin is reported, never fatal
        if state.manager.is_registered(obj):
            state.manager.unregister(obj)
        state.failures[name] = f"{type(err).__name__}: {err}"
        return
    state.plugins[name] = info


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
    for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        name = entry_point.name
        if name in blocked:
            state.blocked.append(name)
            continue
        dist = entry_point.dist
        info = PluginInfo(
            name,
            dist.metadata["Name"] if dist else "?",
            dist.version if dist else "?",
            entry_point.value,
        )
        try:
            obj = entry_point.load()
        except Exception as err:  # noqa: BLE001 - report the broken plugin by name, keep the rest
            state.failures[name] = f"failed to import {entry_point.value}: {type(err).__name__}: {err}"
            continue
        _register(state, name, obj, info)
    return state


@cache
def plugin_state() -> PluginState:
    return build_plugin_state()
