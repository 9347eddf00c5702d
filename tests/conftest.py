"""Shared fixtures: the taught tiny Gemma preset and chat files."""

from __future__ import annotations

from pathlib import Path

import pytest

import handlers  # noqa: F401  (it chooses Keras's backend, before any test imports Keras)


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory) -> str:
    """The path of a tiny Gemma preset taught the replies in `tests.tiny_gemma`."""
    from tests.tiny_gemma import build_taught_preset

    return str(build_taught_preset(tmp_path_factory.mktemp("tiny_gemma")))


@pytest.fixture(scope="session")
def gemma3_preset() -> Path:
    """The real Gemma 3 270M, converted from its PyPI package into the cache (about a minute, the first time), where
    the shipped LoRAs find it too; the test workers share it (the build is renamed into place atomically)."""
    from handlers import gguf_preset

    return gguf_preset.build_preset()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The local stack (Pub/Sub emulator and bqemulator), one per test module."""
    from local.stack import LocalStack

    with LocalStack.start(workdir=tmp_path_factory.mktemp("stack")) as running:
        yield running
