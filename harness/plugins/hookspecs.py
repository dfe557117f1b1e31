"""The hooks a harness plugin can implement (pluggy, project name ``harness``).

A plugin is any module or object with functions marked ``@hookimpl``; it is found through the
``harness`` entry-point group of an installed distribution. The methods this project ships
(``plugins/``) travel that same road; only the core's own rows (``none``, ``oracle``, ``classical``)
are registered directly, on the same hooks.

Versioning: :data:`HOOKSPEC_VERSION` rises by one whenever a hook is added, and a hook's
signature never changes within a major version of harness. Pluggy lets an implementation accept
fewer arguments than the spec, so a plugin written against an older version keeps working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import pluggy

PROJECT = "harness"
HOOKSPEC_VERSION = 1

# What a contributed method class may declare as its ``role``: ranked in the tables ("method"), shown
# beside them unranked ("control"), or a reference row with no training ("reference").
Role = Literal["method", "control", "reference"]

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def harness_methods() -> list[type]:
    """Return the SSL method classes this plugin contributes.

    Each is a subclass of :class:`harness.methods.base.SSLMethod` with a unique ``name``.
    """
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def harness_backbones() -> dict[str, str]:
    """Return extra backbones: harness name -> timm model name (1 input channel is forced)."""
    raise NotImplementedError  # a specification: plugins implement it


def provides_methods(*methods: type) -> Callable[[], list[type]]:
    """The ``harness_methods`` hook of a plugin that contributes ``methods``; in the plugin's module::

        harness_methods = provides_methods(MyMethod)
    """

    @hookimpl
    def harness_methods() -> list[type]:
        return list(methods)

    return harness_methods
