"""Method lookup over every registered plugin.

A plugin's methods are checked here, where they are first asked for: a hook that raises or answers
with something other than a list of method classes, a class without a name, description or valid
role, or a name an earlier plugin already holds (:mod:`harness.plugins.manager` says which comes
first) is refused and reported with the plugin's other failures; every other method keeps working.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import get_args

from harness.errors import HarnessError
from harness.methods.base import SSLMethod
from harness.plugins.hookspecs import Role
from harness.plugins.manager import PluginInfo, failure_lines, in_registration_order, plugin_state

# Method names go into paths (run folders, the encoder cache) and comma-separated --methods lists.
METHOD_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class MethodEntry:
    name: str
    cls: type[SSLMethod]
    plugin: PluginInfo


def _problem(cls: object) -> str | None:
    """Why ``cls`` cannot be a method (None: it can)."""
    if not (isinstance(cls, type) and issubclass(cls, SSLMethod)):
        return f"returned {cls!r}, which is not an SSLMethod subclass"
    if not getattr(cls, "name", "") or not cls.description:
        return (f"method class {cls.__name__} needs a `name` and a docstring (its first paragraph is the "
                "method's description)")
    if not METHOD_NAME.fullmatch(cls.name):
        return (f"method class {cls.__name__}: name {cls.name!r} must be lower-case letters, digits, '-' or '_' "
                "(it names folders and files)")
    if cls.role not in get_args(Role):
        return f"method class {cls.__name__}: role {cls.role!r} is not one of {', '.join(get_args(Role))}"
    return None


def available_methods() -> dict[str, MethodEntry]:
    """Every usable method by name, in plugin order; refused ones are in ``plugin_state().failures``."""
    state = plugin_state()
    methods: dict[str, MethodEntry] = {}
    # hook implementations one by one (not the combined call) so each method knows its plugin, and in
    # registration order, so that the first claimant of a name keeps it
    for impl in in_registration_order(state, "harness_methods"):
        plugin_name = impl.plugin_name
        try:
            contributed = impl.function()
        except Exception as err:  # noqa: BLE001 - one plugin's bug must not take every method down
            state.refuse(plugin_name, f"harness_methods() raised {type(err).__name__}: {err}")
            continue
        if contributed is None:
            continue
        if not isinstance(contributed, list | tuple):
            state.refuse(plugin_name, f"harness_methods() must return a list of method classes, got {contributed!r}")
            continue
        for cls in contributed:
            problem = _problem(cls)
            if problem is None and cls.name in methods:
                first = methods[cls.name].plugin
                problem = (f"method {cls.name!r} is already registered by {first.name!r} ({first.distribution}); "
                           "ignored: rename it")
            if problem is not None:
                state.refuse(plugin_name, problem)
                continue
            methods[cls.name] = MethodEntry(cls.name, cls, state.plugins[plugin_name])
    return methods


def get_method(name: str) -> MethodEntry:
    methods = available_methods()
    if name not in methods:
        known = ", ".join(sorted(methods)) or "none installed"
        failed = "".join(f"; {line}" for line in failure_lines(plugin_state()))
        raise HarnessError(f"unknown method {name!r}: installed methods are {known} (see `harness methods`){failed}")
    return methods[name]
