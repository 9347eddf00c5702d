"""A Beam model handler that runs any KerasHub causal LM preset (Gemma by default) on the JAX backend."""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, NamedTuple

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from apache_beam.utils import shared

__all__ = [
    "Choice", "GemmaModelHandler", "Generation", "KerasHubGenerator", "WarmUp", "batch_sizes", "length_buckets",
    "scoring_widths",
]

SamplerSpec = str | Mapping[str, Any]
_INFERENCE_ARGS = frozenset({"max_length", "sampler"})
# Instruction-tuned Gemma ends its turn with this token; stopping there saves generating up to max_length.
_END_OF_TURN = "<end_of_turn>"
# JAX compiles `generate()` and the scoring pass once per input shape (tens of seconds on a CPU), so every batch
# is padded to one of a few sizes and every sequence to one of a few lengths: 64 and 96 times powers of two.
_SHORTEST = 64


def _bucket(needed: int) -> int:
    """The smallest length of 64 or 96 times a power of two that holds `needed` tokens."""
    size = _SHORTEST
    while True:
        for length in (size, size * 3 // 2):
            if length >= needed:
                return length
        size *= 2


def length_buckets(max_length: int) -> tuple[int, ...]:
    """The sequence lengths `generate()` runs at, up to `max_length`, which is always the last one."""
    buckets, needed = [], 1
    while (length := _bucket(needed)) < max_length:
        buckets.append(length)
        needed = length + 1
    return (*buckets, max_length)


def batch_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The batch sizes the model is run at: powers of two below `max_batch_size`, then `max_batch_size`."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return (*sizes, max_batch_size)


def reachable_lengths(shortest_tokens: int, max_length: int, reply_tokens: int | None) -> tuple[int, ...]:
    """The `length_buckets(max_length)` that `generate()` can run a prompt of at least `shortest_tokens` at."""
    if reply_tokens is None:
        return (max_length,)
    lowest = min(_bucket(shortest_tokens + reply_tokens), max_length)
    return tuple(length for length in length_buckets(max_length) if length >= lowest)


def scoring_widths(shortest_tokens: int, max_length: int) -> tuple[int, ...]:
    """The widths the scoring pass runs prompts of `shortest_tokens` and more, shorter than `max_length`, at.

    Unlike `generate()`'s lengths these are not capped by `max_length`: a prompt is scored at its own bucket.
    """
    widths, width = [], _bucket(shortest_tokens)
    while width <= _bucket(max_length - 1):
        widths.append(width)
        width = _bucket(width + 1)
    return tuple(widths)


def _smallest_at_least(sizes: Sequence[int], needed: int) -> int:
    """The smallest of the sorted `sizes` that holds `needed`, or the largest when none does."""
    return sizes[min(bisect.bisect_left(sizes, needed), len(sizes) - 1)]


class Generation(NamedTuple):
    """One reply, with the token counts that say whether the prompt fitted the budget."""

    text: str
    prompt_tokens: int
    max_length: int
    choice: str | None = None  # the option the model's likelihood picked, when the handler chooses first
    sequence_length: int = 0  # the length generate() ran at (a bucket up to max_length); 0 when it did not run

    @property
    def prompt_fitted(self) -> bool:
        """False when the prompt filled `max_length`, so the model was cut off before it could answer."""
        return self.prompt_tokens < self.max_length


@dataclass(frozen=True)
class Choice:
    """Makes the handler pick one of `options` by likelihood before it generates.

    For each prompt, the option the model finds most likely as the next token wins (its log-probability less
    its mean on the `baseline_prompts`, inputs that carry no information); the model then continues
    `prompt + option + then`, and the reply is that continuation, with the option in `Generation.choice`.
    Every option must be one token of the model's vocabulary.

    With `continue_head` = (head, replacement), a prompt that begins with `head` is continued with `replacement`
    in its place: the choice is read from a short prompt, the continuation written after a longer one.
    `offsets` (one per option, or none) are added to the options' scores: a tuned model's correction of its
    lean towards some labels, fitted on held-out rows.
    """

    options: tuple[str, ...]
    then: str = ""
    baseline_prompts: tuple[str, ...] = ()
    continue_head: tuple[str, str] | None = None
    offsets: tuple[float, ...] = ()

    def continuation(self, prompt: str, option: str) -> str:
        """What the model continues once `option` is chosen for `prompt`."""
        if self.continue_head and prompt.startswith(self.continue_head[0]):
            prompt = self.continue_head[1] + prompt[len(self.continue_head[0]) :]
        return prompt + option + self.then


class WarmUp(NamedTuple):
    """What a warm-up ran: the shapes it compiled (those not run before on this model) and the seconds it took."""

    shapes: int
    seconds: float


def _cut(text: str, stop: Sequence[str]) -> str:
    """`text` up to the first of the `stop` texts."""
    for marker in stop:
        text = text.split(marker, 1)[0]
    return text


class KerasHubGenerator:
    """A loaded causal LM that turns a batch of prompts into a batch of replies.

    The handler talks to the model only through its public methods, with plain arguments and results, so the
    object can live in another process behind Beam's shared-model proxy.
    """

    def __init__(self, preset: str):
        # Keras picks its backend once, at import: this must run before anything imports keras.
        os.environ.setdefault("KERAS_BACKEND", "jax")
        from handlers import lora

        self._model = lora.load_causal_lm(preset)
        self._sampler_key: str | None = None
        self._tokenizer = self._model.preprocessor.tokenizer
        stop = [self._tokenizer.end_token_id]
        if _END_OF_TURN in self._tokenizer.get_vocabulary():
            stop.append(self._tokenizer.token_to_id(_END_OF_TURN))
        self._stop_token_ids = tuple(stop)
        self._forward = None
        # The shapes warm-up has run, so that a second handler or thread sharing this model does not run them again.
        self._warm: set[tuple] = set()
        # Two RunInference steps may share one loaded model (the same tag), and a streaming runner calls from
        # several threads: one call at a time keeps the sampler and the compiled functions consistent.
        self._lock = threading.Lock()

    def token_ids(self, texts: Sequence[str]) -> list[int]:
        """The id of each text, which must be a single token of the vocabulary."""
        ids = []
        for text in texts:
            tokens = np.asarray(self._tokenizer.tokenize(text)).tolist()
            if len(tokens) != 1:
                raise ValueError(f"{text!r} is {len(tokens)} tokens for this tokenizer, not one")
            ids.append(tokens[0])
        return ids

    def generate(
        self,
        prompts: list[str],
        max_length: int,
        sampler: SamplerSpec,
        stop: Sequence[str] = (),
        *,
        reply_tokens: int | None = None,
        pad_to: int | None = None,
    ) -> list[Generation]:
        """One `generate()` call for the whole batch; each reply has its prompt removed by token position.

        Generation ends at the end-of-text and end-of-turn tokens, and at each text in `stop` (single tokens);
        a reply is cut before the first stop text, which a longer token (`"\n\n"` for `"\n"`) may hold.
        The call runs at the smallest of `length_buckets(max_length)` that holds the longest prompt plus
        `reply_tokens` (`max_length` itself without a budget), with the batch padded to `pad_to` rows by
        repeating its last prompt, so that a stream of varied batches compiles only a few shapes. A prompt
        that fills `max_length` is not run at all: its reply is empty and `prompt_fitted` false.
        """
        counts = self._prompt_tokens(prompts)
        fitting = [index for index, count in enumerate(counts) if count < max_length]
        texts = [""] * len(prompts)
        sequence_length = 0
        if fitting:
            longest = max(counts[index] for index in fitting)
            needed = max_length if reply_tokens is None else longest + reply_tokens
            sequence_length = min(_bucket(needed), max_length)
            batch = [prompts[index] for index in fitting]
            batch += batch[-1:] * max(0, (pad_to or 0) - len(batch))
            replies = self._generate_at(batch, sequence_length, sampler, stop)
            for index, reply in zip(fitting, replies):
                texts[index] = _cut(str(reply), stop)
        return [
            Generation(text, count, max_length, sequence_length=sequence_length if count < max_length else 0)
            for text, count in zip(texts, counts)
        ]

    def _generate_at(self, batch: list[str], sequence_length: int, sampler: SamplerSpec, stop: Sequence[str]) -> list:
        # KerasHub's JAX generate() takes the stop ids as a static argument: other ids compile another function.
        stop_ids = (*self._stop_token_ids, *self.token_ids(stop))
        with self._lock:
            self._use_sampler(sampler)
            return self._model.generate(batch, max_length=sequence_length, stop_token_ids=stop_ids, strip_prompt=True)

    def warm_up(
        self,
        prompt: str,
        max_length: int,
        sampler: SamplerSpec,
        stop: Sequence[str] = (),
        *,
        reply_tokens: int | None = None,
        batch_sizes: Sequence[int] = (1,),
    ) -> WarmUp:
        """Runs `generate()` at every shape a stream of prompts no shorter than `prompt` can meet.

        One call per padded batch size in `batch_sizes` and length bucket a prompt of at least `prompt`'s tokens
        can land in (`reachable_lengths`), with the same arguments as `generate` (its stop texts and sampler:
        other stop ids or another sampler compile another function). Shapes already warmed on this model are
        skipped.
        """
        started, shapes = time.monotonic(), 0
        [tokens] = self._prompt_tokens([prompt])
        for length in reachable_lengths(tokens, max_length, reply_tokens):
            for size in batch_sizes:
                shape = ("generate", size, length, json.dumps(sampler, sort_keys=True), tuple(stop))
                if shape not in self._warm and tokens < length:
                    self._generate_at([prompt] * size, length, sampler, stop)
                    self._warm.add(shape)
                    shapes += 1
        return WarmUp(shapes, round(time.monotonic() - started, 2))

    def warm_up_scoring(
        self, prompt: str, max_length: int, token_ids: Sequence[int], *, batch_sizes: Sequence[int] = (1,)
    ) -> WarmUp:
        """Runs the scoring pass (`next_token_logprobs`) at every shape prompts of `prompt`'s tokens up to
        `max_length` can meet: each batch size and each width of `scoring_widths`. Shapes already warmed are skipped.
        """
        started, shapes = time.monotonic(), 0
        sequences = self._sequences([prompt])
        for width in scoring_widths(len(sequences[0]), max_length):
            for size in batch_sizes:
                if ("score", size, width) not in self._warm:
                    self._score_padded(sequences, token_ids, size, width)
                    self._warm.add(("score", size, width))
                    shapes += 1
        return WarmUp(shapes, round(time.monotonic() - started, 2))

    def next_token_logprobs(
        self, prompts: list[str], token_ids: Sequence[int], *, pad_to: int | None = None, max_length: int | None = None
    ) -> np.ndarray:
        """Log-probabilities, shape (prompts, token_ids), of each token following each prompt: one forward pass.

        Sequences are padded to a length of `length_buckets` and the batch to `pad_to` rows (empty ones), so
        varied batches compile the pass a few times only. With `max_length`, a prompt that fills it is left out
        (its row is -inf): `generate()` will not run it, and scoring it would compile a width of its own.
        """
        sequences = self._sequences(prompts)
        scored = [row for row, sequence in enumerate(sequences) if max_length is None or len(sequence) < max_length]
        scores = np.full((len(sequences), len(token_ids)), -np.inf, dtype="float32")
        if scored:
            batch = [sequences[row] for row in scored]
            scores[scored] = self._score_padded(batch, token_ids, pad_to or 0, _bucket(max(map(len, batch))))
        return scores

    def _sequences(self, prompts: list[str]) -> list[list[int]]:
        return [[self._tokenizer.start_token_id, *np.asarray(ids).tolist()] for ids in self._tokenizer(prompts)]

    def _score_padded(self, sequences: list[list[int]], token_ids: Sequence[int], rows: int, width: int) -> np.ndarray:
        """The scoring pass on `sequences` padded to `rows` rows (empty ones) and `width` tokens."""
        token_matrix = np.zeros((max(len(sequences), rows), width), dtype="int32")
        last = np.zeros(len(token_matrix), dtype="int32")
        for row, sequence in enumerate(sequences):
            token_matrix[row, : len(sequence)] = sequence
            last[row] = len(sequence) - 1
        with self._lock:
            scores = self._score(token_matrix, token_matrix != 0, last, np.asarray(token_ids, dtype="int32"))
        return np.asarray(scores)[: len(sequences)]

    def _score(self, token_matrix, padding_mask, last, token_ids):
        if self._forward is None:
            self._forward = self._compile_forward()
        backbone = self._model.backbone
        return self._forward(
            [v.value for v in backbone.trainable_variables], [v.value for v in backbone.non_trainable_variables],
            token_matrix, padding_mask, last, token_ids,
        )

    def _compile_forward(self):
        import jax
        import keras

        backbone = self._model.backbone

        # Stateless, so the weights are arguments of the compiled function rather than constants baked into it.
        def forward(trainable, non_trainable, token_matrix, padding_mask, last, token_ids):
            state = [*zip(backbone.trainable_variables, trainable), *zip(backbone.non_trainable_variables, non_trainable)]
            with keras.StatelessScope(state_mapping=state):
                hidden = backbone({"token_ids": token_matrix, "padding_mask": padding_mask})
                at_last = hidden[jax.numpy.arange(hidden.shape[0]), last]
                # The full vocabulary for one position per prompt is cheap; it normalises the log-probabilities.
                logits = backbone.token_embedding(at_last, reverse=True).astype("float32")
            return jax.nn.log_softmax(logits, axis=-1)[:, token_ids]

        return jax.jit(forward)

    def _prompt_tokens(self, prompts: list[str]) -> list[int]:
        # The start token counts against max_length too.
        return [len(ids) + 1 for ids in self._tokenizer(prompts)]

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
        stop: texts (single tokens) that end a reply, besides the end-of-text and end-of-turn tokens.
        choice: pick one of a few options by likelihood first, then generate what follows it (see `Choice`).
        reply_tokens: the longest reply wanted, in tokens. With it, each batch runs at the smallest of
            `length_buckets(max_length)` that holds its longest prompt plus this budget (prefill covers the
            whole length, so a shorter one is faster); without it, at `max_length`.
        choose_only: with `choice`, stop after picking: each reply is empty, with the option in its `choice`
            (for measuring the sentiment alone, several times faster than generating a summary too).
        warm_up_prompt: the shortest prompt this handler will be sent (its template around a one-word chat).
            With it, the model runs every shape a stream can meet before the first batch is answered: each
            padded batch size at each length bucket a prompt at least this long can land in, for `generate()`
            and, with `choice`, for the scoring pass (`KerasHubGenerator.warm_up`). It costs load time (measured:
            12 shapes of the 270M model, up to batch 8 × 768 tokens, in 302 s on two busy CPU cores), and no
            batch compiles after it.

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
        self._stop = tuple(stop)
        self._choice = choice
        self._reply_tokens = reply_tokens
        if choose_only and choice is None:
            raise ValueError("choose_only needs a choice")
        self._choose_only = choose_only
        self._padded_sizes = batch_sizes(max_batch_size)
        self._baseline: np.ndarray | None = None
        self._warm_up_prompt = warm_up_prompt
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

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def model_tag(self) -> str:
        """Names the loaded model for Beam's shared-model cache (`RunInference(model_identifier=...)`).

        Handlers of the same class, preset and default sampler get the same tag, so two RunInference steps share
        one copy of the weights per worker (when models are shared across processes); another sampler gets a
        copy of its own, since switching samplers would recompile `generate()` at every batch.
        """
        handler_class = f"{type(self).__module__}.{type(self).__qualname__}"
        key = json.dumps([handler_class, self._preset.rstrip("/"), self._defaults["sampler"]], sort_keys=True)
        return "gemma-" + hashlib.sha256(key.encode()).hexdigest()[:16]

    def load_model(self) -> KerasHubGenerator:
        if self._in_process is None:
            return self._load()
        return self._in_process.acquire(self._load, tag=self.model_tag)

    def _load(self) -> KerasHubGenerator:
        model = KerasHubGenerator(self._preset)
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
            self._baseline_of(model, option_ids)
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
        batch: Sequence[str],
        model: KerasHubGenerator,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        self._warm_up(model)
        if self._unreported:
            self._warm_up_shapes.inc(self._unreported.shapes)
            self._warm_up_secs.update(int(self._unreported.seconds * 1000))
            self._unreported = None
        settings = {**self._defaults, **(inference_args or {})}
        prompts = list(batch)
        pad_to = _smallest_at_least(self._padded_sizes, len(prompts))
        # A prompt that fills max_length gets no reply, so it is not scored either, unless only the pick is wanted.
        scored_up_to = None if self._choose_only else settings["max_length"]
        picks = self._pick(prompts, model, pad_to, scored_up_to) if self._choice else None
        if picks and self._choose_only:
            replies = [Generation("", 0, settings["max_length"], choice=pick) for pick in picks]
            return self._results(batch, replies)
        if picks:
            prompts = [self._choice.continuation(prompt, pick) for prompt, pick in zip(prompts, picks)]
        replies = model.generate(
            prompts, settings["max_length"], settings["sampler"], self._stop,
            reply_tokens=self._reply_tokens, pad_to=pad_to,
        )
        self._generate_calls.inc()
        if picks:
            replies = [reply._replace(choice=pick) for reply, pick in zip(replies, picks)]
        return self._results(batch, replies)

    def _results(self, batch: Sequence[str], replies: list[Generation]) -> list[PredictionResult]:
        if len(replies) != len(batch):
            raise RuntimeError(f"the model returned {len(replies)} replies for {len(batch)} prompts")
        self._prompts.inc(len(batch))
        self._batch_sizes.update(len(batch))
        return [PredictionResult(prompt, reply, self._model_id) for prompt, reply in zip(batch, replies)]

    def _pick(self, prompts: list[str], model: KerasHubGenerator, pad_to: int, max_length: int | None) -> list[str]:
        """The option each prompt's likeliest continuation is, relative to the model's prior for it."""
        options = self._choice.options
        option_ids = model.token_ids(options)
        scores = model.next_token_logprobs(prompts, option_ids, pad_to=pad_to, max_length=max_length)
        scores -= self._baseline_of(model, option_ids)
        if self._choice.offsets:
            scores += np.asarray(self._choice.offsets)
        return [options[best] for best in scores.argmax(axis=1)]

    def _baseline_of(self, model: KerasHubGenerator, option_ids: list[int]) -> np.ndarray:
        """The options' mean log-probability on the baseline prompts: once per worker, it does not depend on the chat."""
        if self._baseline is None:
            baseline_prompts = list(self._choice.baseline_prompts)
            self._baseline = (
                model.next_token_logprobs(
                    baseline_prompts, option_ids, pad_to=_smallest_at_least(self._padded_sizes, len(baseline_prompts))
                ).mean(axis=0)
                if baseline_prompts else np.zeros(len(option_ids))
            )
        return self._baseline

    def get_metrics_namespace(self) -> str:
        return self._metrics_namespace
