"""The loaded model: a KerasHub causal LM that generates replies and scores next tokens, at a few shapes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from handlers.shapes import bucket, reachable_lengths, scoring_widths

__all__ = ["Generation", "KerasHubGenerator", "SamplerSpec", "WarmUp"]

SamplerSpec = str | Mapping[str, Any]
# Instruction-tuned Gemma ends its turn with this token; stopping there saves generating up to max_length.
_END_OF_TURN = "<end_of_turn>"


class Generation(NamedTuple):
    """One reply, with the token counts that say whether the prompt fitted the budget."""

    text: str
    prompt_tokens: int
    max_length: int
    choice: str | None = None  # the option the model's likelihood picked, when the handler chooses first
    sequence_length: int = 0  # the length generate() ran at (a bucket up to max_length); 0 when it did not run
    confidence: float | None = None  # the chosen option's probability among the options, when the handler chooses

    @property
    def prompt_fitted(self) -> bool:
        """False when the prompt filled `max_length`, so the model was cut off before it could answer."""
        return self.prompt_tokens < self.max_length




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
            sequence_length = min(bucket(needed), max_length)
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
            scores[scored] = self._score_padded(batch, token_ids, pad_to or 0, bucket(max(map(len, batch))))
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
            state = [
                *zip(backbone.trainable_variables, trainable), *zip(backbone.non_trainable_variables, non_trainable)
            ]
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

