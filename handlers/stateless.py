"""Compiling a function of a KerasHub model with its weights as arguments of the compiled function."""

from __future__ import annotations

from collections.abc import Callable


def jit_with_weights(backbone, function: Callable) -> Callable:
    """`jax.jit(function)`, run with `backbone`'s current weights.

    Stateless, so the weights are arguments of the compiled function rather than constants baked into it (a
    constant would be copied into every compiled shape, and a LoRA swap would not reach it).
    """
    import jax
    import keras

    variables = [*backbone.trainable_variables, *backbone.non_trainable_variables]

    def stateless(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return function(*args)

    compiled = jax.jit(stateless)
    return lambda *args: compiled([variable.value for variable in variables], *args)
