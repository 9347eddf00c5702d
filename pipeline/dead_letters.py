"""Building dead-letter records from the ways a chat can fail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipeline.contracts import ChatMessage, DeadLetter, NegativeChat, Stage


def chat_of(key: ChatMessage | NegativeChat) -> ChatMessage:
    """The chat behind a RunInference key (triage keys are chats, apology keys negative chats)."""
    return key.chat if isinstance(key, NegativeChat) else key


def for_chat(chat: ChatMessage, stage: Stage, reason: str, **fields: Any) -> DeadLetter:
    """A dead letter that keeps the chat's original payload, so a replay can start it over."""
    return DeadLetter(payload=chat.payload(), chat_id=chat.chat_id, stage=stage, reason=reason, **fields)


def for_failed_batch(failure: tuple[list, tuple], stage: Stage, model_id: str) -> Iterator[DeadLetter]:
    """One dead letter per chat of a batch whose inference raised (RunInference's failed_inferences)."""
    batch, (_, error, _) = failure
    for key, _prompt in batch:
        yield for_chat(chat_of(key), stage, f"inference failed: {error}", model_id=model_id)
