"""A loaded model's prefix cache: each prompt head's key/value cache, computed once, and the prefill and decoding
that start from it (docs/models-and-prompts.md, "Prefix cache")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from handlers import kv_cache
from handlers.shapes import rest_width
from handlers.stateless import jit_with_weights

__all__ = ["Decoded", "Head", "Prefilled", "PrefixCache"]


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


class Decoded(NamedTuple):
    """Each row's token ids, its prompt then what the model wrote (zeros after), and how many token positions the
    decoding ran (rows times steps, padded rows included)."""

    tokens: np.ndarray
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
    ) -> Decoded:
        """Each of `prompts` continued by `sampler` from the cache rows `rows`: token ids (rows, `length`), and the
        positions decoded.

        A prompt may go on past its prefilled row (a chosen label and the text after it): decoding runs through
        the given tokens, writing their keys and values, before the model writes its own. Each row decodes at its
        own positions, so a batch of prompts of different lengths takes one step per token of its longest reply.
        """
        ends = [len(prefilled.sequences[row]) for row in rows]
        # The sampler steps through one index for all rows, from `start`: each row's tokens sit as far right as
        # makes its prefilled ones end there, in a matrix wide enough for any shift.
        start = max(ends)
        shifts = [start - end for end in ends]
        matrix = np.zeros((len(rows), 2 * length), dtype="int32")
        for row, (prompt, shift) in enumerate(zip(prompts, shifts)):
            matrix[row, shift : shift + len(prompt)] = prompt
        decoder = self._decoder(sampler, stop_ids)
        given_until = [shift + len(prompt) for shift, prompt in zip(shifts, prompts)]
        shifted = np.asarray(decoder(
            prefilled.cache, np.asarray(rows, "int32"), matrix, np.asarray(given_until, "int32"),
            np.asarray(shifts, "int32"), np.int32(start),
        ))
        # The loop ran until every row had written a stop token (a full row is made to write one), or to the end.
        stopped = np.isin(shifted, stop_ids) & (np.arange(shifted.shape[1]) >= np.asarray(given_until)[:, None])
        last = np.where(stopped.any(axis=1), stopped.argmax(axis=1), shifted.shape[1] - 1)
        steps = int(last.max()) + 1 - start
        tokens = np.stack([shifted[row, shift : shift + length] for row, shift in enumerate(shifts)])
        return Decoded(tokens, len(rows) * steps)

    def _decoder(self, sampler, stop_ids: tuple[int, ...]) -> Callable:
        key = (id(sampler), stop_ids)
        if key not in self._decoders:
            self._decoders[key] = jit_with_weights(
                self._model.backbone, lambda *args: self._decode_rows(sampler, stop_ids, *args)
            )
        return self._decoders[key]

    def _decode_rows(self, sampler, stop_ids, cache, rows, tokens, given_until, shifts, start):
        import jax
        import jax.numpy as jnp

        length = tokens.shape[1] // 2
        cache = kv_cache.resize(kv_cache.rows(cache, rows), length)
        # As KerasHub's generate(): the given tokens are kept, the model fills the rest.
        given = jnp.arange(tokens.shape[1])[None, :] < given_until[:, None]

        def one_row(token, cache, position):
            one = jax.tree.map(lambda leaf: leaf[None], cache)
            logits, hidden, one = self._model.call_with_cache(token[None], one, position)
            return logits[0], hidden[0], jax.tree.map(lambda leaf: leaf[0], one)

        # `call_with_cache` takes one position for the whole batch; mapped over the rows, each row has its own.
        each_row = jax.vmap(one_row)
        # A row whose next token would fall past its `length` positions is full (as in KerasHub's generate()): these
        # logits make it stop, so that the loop ends when the others do.
        stop = jnp.where(jnp.arange(self._model.backbone.vocabulary_size) == stop_ids[0], 0.0, -1e9)

        def step(prompt, cache, index):
            token = jax.lax.dynamic_slice_in_dim(prompt, index - 1, 1, axis=1)
            logits, hidden, cache = each_row(token, cache, index - 1 - shifts)
            full = (index - shifts >= length)[:, None]
            return jnp.where(full, stop.astype(logits.dtype), logits[:, 0]), hidden[:, 0], cache

        return sampler(
            next=step, prompt=tokens, cache=cache, index=start, mask=given, stop_token_ids=stop_ids, model=self._model
        )
