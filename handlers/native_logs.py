"""Start-up lines of the native libraries under KerasHub that read as errors and are not, kept off stderr.

KerasHub's tokenizers need tensorflow-text, so importing KerasHub imports TensorFlow, whose C++ runtime writes
lines such as "Could not find cuda drivers on your machine" or "failed call to cuInit" straight to the process's
stderr, before any log level applies (TF_CPP_MIN_LOG_LEVEL no longer filters them); SentencePiece adds one when a
tokenizer loads. They are caught at the file descriptor while TensorFlow starts and while a model loads, and every
other line is written back, so a real error still shows.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
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
    r"|rebuild TensorFlow with the appropriate compiler flags"
    r"|precompiled_charsmap is empty\. use identity normalization"
)


def keras_hub() -> ModuleType:
    """The `keras_hub` module, with TensorFlow started quietly first (once per process)."""
    if "tensorflow" not in sys.modules:
        with filtered():
            tensorflow = importlib.import_module("tensorflow")
            # TensorFlow looks for GPUs (cuInit) when its devices are first listed, not at import.
            tensorflow.config.list_physical_devices()
    return importlib.import_module("keras_hub")


@contextlib.contextmanager
def filtered() -> Iterator[None]:
    """Holds back what is written to stderr (file descriptor 2) meanwhile, then writes back all but `_HARMLESS`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines()
            kept = [line for line in lines if not _HARMLESS.search(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
