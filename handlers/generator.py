"""The loaded model: a KerasHub causal LM that generates replies and scores next tokens, at a few shapes."""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from handlers.prefix_cache import Prefilled, PrefixCache
from handlers.shapes import bucket, reachable_lengths, rest_widths, scoring_widths
from handlers.stateless import jit_with_weights

__all__ = ["USAGE", "Generation", "KerasHubGenerator", "SamplerSpec", "WarmUp"]

SamplerSpec = str | Mapping[str, Any]
# Instruction-tuned Gemma ends its turn with this token; stopping there saves generating up to max_length.
_END_OF_TURN = "<end_of_turn>"
# What `KerasHubGenerator.usage` counts: token positions, then seconds.
USAGE = ("scored_tokens", "prefilled_tokens", "decoded_tokens", "score_s", "prefill_s", "decode_s", "generate_s")
# Texts a chat may begin with: a head's token ids are those it shares with the head followed by each, since the
# tokenizer may merge the head's last characters with the chat's first ones.
_PROBES = ("x", " x", "X", "1", "\n", " ", ":", "<", "한", "é")


class Generation(NamedTuple):
    """One reply, with the token counts that say whether the prompt fitted the budget."""

    text: str
    prompt_tokens: int
    max_length: int
    choice: str | None = None  # the option the model's likelihood picked, when the handler chooses first
    sequence_length: int = 0  # the length generate() ran at (a bucket up to max_length); 0 when it did not run
    confidence: float | None = None  # the chosen option's probability among the options, when the handler chooses
    view: int = 0  # which of a record's prompts this answers, when it was sent several (GemmaModelHandler)

    @property
    def prompt_fitted(self) -> bool:
        """False when the prompt filled `max_length`, so the model was cut off before it could answer."""
        return self.prompt_tokens < self.max_length




