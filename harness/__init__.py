"""harness: a benchmark of self-supervised pretraining for electron microscopy."""
__version__ = "0.1.0"
