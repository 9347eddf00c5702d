"""The shapes the model runs at: sequence-length buckets and padded batch sizes, so that JAX compiles few."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

# JAX compiles `generate()` and the scoring pass once per input shape (tens of seconds on a CPU), so every batch
# is padded to one of a few sizes and every sequence to one of a few lengths: 64 and 96 times powers of two.
_SHORTEST = 64
# What follows a cached head (a chat and the prompt's tail, often 20 to 100 tokens) has buckets of its own, finer at
# the short end: padding is prefilled too.
_SHORTEST_REST = 32


def bucket(needed: int, shortest: int = _SHORTEST) -> int:
    """The smallest length of `shortest` (64) or 1.5 times it, times a power of two, that holds `needed` tokens."""
    size = shortest
    while True:
        for length in (size, size * 3 // 2):
            if length >= needed:
                return length
        size *= 2


def rest_width(needed: int) -> int:
    """The width at which the tokens after a cached head are prefilled: 32 or 48 times a power of two."""
    return bucket(needed, _SHORTEST_REST)


def length_buckets(max_length: int) -> tuple[int, ...]:
    """The sequence lengths `generate()` runs at, up to `max_length`, which is always the last one."""
    buckets, needed = [], 1
    while (length := bucket(needed)) < max_length:
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
    lowest = min(bucket(shortest_tokens + reply_tokens), max_length)
    return tuple(length for length in length_buckets(max_length) if length >= lowest)


def scoring_widths(shortest_tokens: int, max_length: int) -> tuple[int, ...]:
    """The widths the scoring pass runs prompts of `shortest_tokens` and more, shorter than `max_length`, at.

    Unlike `generate()`'s lengths these are not capped by `max_length`: a prompt is scored at its own bucket.
    """
    widths, width = [], bucket(shortest_tokens)
    while width <= bucket(max_length - 1):
        widths.append(width)
        width = bucket(width + 1)
    return tuple(widths)


def rest_widths(head_tokens: int, shortest_rest: int, positions: int) -> tuple[int, ...]:
    """The widths the tokens after a head of `head_tokens` are prefilled at, for rests of `shortest_rest` tokens and
    more that fit a cache of `positions` (a width is cut to what the cache leaves after the head)."""
    room = positions - head_tokens
    return tuple(sorted({min(rest_width(rest), room) for rest in range(max(shortest_rest, 1), room)}))


def smallest_at_least(sizes: Sequence[int], needed: int) -> int:
    """The smallest of the sorted `sizes` that holds `needed`, or the largest when none does."""
    return sizes[min(bisect.bisect_left(sizes, needed), len(sizes) - 1)]