class _Scored(NamedTuple):
    """The last cached scoring pass, which `generate()` continues when it is sent the same prompts extended."""

    batch_size: int
    rows: dict[int, int]  # the index of each scored prompt in its batch: its row in the cache
    prefilled: Prefilled


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

    def __init__(self, preset: str, *, prefix_cache: bool = True):
        from handlers import lora

        self._model = lora.load_causal_lm(preset)
        self._sampler_key: str | None = None
        self._tokenizer = self._model.preprocessor.tokenizer
        stop = [self._tokenizer.end_token_id]
        if _END_OF_TURN in self._tokenizer.get_vocabulary():
            stop.append(self._tokenizer.token_to_id(_END_OF_TURN))
        self._stop_token_ids = tuple(stop)
        self._stop_ids_of: dict[tuple[str, ...], tuple[int, ...]] = {}
        self._forward = None
        # Off, every prompt is prefilled whole from its first token, by KerasHub's generate() (the path a prompt
        # without a cached head takes anyway).
        self._prefixes = PrefixCache(self._model) if prefix_cache else None
        self._cached_heads: set[str] = set()
        self._scored: _Scored | None = None
        self._samplers: dict[str, Any] = {}
        self._usage: collections.Counter[str] = collections.Counter()
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

    def _stop_ids(self, stop: Sequence[str]) -> tuple[int, ...]:
        """The end-of-text and end-of-turn ids, and every token that holds a text of `stop`: the model may write
        "\n\n" where the prompt stops at "\n", and decoding on after it would only write what the cut drops."""
        key = tuple(stop)
        if key not in self._stop_ids_of:
            vocabulary = self._tokenizer.get_vocabulary()
            # SentencePiece writes a space as "▁".
            pieces = [piece.replace("\u2581", " ") for piece in vocabulary]
            ids = [token for token, piece in enumerate(pieces) if any(text in piece for text in stop)]
            missing = [text for text in stop if not any(text in pieces[token] for token in ids)]
            if missing:
                raise ValueError(f"no token of this tokenizer holds the stop texts {missing!r}")
            self._stop_ids_of[key] = (*self._stop_token_ids, *ids)
        return self._stop_ids_of[key]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """How many tokens each text is, without the start token."""
        return [count - 1 for count in self._prompt_tokens(list(texts))]

    def cache_heads(self, heads: Sequence[str]) -> None:
        """Computes the key/value cache of each of `heads` (prompt texts before the chat) once for this model, so
        that a prompt starting with one is prefilled only after it. Nothing when the prefix cache is off."""
        for head in set(heads) - self._cached_heads if self._prefixes else ():
            probes = self._sequences([head + probe for probe in _PROBES])
            shortest = min(map(len, probes))
            shared = next((at for at in range(shortest) if len({p[at] for p in probes}) > 1), shortest - 1)
            with self._lock:
                self._prefixes.add(probes[0][:shared])
            self._cached_heads.add(head)

    def weight_bytes(self) -> int:
        """Bytes of the model's weights, adapter included: what a decoding step reads."""
        return sum(variable.value.nbytes for variable in self._model.backbone.weights)

    def usage(self) -> dict[str, float]:
        """What this model ran so far: token positions pushed through the scoring pass, through prefill and
        through decoding (padding included; KerasHub's generate() prefills its whole sequence length, and its
        decoding is not counted), and the seconds of each stage (`generate_s`: KerasHub's generate(), prefill and
        decoding in one call)."""
        return dict(self._usage)

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

        Generation ends at the end-of-text and end-of-turn tokens, and at every token that holds a text of
        `stop` (`"\n\n"` for `"\n"`); a reply is cut before the first stop text.
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
            replies = self._generate_cached(prompts, fitting, (sequence_length, max_length), sampler, stop, pad_to or 0)
            if replies is None:
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
        stop_ids = self._stop_ids(stop)
        with self._lock, self._timed("generate_s"):
            self._use_sampler(sampler)
            self._usage["prefilled_tokens"] += len(batch) * sequence_length
            return self._model.generate(batch, max_length=sequence_length, stop_token_ids=stop_ids, strip_prompt=True)

    def _generate_cached(
        self, prompts: list[str], fitting: list[int], lengths: tuple[int, int], sampler: SamplerSpec,
        stop: Sequence[str], pad_to: int,
    ) -> list[str] | None:
        """The replies to `prompts[fitting]` through the prefix cache: continuing the last scoring pass when these
        prompts extend the ones it scored, else prefilling what follows their head. None where neither applies
        (no cached head, the cache off, or a sampler with random state, which KerasHub's generate() advances).

        `lengths`: the sequence length to decode at, and `max_length`, the cache's size at prefill (as the
        scoring pass makes it, so that one compiled decoding per length serves both).
        """
        length, max_length = lengths
        sampler_object = self._stateless_sampler(sampler)
        if self._prefixes is None or sampler_object is None:
            return None
        sequences = self._sequences([prompts[index] for index in fitting])
        with self._lock:
            source = self._continued(len(prompts), fitting, sequences)
            if source is None:
                head = self._prefixes.head_for(sequences)
                if head is None:
                    return None
                with self._timed("prefill_s"):
                    source = self._prefixes.prefill(head, sequences, pad_to, max_length), list(range(len(sequences)))
                self._usage["prefilled_tokens"] += source[0].positions
            prefilled, rows = source
            padding = max(0, pad_to - len(rows))
            stop_ids = self._stop_ids(stop)
            with self._timed("decode_s"):
                decoded = self._prefixes.decode(
                    prefilled, rows + rows[-1:] * padding, sequences + sequences[-1:] * padding, length,
                    sampler_object, stop_ids,
                )
            self._usage["decoded_tokens"] += decoded.positions
        return [self._reply(decoded.tokens[row], len(sequence), stop_ids) for row, sequence in enumerate(sequences)]

    def _continued(self, batch_size: int, fitting: list[int], sequences: list[list[int]]):
        """(the last scoring pass, the cache row of each sequence) when each sequence extends the prompt scored at
        its place in the batch; else None. A scoring pass is continued once."""
        scored, self._scored = self._scored, None
        if scored is None or scored.batch_size != batch_size or not set(fitting) <= scored.rows.keys():
            return None
        rows = [scored.rows[index] for index in fitting]
        for row, sequence in zip(rows, sequences):
            prefix = scored.prefilled.sequences[row]
            if sequence[: len(prefix)] != prefix:
                return None
        return scored.prefilled, rows

    def _reply(self, tokens: np.ndarray, prompt_tokens: int, stop_ids: tuple[int, ...]) -> str:
        """The text of what follows the prompt in `tokens`, up to and with the first stop token, without special
        tokens: what KerasHub's generate(strip_prompt=True) returns."""
        reply = tokens[prompt_tokens:].tolist()
        end = next((at for at, token in enumerate(reply) if token in stop_ids), len(reply) - 1)
        special = set(self._tokenizer.special_token_ids)
        return str(self._tokenizer.detokenize([token for token in reply[: end + 1] if token not in special]))

    def _stateless_sampler(self, sampler: SamplerSpec):
        """The KerasHub sampler `sampler` names, or None for one with random state."""
        key = json.dumps(sampler, sort_keys=True)
        if key not in self._samplers:
            from handlers import native_logs

            made = native_logs.keras_hub().samplers.get(sampler if isinstance(sampler, str) else dict(sampler))
            self._samplers[key] = None if made.variables else made
        return self._samplers[key]

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self._usage[stage] += time.monotonic() - started

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
        started, shapes, before = time.monotonic(), 0, len(self._warm)
        [tokens] = self._prompt_tokens([prompt])
        if self._cached_warm_up(prompt, max_length, sampler, stop, reply_tokens, batch_sizes):
            return WarmUp(len(self._warm) - before, round(time.monotonic() - started, 2))
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
        started, shapes, before = time.monotonic(), 0, len(self._warm)
        sequences = self._sequences([prompt])
        if self._cached_warm_up(prompt, max_length, None, (), None, batch_sizes):
            return WarmUp(len(self._warm) - before, round(time.monotonic() - started, 2))
        for width in scoring_widths(len(sequences[0]), max_length):
            for size in batch_sizes:
                if ("score", size, width) not in self._warm:
                    self._score_padded(sequences, token_ids, size, width)
                    self._warm.add(("score", size, width))
                    shapes += 1
        return WarmUp(shapes, round(time.monotonic() - started, 2))

    def _cached_warm_up(
        self, prompt: str, max_length: int, sampler: SamplerSpec | None, stop: Sequence[str],
        reply_tokens: int | None, batch_sizes: Sequence[int],
    ) -> bool:
        """Runs the prefix cache's shapes for prompts of `prompt`'s head no shorter than it: its prefill at each
        width and batch size, and with a `sampler`, its decoding at each reachable length. False when such prompts
        take KerasHub's generate() and the plain scoring pass instead (no cached head, the cache off)."""
        [sequence] = self._sequences([prompt])
        head = self._prefixes.head_for([sequence]) if self._prefixes else None
        sampler_object = None if sampler is None else self._stateless_sampler(sampler)
        if head is None or (sampler is not None and sampler_object is None):
            return False
        filler = sequence[-1:] * max_length
        for width in rest_widths(len(head.ids), len(sequence) - len(head.ids), max_length):
            for size in batch_sizes:
                if ("prefill", len(head.ids), size, width, max_length) not in self._warm:
                    self._prefixes.prefill(head, [(sequence + filler)[: len(head.ids) + width]], size, max_length)
                    self._warm.add(("prefill", len(head.ids), size, width, max_length))
        stop_ids = self._stop_ids(stop)
        for length in reachable_lengths(len(sequence), max_length, reply_tokens) if sampler else ():
            for size in batch_sizes:
                shape = ("decode", size, max_length, length, json.dumps(sampler, sort_keys=True), stop_ids)
                if shape not in self._warm:
                    # A prompt that fills all but the last position decodes one step: the shape is what compiles.
                    full = (sequence + filler)[: length - 1]
                    prefilled = self._prefixes.prefill(head, [sequence], size, max_length)._replace(sequences=[full])
                    self._prefixes.decode(prefilled, [0] * size, [full] * size, length, sampler_object, stop_ids)
                    self._warm.add(shape)
        return True

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
            head = self._prefixes.head_for(batch) if self._prefixes else None
            if head is None:
                scores[scored] = self._score_padded(batch, token_ids, pad_to or 0, bucket(max(map(len, batch))))
                return scores
            with self._lock, self._timed("score_s"):
                prefilled = self._prefixes.prefill(head, batch, pad_to or 0, max_length)
                self._scored = _Scored(len(prompts), {index: row for row, index in enumerate(scored)}, prefilled)
            self._usage["scored_tokens"] += prefilled.positions
            scores[scored] = prefilled.logprobs[:, np.asarray(token_ids)]
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
        with self._lock, self._timed("score_s"):
            ids = np.asarray(token_ids, dtype="int32")
            scores = np.asarray(self._score(token_matrix, token_matrix != 0, last, ids))
        self._usage["scored_tokens"] += token_matrix.size
        return scores[: len(sequences)]

    def _score(self, token_matrix, padding_mask, last, token_ids):
        if self._forward is None:
            self._forward = jit_with_weights(self._model.backbone, self._forward_pass)
        return self._forward(token_matrix, padding_mask, last, token_ids)

    def _forward_pass(self, token_matrix, padding_mask, last, token_ids):
        import jax

        backbone = self._model.backbone
        hidden = backbone({"token_ids": token_matrix, "padding_mask": padding_mask})
        at_last = hidden[jax.numpy.arange(hidden.shape[0]), last]
        # The full vocabulary for one position per prompt is cheap; it normalises the log-probabilities.
        logits = backbone.token_embedding(at_last, reverse=True).astype("float32")
        return jax.nn.log_softmax(logits, axis=-1)[:, token_ids]

    def _prompt_tokens(self, prompts: list[str]) -> list[int]:
        # The start token counts against max_length too.
        return [len(ids) + 1 for ids in self._tokenizer(prompts)]

    def _use_sampler(self, sampler: SamplerSpec) -> None:
        # Compiling resets the traced generate function, so only do it when the sampler changes.
        key = json.dumps(sampler, sort_keys=True)
        if key != self._sampler_key:
            self._model.compile(sampler=sampler if isinstance(sampler, str) else dict(sampler))
            self._sampler_key = key

