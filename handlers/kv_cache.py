"""The key/value cache of KerasHub's Gemma causal LMs as `call_with_cache` takes it: built, joined and resized.

Gemma 3 keeps a tuple of per-layer (key, value) arrays of shape (batch, length, heads, head_dim); Gemma and Gemma 2
keep one array of shape (batch, layers, 2, length, heads, head_dim). Every function here runs inside a traced
(jitted) function and works on either layout: only the axis of positions differs. JAX is imported where it is
used, as in the rest of `handlers`, so that importing the handler does not start it.
"""

from __future__ import annotations

from handlers import native_logs

__all__ = ["empty", "join", "length", "resize", "rows"]


def _positions_axis(leaf) -> int:
    return 1 if leaf.ndim == 4 else 3


def empty(model, batch: int, length: int):
    """A zero cache of `batch` rows and `length` positions, in `model`'s layout and compute dtype."""
    import jax.numpy as jnp

    backbone = model.backbone
    per_layer = (batch, length, backbone.num_key_value_heads, backbone.head_dim)
    if isinstance(backbone, native_logs.keras_hub().models.Gemma3Backbone):
        return tuple(
            (jnp.zeros(per_layer, model.compute_dtype), jnp.zeros(per_layer, model.compute_dtype))
            for _ in range(backbone.num_layers)
        )
    shape = (batch, backbone.num_layers, 2, length, backbone.num_key_value_heads, backbone.head_dim)
    return jnp.zeros(shape, model.compute_dtype)


def length(cache) -> int:
    """How many positions `cache` holds."""
    import jax

    leaf = jax.tree.leaves(cache)[0]
    return leaf.shape[_positions_axis(leaf)]


def join(head, rest):
    """The one-row cache `head` repeated over `rest`'s rows, followed by `rest`'s positions."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(
        lambda h, r: jnp.concatenate(
            [jnp.broadcast_to(h, (r.shape[0], *h.shape[1:])).astype(r.dtype), r], axis=_positions_axis(r)
        ),
        head, rest,
    )


def resize(cache, length: int):
    """`cache` cut or zero-padded to `length` positions (what is cut must hold no prompt)."""
    import jax
    import jax.numpy as jnp

    def fit(leaf):
        axis = _positions_axis(leaf)
        if leaf.shape[axis] >= length:
            return jax.lax.slice_in_dim(leaf, 0, length, axis=axis)
        padding = [(0, 0)] * leaf.ndim
        padding[axis] = (0, length - leaf.shape[axis])
        return jnp.pad(leaf, padding)

    return jax.tree.map(fit, cache)


def rows(cache, indices):
    """The rows `indices` of `cache` (padding a batch with copies of its last row)."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda leaf: jnp.take(leaf, indices, axis=0), cache)
