"""Log records that read as failures and are not, kept out of what a person reads."""

from __future__ import annotations

import logging

# Beam 2.77's RunInference imports its ModelManager (which needs PyTorch) in the same `try` as the `resource`
# module, so without PyTorch it warns at every batch that memory usage cannot be fetched, on any platform.
_NOT_FAILURES = ("Resource module is not available for current platform",)


class _DropNotFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in _NOT_FAILURES)


def drop_known_false_alarms() -> None:
    """Keeps `_NOT_FAILURES` off the root logger, which they are logged on (once per process)."""
    root = logging.getLogger()
    if not any(isinstance(existing, _DropNotFailures) for existing in root.filters):
        root.addFilter(_DropNotFailures())
