"""A loaded model's prefix cache: each prompt head's key/value cache, computed once, and the prefill and decoding
that start from it (docs/models-and-prompts.md, "Prefix cache")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from handlers import kv_cache
from handlers.shapes import rest_width
from handlers.stateless import jit_with_weights

__all__ = ["Head", "Prefilled", "PrefixCache"]


class Head(NamedTuple):
    """A prompt head's token ids (the start token first) and its one-row key/value cache."""

    ids: tuple[int, ...]
    cache: Any


class Prefilled(NamedTuple):
    """A batch prefilled after a head: each row's token ids, the cache (rows past the batch copy its last one) and
    the log-probabilities of the token after each row's last one, over the whole vocabulary; `positions` is how
    many token positions the prefill ran (rows times width, padding included)."""

    sequences: list[list[int]]
    cache: Any
    logprobs: np.ndarray
    positions: int


class PrefixCache:
    """The heads of a model's prompts, cached once, and the compiled functions that continue from them.

    Every function runs the model through its public `call_with_cache` at absolute positions (the head at 0, the
    rest after it), so causal and sliding-window masks are the ones KerasHub computes for an uncached prompt.
    """

    def __init__(self, model):
        self._model = model
        self._heads: list[Head] = []
        self._prefill = jit_with_weights(model.backbone, self._prefill_rows)
        self._decoders: dict[tuple, Callable] = {}

    def add(self, ids: Sequence[int]) -> None:
        """Caches the head `ids` (once; a head of the start token alone is not worth a cache)."""
        ids = tuple(ids)
        if len(ids) > 1 and all(head.ids != ids for head in self._heads):
            empty, no_spare = kv_cache.empty(self._model, 1, 0), np.zeros(0, "int8")
            cache, _ = self._prefill(empty, np.asarray([ids], "int32"), np.zeros(1, "int32"), no_spare)
            self._heads.append(Head(ids, cache))

    def head_for(self, sequences: Sequence[Sequence[int]]) -> Head | None:
        """The longest cached head that every sequence starts with and goes on after, if any."""
        matching = [
            head for head in self._heads
            if all(len(ids) > len(head.ids) and tuple(ids[: len(head.ids)]) == head.ids for ids in sequences)
        ]
        return max(matching, key=lambda head: len(head.ids), default=None)

    def prefill(self, head: Head, sequences: list[list[int]], rows: int, positions: int | None = None) -> Prefilled:
        """Prefills what follows `head` in each sequence, in `rows` rows (at least) of `rest_width` tokens, into a
        cache of `positions` positions (the head's and the width's without it).

        Decoding takes a cache of any size and cuts it to its sequence length: a cache of the longest length a
        handler runs (its `max_length`) makes one compiled decoding per length serve every prefill width.
        """
        rests = [sequence[len(head.ids) :] for sequence in sequences]
        positions = positions or len(head.ids) + rest_width(max(map(len, rests)))
        width = min(rest_width(max(map(len, rests))), positions - len(head.ids))
        matrix = np.zeros((max(rows, len(rests)), width), dtype="int32")
        last = np.zeros(len(matrix), dtype="int32")
        for row in range(len(matrix)):
            rest = rests[min(row, len(rests) - 1)]
            matrix[row, : len(rest)] = rest
            last[row] = len(rest) - 1
        cache, logprobs = self._prefill(head.cache, matrix, last, np.zeros(positions - len(head.ids) - width, "int8"))
        return Prefilled(sequences, cache, np.asarray(logprobs)[: len(sequences)], matrix.size)

    def _prefill_rows(self, head, rest, last, spare):
        import jax
        import jax.numpy as jnp

        batch, width = rest.shape
        # `spare` only carries, in its shape, the positions the cache keeps past the prefilled ones.
        cache = kv_cache.join(head, kv_cache.empty(self._model, batch, width + spare.shape[0]))
        # Logits are read at each row's last token only: the unused full-width logits are pruned by XLA.
        _, hidden, cache = self._model.call_with_cache(rest, cache, kv_cache.length(head))
        at_last = hidden[jnp.arange(batch), last]
        logits = self._model.backbone.token_embedding(at_last, reverse=True).astype("float32")
        return cache, jax.nn.log_softmax(logits, axis=-1)

    def decode(
        self, prefilled: Prefilled, rows: Sequence[int], prompts: Sequence[Sequence[int]], length: int,
        sampler, stop_ids: tuple[int, ...],
    ) -> np.ndarray:
        """Token ids (rows, `length`): each of `prompts` continued by `sampler` from the cache rows `rows`.

        A prompt may go on past its prefilled row (a chosen label and the text after it): decoding starts at the
        end of the shortest prefilled row and runs through the given tokens, writing their keys and values, before
        the model writes its own.
        """
        matrix = np.zeros((len(rows), length), dtype="int32")
        for row, prompt in enumerate(prompts):
            matrix[row, : len(prompt)] = prompt
        start = min(len(prefilled.sequences[row]) for row in rows)
        decoder = self._decoder(sampler, stop_ids)
        return np.asarray(decoder(
            prefilled.cache, np.asarray(rows, "int32"), matrix, np.asarray([len(p) for p in prompts], "int32"),
            np.int32(start),
        ))

    def _decoder(self, sampler, stop_ids: tuple[int, ...]) -> Callable:
        key = (id(sampler), stop_ids)
        if key not in self._decoders:
            self._decoders[key] = jit_with_weights(
                self._model.backbone, lambda *args: self._decode_rows(sampler, stop_ids, *args)
            )
        return self._decoders[key]

    def _decode_rows(self, sampler, stop_ids, cache, rows, tokens, prompt_lengths, start):
        import jax
        import jax.numpy as jnp

        length = tokens.shape[1]
        cache = kv_cache.resize(kv_cache.rows(cache, rows), length)
        # As KerasHub's generate(): the given tokens are kept, the model fills the rest.
        given = jnp.arange(length)[None, :] < prompt_lengths[:, None]

        def step(prompt, cache, index):
            token = jax.lax.dynamic_slice_in_dim(prompt, index - 1, 1, axis=1)
            logits, hidden, cache = self._model.call_with_cache(token, cache, index - 1)
            return logits[:, 0], hidden[:, 0], cache

        return sampler(
            next=step, prompt=tokens, cache=cache, index=start, mask=given, stop_token_ids=stop_ids, model=self._model
        )
