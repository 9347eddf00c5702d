"""KerasHub imported without TensorFlow's C++ start-up lines, which read as errors and are not.

KerasHub's tokenizers need tensorflow-text, so importing KerasHub imports TensorFlow, whose C++ runtime writes
lines such as "Could not find cuda drivers on your machine" and "oneDNN custom operations are on" to the
process's stderr before any log level applies (TF_CPP_MIN_LOG_LEVEL no longer filters them). They are caught at
the file descriptor while TensorFlow is imported; any other line is written back, so a real error still shows.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile
from types import ModuleType

# The start-up lines known to be harmless on a machine without a GPU, or with one that JAX (not TensorFlow) uses.
_HARMLESS = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers on your machine"
    r"|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions"
)


def keras_hub() -> ModuleType:
    """The `keras_hub` module, TensorFlow's start-up lines filtered out of stderr on the first import."""
    if "tensorflow" not in sys.modules:
        _import_tensorflow_filtered()
    import keras_hub as module

    return module


def _import_tensorflow_filtered() -> None:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            importlib.import_module("tensorflow")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines() if not _HARMLESS.search(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
