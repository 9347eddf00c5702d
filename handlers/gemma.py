"""A Beam model handler that runs any KerasHub causal LM preset (Gemma by default) on the JAX backend."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import Any, NamedTuple

from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

__all__ = ["GemmaModelHandler", "Generation", "KerasHubGenerator"]

SamplerSpec = str | Mapping[str, Any]
_INFERENCE_ARGS = frozenset({"max_length", "sampler"})
# Instruction-tuned Gemma ends its turn with this token; stopping there saves generating up to max_length.
_END_OF_TURN = "<end_of_turn>"


class Generation(NamedTuple):
    """One reply, with the token counts that say whether the prompt fitted the budget."""

    text: str
    prompt_tokens: int
    max_length: int

    @property
    def prompt_fitted(self) -> bool:
        """False when the prompt filled `max_length`, so the model was cut off before it could answer."""
        return self.prompt_tokens < self.max_length


class KerasHubGenerator:
    """A loaded causal LM that turns a batch of prompts into a batch of replies.

    The handler talks to the model only through `generate`, so the object can live in another process
    behind Beam's shared-model proxy.
    """

    def __init__(self, preset: str):
        # Keras picks its backend once, at import: this must run before anything imports keras.
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras_hub

        self._model = keras_hub.models.CausalLM.from_preset(preset)
        self._sampler_key: str | None = None
        tokenizer = self._model.preprocessor.tokenizer
        stop = [tokenizer.end_token_id]
        if _END_OF_TURN in tokenizer.get_vocabulary():
            stop.append(tokenizer.token_to_id(_END_OF_TURN))
        self._stop_token_ids = tuple(stop)

    def generate(self, prompts: list[str], max_length: int, sampler: SamplerSpec) -> list[Generation]:
        """One `generate()` call for the whole batch; each reply has its prompt removed by token position."""
        self._use_sampler(sampler)
        replies = self._model.generate(
            prompts, max_length=max_length, stop_token_ids=self._stop_token_ids, strip_prompt=True
        )
        # The start token counts against max_length too.
        prompt_tokens = [len(ids) + 1 for ids in self._model.preprocessor.tokenizer(prompts)]
        return [Generation(str(reply), count, max_length) for reply, count in zip(replies, prompt_tokens)]

    def _use_sampler(self, sampler: SamplerSpec) -> None:
        # Compiling resets the traced generate function, so only do it when the sampler changes.
        key = json.dumps(sampler, sort_keys=True)
        if key != self._sampler_key:
            self._model.compile(sampler=sampler if isinstance(sampler, str) else dict(sampler))
            self._sampler_key = key


class GemmaModelHandler(ModelHandler[str, PredictionResult, KerasHubGenerator]):
    """Runs batches of prompts through a KerasHub causal LM preset.

    Args:
        preset: a KerasHub preset: a local folder, `gs://…` or `kaggle://…`.
        model_id: the id written into every output record; defaults to the preset's last path part.
        max_length: the longest sequence (prompt plus reply) in tokens; an inference arg overrides it.
        sampler: a KerasHub sampler name (`"greedy"`, `"top_k"`, …) or its config dict; an inference
            arg overrides it.
        min_batch_size, max_batch_size, max_batch_duration_secs: batching, as in Beam's `BatchElements`.
        share_across_processes: load one model per worker machine and share it between its processes.
        metrics_namespace: where this handler's Beam metrics go, so two handlers report apart.

    Examples:
        Triage with a keyed handler::

            handler = KeyedModelHandler(GemmaModelHandler("gs://bucket/gemma2_instruct_2b_en"))
            results = keyed_prompts | RunInference(handler)
    """

    def __init__(
        self,
        preset: str,
        *,
        model_id: str | None = None,
        max_length: int = 512,
        sampler: SamplerSpec = "greedy",
        min_batch_size: int = 1,
        max_batch_size: int = 8,
        max_batch_duration_secs: int | None = None,
        share_across_processes: bool = True,
        metrics_namespace: str = "GemmaModelHandler",
    ):
        super().__init__(
            min_batch_size=min_batch_size,
            max_batch_size=max_batch_size,
            max_batch_duration_secs=max_batch_duration_secs,
            large_model=share_across_processes,
            env_vars={"KERAS_BACKEND": "jax"},
        )
        self._preset = preset
        self._model_id = model_id or PurePath(preset.rstrip("/")).name
        self._defaults = {"max_length": max_length, "sampler": sampler}
        self._metrics_namespace = metrics_namespace
        self._generate_calls = Metrics.counter(metrics_namespace, "generate_calls")
        self._prompts = Metrics.counter(metrics_namespace, "prompts")
        self._batch_sizes = Metrics.distribution(metrics_namespace, "batch_size")

    @property
    def model_id(self) -> str:
        return self._model_id

    def load_model(self) -> KerasHubGenerator:
        return KerasHubGenerator(self._preset)

    def validate_inference_args(self, inference_args: dict[str, Any] | None) -> None:
        unknown = set(inference_args or {}) - _INFERENCE_ARGS
        if unknown:
            raise ValueError(f"unknown inference args {sorted(unknown)}; accepted: {sorted(_INFERENCE_ARGS)}")

    def run_inference(
        self,
        batch: Sequence[str],
        model: KerasHubGenerator,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        settings = {**self._defaults, **(inference_args or {})}
        replies = model.generate(list(batch), settings["max_length"], settings["sampler"])
        if len(replies) != len(batch):
            raise RuntimeError(f"the model returned {len(replies)} replies for {len(batch)} prompts")
        self._generate_calls.inc()
        self._prompts.inc(len(batch))
        self._batch_sizes.update(len(batch))
        return [PredictionResult(prompt, reply, self._model_id) for prompt, reply in zip(batch, replies)]

    def get_metrics_namespace(self) -> str:
        return self._metrics_namespace
