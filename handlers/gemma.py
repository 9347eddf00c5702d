"""A Beam model handler that runs any KerasHub causal LM preset (Gemma by default) on the JAX backend."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import PurePath
from typing import Any

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from apache_beam.utils import shared

from handlers.choice import Choice, confidence
from handlers.generator import USAGE, Generation, KerasHubGenerator, SamplerSpec, WarmUp
from handlers.shapes import batch_sizes, smallest_at_least

__all__ = ["GemmaModelHandler", "usage_metric"]

_INFERENCE_ARGS = frozenset({"max_length", "sampler"})


def usage_metric(name: str) -> str:
    """The Beam counter that a figure of `KerasHubGenerator.usage` goes to: seconds as milliseconds."""
    return name.removesuffix("_s") + "_milli_secs" if name.endswith("_s") else name


class GemmaModelHandler(ModelHandler[str | tuple[str, ...], PredictionResult, KerasHubGenerator]):
    """Runs batches of prompts through a KerasHub causal LM preset.

    A record may be sent as a tuple of prompts, several views of it, when the handler has a `choice`: each is
    scored, and the reply answers the most cautious view (`Choice.cautious`), with its index in `Generation.view`.

    Args:
        preset: a KerasHub preset: a local folder, `gs://…` or `kaggle://…`.
        model_id: the id written into every output record; defaults to the preset's last path part.
        max_length: the longest sequence (prompt plus reply) in tokens; an inference arg overrides it.
        sampler: a KerasHub sampler name (`"greedy"`, `"top_k"`, …) or its config dict; an inference
            arg overrides it.
        min_batch_size, max_batch_size, max_batch_duration_secs: batching, as in Beam's `BatchElements`.
        share_across_processes: load one model per worker machine and share it between its processes.
        metrics_namespace: where this handler's Beam metrics go, so two handlers report apart.
        stop: texts that end a reply, besides the end-of-text and end-of-turn tokens (decoding stops at any
            token that holds one).
        choice: pick one of a few options by likelihood first, then generate what follows it (see `Choice`).
        reply_tokens: the longest reply wanted, in tokens. With it, each batch runs at the smallest of
            `length_buckets(max_length)` that holds its longest prompt plus this budget (prefill covers the
            whole length, so a shorter one is faster); without it, at `max_length`.
        choose_only: with `choice`, stop after picking: each reply is empty, with the option in its `choice`
            (for measuring the sentiment alone, several times faster than generating a summary too).
        warm_up_prompt: the shortest prompt this handler will be sent (its template around a one-word chat).
            With it, the model runs every shape a stream can meet before the first batch is answered: each
            padded batch size at each length bucket a prompt at least this long can land in, for `generate()`
            and, with `choice`, for the scoring pass (`KerasHubGenerator.warm_up`). It costs load time (minutes on a
            CPU: benchmarks/README.md), and no batch compiles after it.
        heads: prompt texts before the chat (`PromptTemplate.head()`) whose key/value cache the model computes
            once and reuses for every prompt that starts with one (`KerasHubGenerator.cache_heads`).
        prefix_cache: false turns the prefix cache off: every prompt is prefilled whole, scored and generated
            apart (for measuring what the cache saves).

    Batches are padded to one of `batch_sizes(max_batch_size)` rows, so the model compiles a few shapes only.

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
        stop: Sequence[str] = (),
        choice: Choice | None = None,
        reply_tokens: int | None = None,
        choose_only: bool = False,
        warm_up_prompt: str | None = None,
        heads: Sequence[str] = (),
        prefix_cache: bool = True,
    ):
        super().__init__(
            min_batch_size=min_batch_size,
            max_batch_size=max_batch_size,
            max_batch_duration_secs=max_batch_duration_secs,
            large_model=share_across_processes,
        )
        self._preset = preset
        self._model_id = model_id or PurePath(preset.rstrip("/")).name
        self._defaults = {"max_length": max_length, "sampler": sampler}
        self._metrics_namespace = metrics_namespace
        self._stop = tuple(stop)
        self._choice = choice
        self._reply_tokens = reply_tokens
        if choose_only and choice is None:
            raise ValueError("choose_only needs a choice")
        self._choose_only = choose_only
        self._padded_sizes = batch_sizes(max_batch_size)
        self._prior: np.ndarray | None = None
        self._warm_up_prompt = warm_up_prompt
        self._heads = tuple(heads)
        self._prefix_cache = prefix_cache
        # Whether this copy of the handler has warmed its model; a warm-up done at load, before any bundle, is
        # reported to the metrics with the first batch (Beam has no metrics context while it loads the model).
        self._warmed = warm_up_prompt is None
        self._unreported: WarmUp | None = None
        self._companions: list[GemmaModelHandler] = []
        self._in_process: shared.Shared | None = None
        self._generate_calls = Metrics.counter(metrics_namespace, "generate_calls")
        self._prompts = Metrics.counter(metrics_namespace, "prompts")
        self._batch_sizes = Metrics.distribution(metrics_namespace, "batch_size")
        self._warm_up_shapes = Metrics.counter(metrics_namespace, "warm_up_shapes")
        self._warm_up_secs = Metrics.distribution(metrics_namespace, "warm_up_milli_secs")
        # What the model ran for this handler's batches (`KerasHubGenerator.usage`), seconds as milliseconds.
        self._usage = {name: Metrics.counter(metrics_namespace, usage_metric(name)) for name in USAGE}

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def model_tag(self) -> str:
        """Names the loaded model for Beam's shared-model cache (`RunInference(model_identifier=...)`).

        Handlers of the same class, preset and default sampler get the same tag, so two RunInference steps share
        one copy of the weights per worker (when models are shared across processes); another sampler gets a
        copy of its own, since switching samplers would recompile `generate()` at every batch; so does a handler
        with the prefix cache off. The loaded model's public methods are part of the tag: a model server of older
        code on the same machine (Beam finds one by its tag) would lack some.
        """
        handler_class = f"{type(self).__module__}.{type(self).__qualname__}"
        interface = sorted(name for name in dir(KerasHubGenerator) if not name.startswith("_"))
        key = json.dumps(
            [handler_class, self._preset.rstrip("/"), self._defaults["sampler"], not self._prefix_cache, interface],
            sort_keys=True,
        )
        return "gemma-" + hashlib.sha256(key.encode()).hexdigest()[:16]

    def load_model(self) -> KerasHubGenerator:
        if self._in_process is None:
            return self._load()
        return self._in_process.acquire(self._load, tag=self.model_tag)

    def _load(self) -> KerasHubGenerator:
        model = KerasHubGenerator(self._preset, prefix_cache=self._prefix_cache)
        self._warm_up(model)
        return model

    def share_model_with(self, other: GemmaModelHandler) -> None:
        """Makes this handler and `other` (same `model_tag`, two RunInference steps) use one loaded model.

        With `share_across_processes`, Beam already gives the steps one copy per worker. Without it, Beam keeps a
        model per step whatever its `model_identifier` (each step's DoFn has a `Shared` handle of its own), so a
        handle common to both handlers makes the second step get the first one's model in the same process.
        Either step may load it first: its warm-up covers the other's shapes too.
        """
        if other.model_tag != self.model_tag:
            raise ValueError(f"{self.model_tag} and {other.model_tag} are different models")
        self._in_process = other._in_process = self._in_process or other._in_process or shared.Shared()
        self._companions.append(other)
        other._companions.append(self)

    def _warm_up(self, model: KerasHubGenerator) -> None:
        """Runs the shapes of this handler's batches (see `warm_up_prompt`) and its companions', once per copy.

        A model shared across processes was loaded by another copy of the handler, and another RunInference step
        with the same `model_tag` may have loaded it: each copy warms the model at its first batch then, which
        runs only the shapes no warm-up has run on that model.
        """
        if self._warmed:
            return
        for handler in (self, *self._companions):
            model.cache_heads(handler._heads)
        runs = [run for handler in (self, *self._companions) for run in handler._warm_up_runs(model)]
        self._warmed = True
        self._unreported = WarmUp(sum(run.shapes for run in runs), sum(run.seconds for run in runs))

    def _warm_up_runs(self, model: KerasHubGenerator) -> list[WarmUp]:
        if self._warm_up_prompt is None:
            return []
        prompt, max_length = self._warm_up_prompt, self._defaults["max_length"]
        runs = []
        if self._choice:
            option_ids = model.token_ids(self._choice.options)
            runs.append(model.warm_up_scoring(prompt, max_length, option_ids, batch_sizes=self._padded_sizes))
            self._prior_of(model)
            # What generate() is sent after the pick: the shortest option is as good as any, one token each.
            prompt = self._choice.continuation(prompt, self._choice.options[0])
        if not self._choose_only:
            runs.append(model.warm_up(
                prompt, max_length, self._defaults["sampler"], self._stop,
                reply_tokens=self._reply_tokens, batch_sizes=self._padded_sizes,
            ))
        return runs

    def validate_inference_args(self, inference_args: dict[str, Any] | None) -> None:
        unknown = set(inference_args or {}) - _INFERENCE_ARGS
        if unknown:
            raise ValueError(f"unknown inference args {sorted(unknown)}; accepted: {sorted(_INFERENCE_ARGS)}")

    def run_inference(
        self,
        batch: Sequence[str | tuple[str, ...]],
        model: KerasHubGenerator,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        self._warm_up(model)
        model.cache_heads(self._heads)
        if self._unreported:
            self._warm_up_shapes.inc(self._unreported.shapes)
            self._warm_up_secs.update(int(self._unreported.seconds * 1000))
            self._unreported = None
        before = model.usage()
        try:
            return self._answer(batch, model, {**self._defaults, **(inference_args or {})})
        finally:
            after = model.usage()
            for name, counter in self._usage.items():
                spent = after.get(name, 0) - before.get(name, 0)
                counter.inc(round(spent * 1000 if name.endswith("_s") else spent))

    def _answer(
        self, batch: Sequence[str | tuple[str, ...]], model: KerasHubGenerator, settings: dict
    ) -> list[PredictionResult]:
        views = [element if isinstance(element, tuple) else (element,) for element in batch]
        if self._choice is None and any(len(prompts) > 1 for prompts in views):
            raise ValueError("a record sent as several prompts needs a handler with a choice to pick between them")
        pad_to = smallest_at_least(self._padded_sizes, len(batch))
        prompts, chosen, picks, shares = [prompts[0] for prompts in views], [0] * len(views), None, None
        if self._choice:
            # A prompt that fills max_length gets no reply, so it is not scored either, unless only the pick is wanted.
            flat = [prompt for prompts in views for prompt in prompts]
            scores = self._scores(model, flat, None if self._choose_only else settings["max_length"])
            chosen = self._choice.cautious(scores, [len(prompts) for prompts in views])
            rows = [first + view for first, view in zip(np.cumsum([0, *map(len, views)]), chosen)]
            scores, prompts = scores[rows], [flat[row] for row in rows]
            picks, shares = self._choice.chosen(scores), confidence(scores)
        if picks and self._choose_only:
            replies = [
                Generation("", 0, settings["max_length"], choice=pick, confidence=share, view=view)
                for pick, share, view in zip(picks, shares, chosen)
            ]
            return self._results(batch, replies)
        if picks:
            prompts = [self._choice.continuation(prompt, pick) for prompt, pick in zip(prompts, picks)]
        replies = model.generate(
            prompts, settings["max_length"], settings["sampler"], self._stop,
            reply_tokens=self._reply_tokens, pad_to=pad_to,
        )
        self._generate_calls.inc()
        if picks:
            replies = [
                reply._replace(choice=pick, confidence=share, view=view)
                for reply, pick, share, view in zip(replies, picks, shares, chosen)
            ]
        return self._results(batch, replies)

    def _scores(self, model: KerasHubGenerator, prompts: list[str], max_length: int | None) -> np.ndarray:
        """`Choice.scores` of every prompt, in passes of at most the largest batch size (the shapes warm-up ran)."""
        most = self._padded_sizes[-1]
        return np.concatenate([
            self._choice.scores(
                model, prompts[at : at + most], self._prior_of(model),
                pad_to=smallest_at_least(self._padded_sizes, len(prompts[at : at + most])), max_length=max_length,
            )
            for at in range(0, len(prompts), most)
        ])

    def _results(self, batch: Sequence[str | tuple[str, ...]], replies: list[Generation]) -> list[PredictionResult]:
        if len(replies) != len(batch):
            raise RuntimeError(f"the model returned {len(replies)} replies for {len(batch)} prompts")
        self._prompts.inc(len(batch))
        self._batch_sizes.update(len(batch))
        return [PredictionResult(prompt, reply, self._model_id) for prompt, reply in zip(batch, replies)]

    def _prior_of(self, model: KerasHubGenerator) -> np.ndarray:
        """`Choice.prior`, computed once per worker."""
        if self._prior is None:
            self._prior = self._choice.prior(
                model, smallest_at_least(self._padded_sizes, len(self._choice.baseline_prompts))
            )
        return self._prior

    def get_metrics_namespace(self) -> str:
        return self._metrics_namespace
