"""Gesture mapping: trainable regressors and classifiers from sensors to params (Wekinator-style)."""
from . import mapper  # noqa: F401
