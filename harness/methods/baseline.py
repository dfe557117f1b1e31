"""The ``none`` method: no pretraining, random initialisation. Every table needs it."""

from __future__ import annotations

from harness.methods.base import SSLMethod
from harness.plugins.hookspecs import hookimpl


class NoPretraining(SSLMethod):
    name = "none"
    description = "No pretraining: the encoder starts from random weights (supervised baseline)."
    transfers = "nothing (random initialisation)"
    pretrains = False


@hookimpl
def harness_methods() -> list[type]:
    return [NoPretraining]
