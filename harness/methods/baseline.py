"""The ``none`` method: no pretraining, random initialisation. Every table needs it."""

from __future__ import annotations

from harness.methods.base import SSLMethod
from harness.plugins.hookspecs import provides_methods


class NoPretraining(SSLMethod):
    """No pretraining: the encoder starts from random weights (supervised baseline)."""

    name = "none"
    transfers = "nothing (random initialisation)"
    pretrains = False


harness_methods = provides_methods(NoPretraining)
