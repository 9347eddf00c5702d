"""Counts XLA compilations in this process through `jax.monitoring`, the event JAX records for each one."""

from __future__ import annotations

import threading
from collections import Counter

import jax

__all__ = ["CompileCounter"]

# jax._src.dispatch.BACKEND_COMPILE_EVENT: recorded once per XLA compilation (not on an in-memory cache hit).
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
# Tracing and lowering come before each compilation and cost time too.
TRACE = "/jax/core/compile/jaxpr_trace_duration"
LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"


class CompileCounter:
    """Counts compilations and the seconds spent tracing, lowering and compiling, while installed.

    Examples:
        with CompileCounter() as compiles:
            model.generate(prompts)
        print(compiles.count, compiles.seconds, compiles.by_function)
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.count = 0
        self.seconds = 0.0
        self.by_function: Counter[str] = Counter()

    def __enter__(self) -> CompileCounter:
        jax.monitoring.register_event_duration_secs_listener(self._record)
        return self

    def __exit__(self, *exc_info) -> None:
        jax.monitoring.unregister_event_duration_listener(self._record)

    def snapshot(self) -> tuple[int, float]:
        """(count, seconds) so far, to subtract from a later snapshot."""
        with self._lock:
            return self.count, self.seconds

    def _record(self, event: str, duration_secs: float, **kwargs) -> None:
        if event not in (BACKEND_COMPILE, TRACE, LOWER):
            return
        with self._lock:
            self.seconds += duration_secs
            if event == BACKEND_COMPILE:
                self.count += 1
                self.by_function[str(kwargs.get("fun_name", "?"))] += 1
