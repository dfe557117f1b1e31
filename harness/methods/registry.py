"""Method lookup over every registered plugin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from harness.errors import HarnessError
from harness.methods.base import SSLMethod
from harness.plugins.manager import PluginInfo, plugin_state


@dataclass(frozen=True)
class MethodEntry:
    name: str
    cls: type[SSLMethod]
    plugin: PluginInfo


def available_methods() -> dict[str, MethodEntry]:
    """Every method by name. Two plugins claiming one name is an error naming both."""
    state = plugin_state()
    methods: dict[str, MethodEntry] = {}
    # hook implementations one by one (not the combined call) so each method knows its plugin
    for impl in reversed(state.manager.hook.harness_methods.get_hookimpls()):
        plugin_name = impl.plugin_name
        info = state.plugins[plugin_name]
        contributed = cast("list[type] | None", impl.function())  # harness_methods' declared return
        for cls in contributed or []:
            if not (isinstance(cls, type) and issubclass(cls, SSLMethod)):
                raise HarnessError(f"plugin {plugin_name!r} returned {cls!r}, which is not an SSLMethod subclass")
            if not getattr(cls, "name", "") or not cls.description:
                raise HarnessError(f"plugin {plugin_name!r}: method class {cls.__name__} needs a `name` and a "
                                   "docstring (its first paragraph is the method's description)")
            if cls.name in methods:
                other = methods[cls.name].plugin.name
                raise HarnessError(f"method {cls.name!r} is registered by both {other!r} and {plugin_name!r}")
            methods[cls.name] = MethodEntry(cls.name, cls, info)
    return methods


def get_method(name: str) -> MethodEntry:
    methods = available_methods()
    if name not in methods:
        known = ", ".join(sorted(methods)) or "none installed"
        raise HarnessError(f"unknown method {name!r}: installed methods are {known} (see `harness methods`)")
    return methods[name]
