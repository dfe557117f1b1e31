"""Evaluation: predict instance masks and score them with the particle metrics."""
