"""Shared fixtures: the taught tiny Gemma preset and chat files."""

from __future__ import annotations

import os

# Keras reads its backend once, at first import; the project runs on JAX everywhere.
os.environ["KERAS_BACKEND"] = "jax"

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory) -> str:
    """The path of a tiny Gemma preset taught the replies in `tests.tiny_gemma`."""
    from tests.tiny_gemma import build_taught_preset

    return str(build_taught_preset(tmp_path_factory.mktemp("tiny_gemma")))


@pytest.fixture(scope="session")
def gemma3_preset(tmp_path_factory) -> Path:
    """The real Gemma 3 270M, converted from its PyPI package into a session folder (about a minute)."""
    from handlers import gguf_preset

    return gguf_preset.build_preset(tmp_path_factory.mktemp("gemma3") / "preset")


def read_lines(directory: Path, prefix: str) -> list[dict]:
    """The records of every `<prefix>*.jsonl` file in `directory` (a job's output files), in file order."""
    return [json.loads(line) for path in sorted(directory.glob(f"{prefix}*.jsonl")) for line in path.open()]


def write_lines(path: Path, lines: list[bytes | str | dict]) -> Path:
    """Writes a JSON Lines file; dicts are serialised, bytes and strings written as they are."""
    with path.open("wb") as out:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line, ensure_ascii=False)
            out.write((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n")
    return path
