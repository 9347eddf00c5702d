"""LoRA presets: a folder with a base preset's LoRA weights and a manifest naming that base, loaded as one model.

`training.tune` writes them; every entry point takes one as `--model DIR` like any KerasHub preset. The folder
holds `adapter.lora.h5` (KerasHub's `save_lora_weights`, a few MB) and `chat_triage_lora.json`: the base preset
(its model id, where it was, and a checksum), the rank, the prompt family and version the
adapter was trained with, and how it was trained (data, seed, hyper-parameters, metrics).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from handlers import native_logs

__all__ = [
    "ADAPTER_NAME", "MANIFEST_NAME", "BaseMismatchError", "base_description", "is_lora_preset", "label_offsets",
    "load_causal_lm", "read_manifest", "resolve_base", "weights_sha256",
]

ADAPTER_NAME = "adapter.lora.h5"
MANIFEST_NAME = "chat_triage_lora.json"
# KerasHub saves a preset's backbone weights in this file; its checksum identifies the base model.
BASE_WEIGHTS = "model.weights.h5"


class BaseMismatchError(RuntimeError):
    """The base preset found for a LoRA preset is not the one it was trained on."""


def is_lora_preset(preset: str) -> bool:
    """True for a local folder holding a LoRA manifest (remote presets are always plain KerasHub presets)."""
    return "://" not in preset and Path(preset, MANIFEST_NAME).is_file()


def read_manifest(preset: str | Path) -> dict[str, Any]:
    return json.loads(Path(preset, MANIFEST_NAME).read_text(encoding="utf-8"))


def label_offsets(preset: str, prompt_name: str) -> dict[str, float]:
    """The offsets `training.tune` fitted for each label of the prompt it trained on (added to the label scores),
    or none: for another preset, or another prompt (`--model_family` can override the family)."""
    if not is_lora_preset(preset):
        return {}
    manifest = read_manifest(preset)
    return manifest.get("label_offsets", {}) if manifest["prompt"]["name"] == prompt_name else {}


def weights_sha256(preset: str | Path) -> str:
    """The SHA-256 of a local preset's weights file (about 3 s for the 270M's 1 GB)."""
    with Path(preset, BASE_WEIGHTS).open("rb") as weights:
        return hashlib.file_digest(weights, "sha256").hexdigest()


def base_description(preset: str | Path) -> dict[str, str]:
    """What a LoRA manifest records of its base: model id, path and a checksum.

    A preset built by `handlers.gguf_preset` is identified by the SHA-256 of the GGUF file it was converted from
    (the conversion is reproducible, an HDF5 file's bytes need not be); any other by its weights file's SHA-256.
    """
    path = Path(preset)
    source = _gguf_source(path)
    if source:
        return {"model_id": source["model_id"], "path": str(path.resolve()), "gguf_sha256": source["gguf_sha256"]}
    return {"model_id": path.name, "path": str(path.resolve()), "weights_sha256": weights_sha256(path)}


def _gguf_source(path: Path) -> dict[str, Any] | None:
    from handlers import gguf_preset

    manifest = path / gguf_preset.MANIFEST_NAME
    return json.loads(manifest.read_text()) if manifest.is_file() else None


def resolve_base(manifest: dict[str, Any]) -> Path:
    """The base preset's folder, checked against the recorded checksum.

    The local Gemma 3 270M is built into the cache if needed (`make model`); any other base must still be where it
    was when tuned.
    """
    from handlers import gguf_preset

    base = manifest["base"]
    if "gguf_sha256" in base:
        path = gguf_preset.build_preset() if base["model_id"] == gguf_preset.MODEL_ID else Path(base["path"])
        expected, found = base["gguf_sha256"], (_gguf_source(path) or {}).get("gguf_sha256", "none")
    else:
        path = Path(base["path"])
        expected, found = base["weights_sha256"], weights_sha256(path)
    if found != expected:
        raise BaseMismatchError(
            f"the base preset at {path} has checksum {found[:12]}…, but the LoRA was trained on "
            f"{expected[:12]}… ({base['model_id']})"
        )
    return path


def load_causal_lm(preset: str):
    """`keras_hub.models.CausalLM.from_preset(preset)`, or for a LoRA preset its base with the adapter applied."""
    keras_hub = native_logs.keras_hub()
    base = str(resolve_base(read_manifest(preset))) if is_lora_preset(preset) else preset
    # The tokenizer's SentencePiece logs a harmless line as it loads.
    with native_logs.filtered():
        model = keras_hub.models.CausalLM.from_preset(base)
    if base != preset:
        model.backbone.load_lora_weights(str(Path(preset, ADAPTER_NAME)))
    return model
