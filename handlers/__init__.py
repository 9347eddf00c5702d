"""Beam model handlers for KerasHub causal LMs, and the code that loads and runs them."""

import os

# Keras picks its backend once, when it is first imported; every module that imports Keras is in this package or
# imports it, so this is the one place that chooses it.
os.environ.setdefault("KERAS_BACKEND", "jax")
